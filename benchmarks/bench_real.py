#!/usr/bin/env python
"""Our demo models against PP-OCRv6 small on real word crops: word accuracy and milliseconds per crop on one thread.

    python benchmarks/bench_real.py demo_output/clip4str-demo synth+real=demo_real/clip4str-demo \
        --real-data ../shared/data/real/IIIT5k_train ../shared/data/real/IC15_train --output-json bench_real.json

The crops are the held-out validation split of each real source (`training/real_data.py`: the crops the demo never
trains on and scores in its `results.md`); by default the shared sets at `../shared/data/real` when present. Each
model is a CLIP4STR directory (`NAME=DIR` names a row), read as the pipeline reads it (its processor, `generate`,
`batch_decode`: `evaluate_str --protocol pipeline`, the default for models trained here). PP-OCRv6 small is the
recogniser bundled in the `rapidocr` wheel (its ONNX file is loaded from the installed package, never downloaded), run
on the crop alone: no detection, no orientation classifier (`pip install -e ".[bench]"`).

Scoring is the 36-character protocol of `training/evaluate_str.py`, every label length counted: labels cleaned by the
same label rule (whitespace removed, folded to ASCII, characters outside the 36 removed, no length limit), predictions
given the same Unicode step, and compared by `training.evaluation.protocol.STRScoreAccumulator`. A label that is empty under the
protocol cannot be scored and is counted as skipped.

Speed: one thread for torch and for ONNX Runtime (`--threads`), one crop at a time, from the decoded RGB image to
the text (each reader's own resizing and normalisation included, image file decoding not). The readers take turns
on every crop (ours, ours, PP-OCR, ours, ...), so drift in the machine's speed hits all alike; the first
`--warmup` crops are read untimed; the median and the mean over the timed crops are reported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common`, when imported from elsewhere (the tests)
from common import describe_machine  # noqa: E402

from modeling_clip4str.labels_clip4str import LabelCleaner  # noqa: E402
from training.data import SKIP_REASONS, EvaluationDataset, STRExampleFilter  # noqa: E402
from training.evaluation.protocol import CHARSET_36, STRScoreAccumulator  # noqa: E402
from training.data.real import VALIDATION_RULE, load_real_splits, shared_real_sources  # noqa: E402

PPOCR_NAME = "PP-OCRv6 small (rapidocr)"
PPOCR_MODEL_FILE = "PP-OCRv6_rec_small.onnx"


class CLIP4STRReader:
    """One of our models reading one crop: processor, `generate`, `batch_decode`."""

    def __init__(self, name: str, directory: str):
        from training.evaluation.loading import load_model_and_processor

        self.name, self.directory = name, directory
        self.model, self.processor = load_model_and_processor(directory)
        self.model.eval()

    def __call__(self, image) -> tuple[str, float]:
        with torch.inference_mode():
            output = self.model.generate(**self.processor(images=[image]), return_dict_in_generate=True)
        decoded = self.processor.batch_decode(output, return_confidences=True)
        return decoded["texts"][0], float(decoded["confidences"][0])

    def describe(self) -> dict:
        config = self.model.config
        return {"directory": self.directory, "parameters": sum(p.numel() for p in self.model.parameters()),
                "input_size": list(config.image_input_size), "max_label_length": config.max_label_length,
                "refine_iters": config.refine_iters, "charset_size": len(config.charset)}


def ppocr_model_path() -> Path:
    """The recognition model inside the installed rapidocr wheel (refused if absent: nothing is downloaded)."""
    try:
        import rapidocr
    except ImportError as error:
        raise SystemExit(
            "PP-OCR needs the `bench` extra: pip install -e \".[bench]\" (rapidocr, onnxruntime, "
            "opencv-python-headless); or pass --no-ppocr."
        ) from error
    path = Path(rapidocr.__file__).resolve().parent / "models" / PPOCR_MODEL_FILE
    if not path.is_file():
        raise SystemExit(f"{path} is missing: this rapidocr version does not bundle {PPOCR_MODEL_FILE}.")
    return path


class PPOCRReader:
    """PP-OCRv6 small, recognition only, through rapidocr's own API (its resizing to height 48, its CTC decoding)."""

    name = PPOCR_NAME

    def __init__(self, threads: int):
        import rapidocr
        from rapidocr import RapidOCR

        self.model_path = ppocr_model_path()
        self.version = getattr(rapidocr, "__version__", None) or _package_version("rapidocr")
        self.engine = RapidOCR(params={
            "Global.use_det": False, "Global.use_cls": False, "Global.use_rec": True,
            "Global.log_level": "warning",
            "Rec.model_path": str(self.model_path),  # the bundled file: no download, no lookup of a model URL
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })

    def __call__(self, image) -> tuple[str, float]:
        result = self.engine(image, use_det=False, use_cls=False, use_rec=True)
        texts, scores = getattr(result, "txts", None), getattr(result, "scores", None)
        if not texts:
            return "", 0.0
        return texts[0] or "", float(scores[0]) if scores else 0.0

    def describe(self) -> dict:
        import onnxruntime

        data = self.model_path.read_bytes()
        return {"rapidocr": self.version, "onnxruntime": onnxruntime.__version__, "model_file": self.model_path.name,
                "model_bytes": len(data), "model_sha256": hashlib.sha256(data).hexdigest()}


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def validation_crops(sources: list[str], max_crops: int | None, cleaner: LabelCleaner) -> dict:
    """name -> {"crops": [(RGB image, cleaned label)], "num_records", "skipped"}: each source's held-out split,
    through the label rule and image decoding of training and evaluation."""
    crops = {}
    for real in load_real_splits(sources):
        records = EvaluationDataset(real.part("validation"), STRExampleFilter(cleaner))
        count = len(records) if max_crops is None else min(len(records), max_crops)
        kept = [record for record in (records[i] for i in range(count)) if record is not None]
        crops[real.name] = {"source": real.source, "num_records": count,
                            "skipped": {key: n for key, n in records.stats.items() if key in SKIP_REASONS and n},
                            "crops": [(record["image"], record["text"]) for record in kept]}
    return crops


