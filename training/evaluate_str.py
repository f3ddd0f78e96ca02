#!/usr/bin/env python
"""Score a CLIP4STR model on scene text recognition benchmarks and print the usual STR results table.

    python -m training.evaluate_str --model OUTPUT_DIR_OR_HUB_ID --data data/test
    python -m training.evaluate_str --model MODEL --data data/test --datasets IIIT5k SVT CUTE80 --cased \
        --punctuation --output-json results.json --output-markdown results.md

`--data` takes LMDB directories or trees of them in the STR community layout (one directory per benchmark, each with
`data.mdb`), or, with `--data-source hub`, Hub datasets / local parquet or imagefolder datasets with an image and a
text column (`NAME=SOURCE` names one explicitly).

Scoring follows the reference test protocol: labels are cleaned by the label rule of training
([`~modeling_clip4str.labels_clip4str.LabelCleaner`]) for the comparison charset (whitespace removed, folded to
ASCII, labels longer than the model's `max_label_length` left out), then prediction and label are compared on the 36
lowercase alphanumerics (`--cased`: 62 characters, `--punctuation`: plus the 32 ASCII punctuation characters).
A model whose charset is not ASCII (Vietnamese, Chinese, ...) is scored on its own charset instead, unless a
comparison charset is given: labels and predictions in Unicode NFC, case-sensitive when the charset has both cases.
The table states the protocol. `--confusions N` adds the N most frequent character confusions, each classified as a
base-letter, tone-mark, other-diacritic, case, missing or extra error ([`~training.evaluation.confusions`]).
Samples that cannot be scored are counted per dataset with the reason; nothing is dropped silently, and nothing is
scored twice.

`--model` also takes a directory written by `python -m clip4str_onnx.export_onnx` (read with ONNX Runtime;
`--onnx-precision int8` for its quantised graphs); `--compare-precision fp32` then also reads every image with the
fp32 graphs and reports how many texts differ.

From Python (e.g. at the end of training), call [`~training.evaluation.benchmark.evaluate_model`] with `{name: dataset}`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
import transformers

from training.data.benchmarks import load_benchmarks
from training.evaluation.benchmark import evaluate_model
from training.evaluation.benchmark_protocols import PROTOCOL_CHOICES, PROTOCOLS
from training.evaluation.confusions import format_confusions
from training.evaluation.loading import load_model_and_processor
from training.evaluation.protocol import protocol_charset
from training.evaluation.results import (
    describe_charset,
    describe_differences,
    format_results_table,
    format_skipped,
    write_predictions,
)

logger = logging.getLogger("evaluate_str")


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Score a CLIP4STR model on scene text recognition benchmarks (word accuracy, 1 - NED).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True,
        help="A saved CLIP4STR directory, a Hub model id, or a directory exported by `clip4str_onnx.export_onnx` "
        "(read with ONNX Runtime).",
    )
    parser.add_argument(
        "--onnx-precision", choices=["fp32", "int8"], default=None,
        help="With an exported --model: which graphs to run (default fp32; int8 needs `export_onnx --quantize int8`).",
    )
    parser.add_argument(
        "--compare-precision", choices=["fp32", "int8"], default=None,
        help="With an exported --model: also read every image with these graphs and report how many texts differ "
        "(e.g. --onnx-precision int8 --compare-precision fp32).",
    )
    parser.add_argument(
        "--data", nargs="+", required=True, metavar="ROOT",
        help="LMDB directories or trees of them (e.g. data/test); with --data-source hub, dataset ids or paths "
        "(NAME=SOURCE to name one).",
    )
    parser.add_argument(
        "--data-source", nargs="+", default=["lmdb"], choices=["lmdb", "hub"], metavar="{lmdb,hub}",
        help="How to read --data: one value for all, or one per --data entry.",
    )
    parser.add_argument(
        "--datasets", nargs="+", metavar="NAME",
        help="Only these datasets (directory names such as IIIT5k SVT IC13_857 IC15_1811 SVTP CUTE80), in this "
        "order. Default: every dataset found, standard benchmarks first.",
    )
    parser.add_argument("--split", default="test", help="Split to read with --data-source hub.")
    parser.add_argument("--image-column", default="image", help="Image column with --data-source hub.")
    parser.add_argument("--text-column", default="text", help="Text column with --data-source hub.")
    parser.add_argument("--cache-dir", default=None, help="`datasets` cache directory for --data-source hub.")
    parser.add_argument("--cased", action="store_true", help="Compare case-sensitively (62 characters).")
    parser.add_argument(
        "--punctuation", action="store_true", help="Also compare the 32 ASCII punctuation characters."
    )
    parser.add_argument(
        "--charset", default=None, help="An explicit comparison charset (instead of --cased/--punctuation)."
    )
    parser.add_argument(
        "--max-label-length", type=int, default=-1,
        help="Skip labels longer than this (after whitespace removal and Unicode normalisation), as the reference "
        "does. -1: the model's max_label_length; 0: keep all.",
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="Records per generate call (fewer are read when some are skipped)."
    )
    parser.add_argument(
        "--refine-iters", type=int, default=None, help="Refinement passes; None: the model's config."
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, ...; None: cuda when available, else cpu."
    )
    parser.add_argument("--max-samples", type=int, default=None, help="Read at most N records per dataset.")
    parser.add_argument(
        "--num-workers", type=int, default=4, help="Threads decoding and resizing images ahead of the model."
    )
    parser.add_argument(
        "--confusions", type=int, default=0, metavar="N",
        help="Print the N most frequent character confusions (aligned by edit distance) and the errors by kind: "
        "base letter, tone mark, other diacritic, case, missing, extra.",
    )
    parser.add_argument(
        "--protocol", choices=PROTOCOL_CHOICES, default="auto",
        help="How the model reads the images. reference: as the reference's test.py (images normalised with 0.5 per "
        "channel, captions filtered by the comparison charset, 'Label length' = mean prediction length), which "
        "produced the published numbers; pipeline: as the pipeline and evaluation during training read it (its "
        "processor and caption charset); auto: the model's config.benchmark_protocol (reference for converted "
        "checkpoints, pipeline for models trained here).",
    )
    parser.add_argument("--output-json", default=None, metavar="FILE", help="Write the results as JSON.")
    parser.add_argument(
        "--output-predictions", default=None, metavar="FILE",
        help="Write one JSON line per scored record: dataset, record (LMDB key number or index), prediction as "
        "read, prediction under the comparison charset, label, confidence.",
    )
    parser.add_argument("--output-markdown", default=None, metavar="FILE", help="Write the table as Markdown.")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bars.")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        protocol_charset(args.charset, args.cased, args.punctuation)
    except ValueError as error:
        parser.error(str(error))
    if args.confusions < 0:
        parser.error("--confusions must be >= 0.")
    for option in ("batch_size", "max_samples"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1.")
    if args.num_workers < 0:
        parser.error("--num-workers must be >= 0.")
    if args.refine_iters is not None and args.refine_iters < 0:
        parser.error("--refine-iters must be >= 0.")
    if args.max_label_length < -1:
        parser.error("--max-label-length must be -1 (model's), 0 (no limit) or positive.")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    try:
        datasets = load_benchmarks(
            args.data, args.data_source, args.datasets, args.split, args.image_column, args.text_column,
            args.cache_dir,
        )
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    logger.info("Datasets: %s", ", ".join(datasets))
    if args.compare_precision is not None and args.compare_precision == (args.onnx_precision or "fp32"):
        parser.error("--compare-precision must differ from --onnx-precision (default fp32).")
    try:
        model, processor = load_model_and_processor(args.model, onnx_precision=args.onnx_precision)
        reference_model = None
        if args.compare_precision is not None:
            reference_model, _ = load_model_and_processor(args.model, onnx_precision=args.compare_precision)
    except ValueError as error:
        parser.error(str(error))
    if not isinstance(model, torch.nn.Module):
        device = f"ONNX Runtime {model.precision}"

    results = evaluate_model(
        model,
        processor,
        datasets,
        charset=args.charset,
        cased=args.cased,
        punctuation=args.punctuation,
        batch_size=args.batch_size,
        refine_iters=args.refine_iters,
        max_label_length=None if args.max_label_length == 0 else args.max_label_length,
        max_samples=args.max_samples,
        device=device,
        num_workers=args.num_workers,
        show_progress=not args.no_progress,
        confusions=args.confusions,
        reference_model=reference_model,
        protocol=args.protocol,
        return_samples=args.output_predictions is not None,
    )
    charset = results["protocol"]["charset"]
    if args.output_predictions:
        write_predictions(results, args.output_predictions)

    table = format_results_table(results)
    skipped = format_skipped(results)
    combined = results["combined"]
    timing = (
        f"Time: {combined['seconds']:.1f} s in all, "
        f"{1000 * combined['seconds'] / max(1, combined['num_samples']):.1f} ms per scored image on {device}."
    )
    print(f"\nModel: {args.model}\nComparison charset: {describe_charset(charset)}: {charset}\n"
          f"Protocol: {results['protocol']['name']} ({PROTOCOLS[results['protocol']['name']].describe()})\n")
    print(table)
    confusions = format_confusions(results["confusions"]) if "confusions" in results else ""
    if confusions:
        print("\nCharacter confusions (label -> read as):\n" + confusions)
    if skipped:
        print("\nSkipped samples (not scored):\n" + skipped)
    if reference_model is not None:
        print("\n" + describe_differences(results, args.onnx_precision or "fp32", args.compare_precision))
    print("\n" + timing)

    results = {
        "model": args.model,
        "options": dict(vars(args)),
        "device": device,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        **results,
    }
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.output_markdown:
        Path(args.output_markdown).parent.mkdir(parents=True, exist_ok=True)
        text = f"Model: `{args.model}`; comparison charset: {describe_charset(charset)}.\n\n{table}\n"
        if reference_model is not None:
            text += "\n" + describe_differences(results, args.onnx_precision or "fp32", args.compare_precision) + ".\n"
        if confusions:
            text += f"\n## Character confusions\n\n{confusions}\n"
        if skipped:
            text += "\nSkipped samples (not scored):\n\n" + "\n".join(f"- {line}" for line in skipped.splitlines())
            text += "\n"
        Path(args.output_markdown).write_text(text, encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
