"""Training and evaluation data for CLIP4STR: sources, skipping of broken examples, batching.

The pieces, in the order data flows through them:

1. [`load_str_dataset`] (`sources.py`) opens one source as a `datasets` dataset with an `image` column (kept
   *undecoded*: `{"bytes", "path"}`) and a `text` column: a Hub dataset id, a local parquet / arrow file or folder,
   an imagefolder, or an LMDB database / tree of databases in the STR community format (`lmdb.py`).
2. [`interleave_str_datasets`] mixes several sources with sampling weights.
3. [`STRExampleFilter`] (`filtering.py`) decodes every image and cleans every label with the one label rule
   ([`~modeling_clip4str.labels_clip4str.LabelCleaner`]); what cannot be used is skipped and counted in shared
   memory across DataLoader workers (`counts.py`). The filtered dataset applies the training transform
   (augmentation) to kept images.
4. [`STRDataCollator`] (`collation.py`) turns a list of examples into `pixel_values` and `labels`, for training and
   evaluation alike.

[`build_train_dataset`] and [`build_eval_dataset`] do 1-3 for a list of sources.
"""

from .collation import STRDataCollator
from .counts import COUNTED, SKIP_REASONS, DataCounts
from .filtering import (
    EvaluationDataset,
    FilteredIterableDataset,
    FilteredMapDataset,
    STRExampleFilter,
    decode_image,
)
from .lmdb import LmdbDataset, find_lmdb_dirs
from .sources import STR_FEATURES, build_eval_dataset, build_train_dataset, interleave_str_datasets, load_str_dataset

__all__ = [
    "COUNTED",
    "SKIP_REASONS",
    "STR_FEATURES",
    "DataCounts",
    "EvaluationDataset",
    "FilteredIterableDataset",
    "FilteredMapDataset",
    "LmdbDataset",
    "STRDataCollator",
    "STRExampleFilter",
    "build_eval_dataset",
    "build_train_dataset",
    "decode_image",
    "find_lmdb_dirs",
    "interleave_str_datasets",
    "load_str_dataset",
]