def run(readers, crops: dict, cleaner: LabelCleaner, warmup: int) -> list[dict]:
    """Every reader reads every crop, taking turns; scores per source and combined, and the time of each read."""
    normalize = LabelCleaner(CHARSET_36, remove_whitespace=True,
                             unicode_normalization=cleaner.unicode_normalization).normalize
    scores = {reader.name: {name: STRScoreAccumulator(CHARSET_36) for name in crops} for reader in readers}
    times = {reader.name: [] for reader in readers}
    lengths = {reader.name: [] for reader in readers}  # the raw texts' lengths: our decoding time grows with them
    order = [(name, image, label) for name, data in crops.items() for image, label in data["crops"]]
    for reader in readers:  # untimed: first-call allocations, lazy initialisation
        for _, image, _ in order[:warmup]:
            reader(image)
    for name, image, label in order:
        for reader in readers:
            start = time.perf_counter()
            text, confidence = reader(image)
            times[reader.name].append(time.perf_counter() - start)
            lengths[reader.name].append(len(text))
            scores[reader.name][name].update([normalize(text)], [label], [min(1.0, max(0.0, confidence))])
    rows = []
    for reader in readers:
        combined = STRScoreAccumulator(CHARSET_36)
        per_source = {}
        for name, accumulator in scores[reader.name].items():
            combined.merge(accumulator)
            result = accumulator.compute()
            per_source[name] = {"num_samples": result["num_samples"], "accuracy": result["accuracy"],
                                "one_minus_ned": result["one_minus_ned"]}
        result = combined.compute()
        milliseconds = [1000 * value for value in times[reader.name]]
        rows.append({
            "reader": reader.name, **reader.describe(), "datasets": per_source,
            "combined": {"num_samples": result["num_samples"], "accuracy": result["accuracy"],
                         "one_minus_ned": result["one_minus_ned"]},
            "ms_per_crop_median": statistics.median(milliseconds) if milliseconds else None,
            "ms_per_crop_mean": statistics.fmean(milliseconds) if milliseconds else None,
            "timed_crops": len(milliseconds),
            "mean_text_length": statistics.fmean(lengths[reader.name]) if lengths[reader.name] else None,
        })
    return rows


