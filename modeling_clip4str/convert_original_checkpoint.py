"""Moved to `modeling_clip4str.convert_clip4str_original_to_hf` (transformers' name for conversion scripts); this module
keeps `python -m modeling_clip4str.convert_original_checkpoint` working."""

import sys

from .convert_clip4str_original_to_hf import main

if __name__ == "__main__":
    sys.exit(main())
