#!/usr/bin/env python
"""Real word crops next to synthetic ones: one fixed validation split per source, held out of training.

    python -m training.real_data SRC [SRC ...] --output-dir OUT [--validation-only]

Each source is anything `run_str.py` reads (a Hub dataset id, a parquet / arrow / imagefolder directory, an LMDB
directory or tree of them). The validation split is chosen from the record numbers alone, by a keyed hash
(`training/data/real.py`: 10 %, at least 300, at most a fifth of the source), so the demo's training, the demo's
evaluation and `benchmarks/bench_real.py` all hold out the same crops.

The command writes, per source, `OUT/<name>/train/*.parquet` (every record but the held-out ones: give this
directory to `run_str.py --train_datasets`, which reads its `train` split) and `OUT/<name>/validation/*.parquet`
(the held-out records: `evaluate_str.py --data-source hub --data <name>=OUT/<name> --split validation`), plus
`OUT/<name>/split.json` with the held-out record numbers. Images are stored as they were (encoded bytes), labels
raw: the label rule of training and evaluation cleans them later. These files are copies of the source's crops:
keep them where the source's licence allows (the demo writes them under its git-ignored output folder).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training.data.real import PARTS, write_real_splits


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="Hub dataset ids, parquet / arrow / imagefolder or LMDB paths")
    parser.add_argument("--output-dir", required=True, help="where OUT/<name>/{train,validation}/ are written")
    parser.add_argument("--validation-only", action="store_true", help="write only the held-out records")
    parser.add_argument("--split", default="train", help="the split of Hub / local datasets to read (not LMDB)")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--text-column", default="text")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.INFO, stream=sys.stdout)
    import datasets

    datasets.disable_progress_bars()
    parts = ("validation",) if args.validation_only else PARTS
    records = write_real_splits(args.sources, args.output_dir, parts=parts, split=args.split,
                                image_column=args.image_column, text_column=args.text_column)
    summary = [{key: value for key, value in record.items() if key != "validation_indices"} for record in records]
    (Path(args.output_dir) / "real_data.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return records


if __name__ == "__main__":
    main()