def to_markdown(rows: list[dict], crops: dict) -> str:
    def percent(value):
        return "-" if value is None else f"{100 * value:.1f} %"

    def ms(value):
        return "-" if value is None else f"{value:.1f}"

    names = list(crops)
    total = sum(len(data["crops"]) for data in crops.values())
    header = ["reader", *(f"{name} ({len(crops[name]['crops'])})" for name in names), f"combined ({total})",
              "ms / crop (median)", "ms / crop (mean)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 1 + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = [row["reader"], *(percent(row["datasets"][name]["accuracy"]) for name in names),
                 percent(row["combined"]["accuracy"]), ms(row["ms_per_crop_median"]), ms(row["ms_per_crop_mean"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _model_argument(text: str) -> tuple[str, str]:
    if "=" in text:
        name, directory = text.split("=", 1)
        return name, directory
    path = Path(text)
    return (f"{path.parent.name}/{path.name}" if path.parent.name else path.name), text


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", metavar="[NAME=]DIR", help="CLIP4STR model directories (ours)")
    parser.add_argument("--real-data", nargs="+", default=None, metavar="SRC",
                        help="real sources whose validation split is read (default: the shared IIIT5k_train and "
                             "IC15_train at ../shared/data/real)")
    parser.add_argument("--threads", type=int, default=1, help="threads of torch and of ONNX Runtime")
    parser.add_argument("--warmup", type=int, default=5, help="crops read untimed by each reader first")
    parser.add_argument("--max-crops", type=int, default=None, help="read at most this many crops of each source")
    parser.add_argument("--no-ppocr", action="store_true", help="leave PP-OCR out (no rapidocr needed)")
    parser.add_argument("--output-json", default=None, help="write the rows, the machine and the protocol here")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1.")
    if not args.models and args.no_ppocr:
        parser.error("Nothing to read: give model directories, or leave PP-OCR in.")
    sources = args.real_data or shared_real_sources()
    if not sources:
        parser.error("No real sources: give --real-data (the shared sets are not at ../shared/data/real).")
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass

    readers = [CLIP4STRReader(*_model_argument(model)) for model in args.models]
    if not args.no_ppocr:
        readers.append(PPOCRReader(args.threads))
    cleaner = LabelCleaner(CHARSET_36, max_label_length=None)  # every label length is scored
    crops = validation_crops(sources, args.max_crops, cleaner)
    machine = describe_machine("cpu")
    print(f"# {machine}; ONNX Runtime {args.threads} intra-op thread(s)", flush=True)
    rows = run(readers, crops, cleaner, args.warmup)
    table = to_markdown(rows, crops)
    print(table)
    for name, data in crops.items():
        if data["skipped"]:
            print(f"{name}: {sum(data['skipped'].values())} of {data['num_records']} held-out crops not scored "
                  f"({data['skipped']})")
    report = {
        "machine": machine, "threads": args.threads, "warmup": args.warmup,
        "protocol": "36 characters, case-insensitive, without punctuation; labels and predictions folded to ASCII; "
                    "every label length scored",
        "split": VALIDATION_RULE,
        "datasets": {name: {"source": data["source"], "num_records": data["num_records"],
                            "num_scored": len(data["crops"]), "skipped": data["skipped"]}
                     for name, data in crops.items()},
        "rows": rows, "table": table,
    }
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
