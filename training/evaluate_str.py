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
base-letter, tone-mark, other-diacritic, case, missing or extra error ([`~training.confusions`]).
Samples that cannot be scored are counted per dataset with the reason; nothing is dropped silently, and nothing is
scored twice.

`--model` also takes a directory written by `python -m modeling_clip4str.export_onnx` (read with ONNX Runtime;
`--onnx-precision int8` for its quantised graphs); `--compare-precision fp32` then also reads every image with the
fp32 graphs and reports how many texts differ.

From Python (e.g. at the end of training), call [`evaluate_model`] with `{name: dataset}`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import string
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import islice
from pathlib import Path

import datasets as hf_datasets
import torch
import transformers
from tqdm.auto import tqdm

from modeling_clip4str.labels_clip4str import ASCII_FOLD, LabelCleaner
from training.benchmark_protocols import (
    PROTOCOL_CHOICES,
    PROTOCOLS,
    captions_for,
    processor_for,
    protocol_record,
    resolve_protocol,
)
from training.confusions import CharacterConfusions, format_confusions
from training.data import (
    SKIP_REASONS,
    EvaluationDataset,
    FilteredIterableDataset,
    LmdbDataset,
    STRDataCollator,
    STRExampleFilter,
    find_lmdb_dirs,
    load_str_dataset,
)
from training.loading import load_model_and_processor
from training.protocol import STRScoreAccumulator, evaluation_charset, normalize_for_protocol, protocol_charset

logger = logging.getLogger("evaluate_str")

STANDARD_BENCHMARKS = (
    "IIIT5k", "SVT", "IC13_857", "IC13_1015", "IC15_1811", "IC15_2077", "SVTP", "CUTE80", "COCOv1.4", "ArT", "Uber",
)
"""The usual benchmark directory names, in the order tables list them (other datasets follow, by name)."""

_SCORES = ("accuracy", "one_minus_ned", "mean_confidence", "mean_label_length", "mean_prediction_length")


# --------------------------------------------------------------------------------------------------------------------
# Reading one dataset
# --------------------------------------------------------------------------------------------------------------------


def _is_map_style(dataset) -> bool:
    return hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__") and not isinstance(dataset, Mapping)


def filtered_records(dataset, example_filter: STRExampleFilter, max_samples: int | None):
    """The first `max_samples` records of `dataset` (all by default) through `example_filter`: an
    [`EvaluationDataset`] for map-style data (read by index, in order), a [`FilteredIterableDataset`] for streams."""
    if max_samples is not None:
        if _is_map_style(dataset):
            dataset = torch.utils.data.Subset(dataset, range(min(len(dataset), max_samples)))
        elif isinstance(dataset, hf_datasets.IterableDataset):
            dataset = dataset.take(max_samples)
        else:  # a plain iterable, read once: its first records
            dataset = list(islice(dataset, max_samples))
    if _is_map_style(dataset):
        return EvaluationDataset(dataset, example_filter)
    return FilteredIterableDataset(dataset, example_filter)


def _read_batch(model, processor, batch: dict, refine_iters: int | None) -> tuple[list[str], list[float]]:
    """Predicted texts and word confidences of one collated batch."""
    pixel_values = batch["pixel_values"]
    if isinstance(model, torch.nn.Module):
        parameter = next(model.parameters())
        pixel_values = pixel_values.to(parameter.device, parameter.dtype)
    # (An ONNX Runtime model reads the CPU tensor as it is.)
    output = model.generate(pixel_values=pixel_values, refine_iters=refine_iters, return_dict_in_generate=True)
    decoded = processor.batch_decode(output, return_confidences=True)
    # A product of float32 probabilities can land a rounding error above 1.
    return decoded["texts"], [min(1.0, max(0.0, float(value))) for value in decoded["confidences"]]


def score_dataset(model, processor, records, scores: STRScoreAccumulator, *, batch_size: int, num_workers: int,
                  refine_iters: int | None, description: str, show_progress: bool,
                  normalize_prediction=None, confusions: CharacterConfusions | None = None,
                  reference_model=None, samples: list | None = None) -> int:
    """Read `records` (a filtered dataset) with a DataLoader and `model.generate`, adding to `scores` (and to
    `confusions`). `normalize_prediction` (text -> text) puts predictions in the Unicode form of the labels.
    `samples`, when given, gets one row per scored record: `[record id, prediction as read, prediction under the
    comparison charset, label, word confidence]` (the record id is the LMDB key number or the index in the source;
    `None` for a stream).

    Returns:
        With `reference_model` (which also reads every batch), how many of the texts differ from its texts; else 0.
    """
    differing = 0
    loader = torch.utils.data.DataLoader(
        records, batch_size=batch_size, num_workers=num_workers,
        collate_fn=STRDataCollator(processor, max_label_length=None, encode_labels=False),
    )
    # A bar updated by hand: wrapping the loader in tqdm.auto would start its worker processes twice.
    progress = tqdm(total=len(loader) if isinstance(records, EvaluationDataset) else None, desc=description,
                    unit="batch", disable=not show_progress, dynamic_ncols=True)
    for batch in loader:
        if batch["texts"]:
            texts, confidences = _read_batch(model, processor, batch, refine_iters)
            if reference_model is not None:
                reference_texts, _ = _read_batch(reference_model, processor, batch, refine_iters)
                differing += sum(text != reference for text, reference in zip(texts, reference_texts))
            read = texts
            if normalize_prediction is not None:
                texts = [normalize_prediction(text) for text in texts]
            scores.update(texts, batch["texts"], confidences)
            if samples is not None:
                ids = batch.get("record_ids") or [None] * len(texts)
                samples.extend(
                    [record, raw, normalize_for_protocol(text, scores.charset), label, confidence]
                    for record, raw, text, label, confidence in zip(ids, read, texts, batch["texts"], confidences)
                )
            if confusions is not None:
                for text, label in zip(texts, batch["texts"]):
                    confusions.update(normalize_for_protocol(text, scores.charset),
                                      normalize_for_protocol(label, scores.charset))
        progress.update(1)
    progress.close()
    return differing


def _summary(scores: STRScoreAccumulator) -> dict:
    result = scores.compute()
    result.setdefault("mean_confidence", None)
    return result


# --------------------------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------------------------


def _check_options(datasets, batch_size: int, max_samples: int | None, num_workers: int):
    if not isinstance(datasets, Mapping):
        raise TypeError("`datasets` must map names to datasets of (image, text), e.g. {'IIIT5k': dataset}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}.")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}.")


def comparison_charset(model, charset: str | None = None, cased: bool = False,
                       punctuation: bool = False) -> tuple[str, str]:
    """The comparison charset for `model` and where it comes from (see [`~training.protocol.evaluation_charset`],
    the rule evaluation during training follows too)."""
    return evaluation_charset(getattr(getattr(model, "config", None), "charset", None), charset, cased, punctuation)


def _warn_about_unreadable_characters(model, charset: str):
    model_charset = getattr(model.config, "charset", None)
    if model_charset is not None:
        unreadable = sorted(set(charset) - set(normalize_for_protocol(model_charset, charset)))
        if unreadable:
            logger.warning(
                "The comparison charset has characters the model cannot produce (%s): labels holding them cannot "
                "be matched.", "".join(unreadable),
            )


def _mean_of_datasets(results: dict) -> dict:
    """The arithmetic mean of each score over the datasets with at least one scored sample."""
    scored = [result for result in results.values() if result["num_samples"]]
    mean = {"num_datasets": len(scored)}
    for key in _SCORES:
        values = [result[key] for result in scored]
        mean[key] = math.fsum(values) / len(values) if values and None not in values else None
    return mean


@torch.inference_mode()
def evaluate_model(
    model,
    processor,
    datasets: Mapping[str, Iterable],
    *,
    charset: str | None = None,
    cased: bool = False,
    punctuation: bool = False,
    batch_size: int = 64,
    refine_iters: int | None = None,
    max_label_length: int | None = -1,
    max_samples: int | None = None,
    remove_whitespace: bool = True,
    unicode_normalization: str | None = None,
    device: str | torch.device | None = None,
    num_workers: int = 4,
    show_progress: bool = True,
    confusions: int = 0,
    reference_model=None,
    protocol: str = "auto",
    return_samples: bool = False,
) -> dict:
    """Read every image of every dataset with `model.generate` and score the texts under the benchmark protocol.

    Args:
        model: a CLIP4STR model, its ONNX Runtime version ([`~modeling_clip4str.onnx_clip4str.CLIP4STROnnxModel`]),
            or any model whose `generate(pixel_values=..., refine_iters=..., return_dict_in_generate=True)` output
            works with `processor.batch_decode(..., return_confidences=True)`.
        processor: its processor.
        datasets: `{name: dataset}`, each a map-style dataset (read by index, in order) or an iterable whose items
            are `(image, text)` pairs or mappings with `"image"` and `"text"`. Images may be encoded bytes (as stored
            in LMDB), paths, PIL images, `datasets` image dicts, arrays or tensors. A dataset's `counts` (as
            [`~training.data.LmdbDataset`] keeps of records it left out when opened) are reported as skipped.
        charset, cased, punctuation: the comparison protocol (default: 36 lowercase alphanumerics, or the model's own
            charset when it is not ASCII; see [`comparison_charset`]).
        batch_size: records per `generate` call (fewer are read when some are skipped).
        refine_iters: refinement passes (default: the model's `config.refine_iters`).
        max_label_length: labels longer than this (after whitespace removal and Unicode normalisation, before the
            charset filter) are skipped, as in the reference; `-1` (default) means the model's
            `config.max_label_length`, `None` keeps every length.
        max_samples: read at most this many records of each dataset (quick checks).
        remove_whitespace, unicode_normalization: see [`LabelCleaner`] (default: whitespace removed, labels folded
            to ASCII for an ASCII comparison charset, else NFC). Predictions are put in the same Unicode form.
        device: move a PyTorch model there first (default: leave it where it is).
        num_workers: DataLoader worker processes decoding and preprocessing images ahead of the model (0: in this
            process).
        show_progress: a tqdm bar per dataset.
        confusions: keep the character errors, and report this many of the most frequent confusions (0: none).
        reference_model: a second model (e.g. the fp32 graphs of an int8 export) that reads every batch too; each
            dataset then reports how many texts differ from its texts (`num_differing_from_reference`).
        protocol: how the model reads the images (see [`~training.benchmark_protocols`]): `"reference"` (the
            reference's test.py: 0.5 per channel, captions filtered by the comparison charset), `"pipeline"` (the
            processor and caption charset as given), or `"auto"` (default: the model's `config.benchmark_protocol`).
        return_samples: also return every scored record's prediction (see [`score_dataset`]) in each dataset's
            `samples`.

    Returns:
        A dict with
        - `datasets`: per name, `num_samples` (scored), `accuracy`, `one_minus_ned`, `mean_confidence`,
          `mean_label_length`, `mean_prediction_length` (fractions in [0, 1]; `None` when nothing was scored), `num_records` (read),
          `num_skipped`, `skipped` (`{reason: count}`, reasons as in `SKIP_REASONS`), `removed_characters` (by the
          charset filter, from scored labels) and `seconds`;
        - `combined`: the same scores over all samples of all datasets (sample-weighted);
        - `mean`: the arithmetic mean of each score over the datasets with at least one scored sample, and
          `num_datasets`;
        - `protocol`: the options used, with `charset_source` (see [`comparison_charset`]), the reading protocol's
          `name`, the `image_mean` and `image_std` images were normalised with, the `caption_charset` and the
          `length_column` of the table;
        - `confusions` (with `confusions > 0`): the summary of [`~training.confusions.CharacterConfusions`] over all
          datasets;
        - with `reference_model`, `num_differing_from_reference` in each dataset's result and in `combined`.
    """
    _check_options(datasets, batch_size, max_samples, num_workers)
    reading = resolve_protocol(protocol, model)
    processor = processor_for(reading, processor)
    charset, charset_source = comparison_charset(model, charset, cased, punctuation)
    if max_label_length == -1:
        max_label_length = getattr(model.config, "max_label_length", None)
    _warn_about_unreadable_characters(model, charset)
    for each in (model, reference_model):
        if isinstance(each, torch.nn.Module):  # an ONNX Runtime model has no device or modes
            if device is not None:
                each.to(device)
            each.eval()
    # The label rule and the image decoding of training, so that a sample is skipped for the same reasons (and under
    # the same names) in training and in evaluation.
    cleaner = LabelCleaner(charset, max_label_length=max_label_length, remove_whitespace=remove_whitespace,
                           unicode_normalization=unicode_normalization)
    # Predictions get the labels' Unicode step too (NFC, or the ASCII fold: a no-op for the ASCII models of the
    # reference, and what lets "việt" read by a Vietnamese model match the folded label "viet").
    normalize_prediction = LabelCleaner(charset, remove_whitespace=False,
                                        unicode_normalization=cleaner.unicode_normalization).normalize
    all_confusions = CharacterConfusions() if confusions else None
    options = dict(batch_size=batch_size, num_workers=num_workers, refine_iters=refine_iters,
                   show_progress=show_progress, normalize_prediction=normalize_prediction, confusions=all_confusions)
    results, combined = {}, STRScoreAccumulator(charset)
    with captions_for(reading, model, charset), captions_for(reading, reference_model, charset):
        caption_charset = getattr(getattr(model, "config", None), "caption_charset", None)
        for name, dataset in datasets.items():
            start = time.perf_counter()
            records = filtered_records(dataset, STRExampleFilter(cleaner), max_samples)
            scores = STRScoreAccumulator(charset)
            samples = [] if return_samples else None
            differing = score_dataset(model, processor, records, scores, description=str(name),
                                      reference_model=reference_model, samples=samples, **options)
            combined.merge(scores)
            results[name] = {**_summary(scores), **_record_counts(dataset, records, max_samples),
                             "seconds": time.perf_counter() - start}
            if samples is not None:
                results[name]["samples"] = samples
            if reference_model is not None:
                results[name]["num_differing_from_reference"] = differing
            if results[name]["skipped"]:
                reasons = ", ".join(f"{count} ({reason})" for reason, count in results[name]["skipped"].items())
                logger.info("%s: skipped %s", name, reasons)
    report = {
        "datasets": results,
        "combined": {
            **_summary(combined),
            "num_skipped": sum(result["num_skipped"] for result in results.values()),
            "seconds": sum(result["seconds"] for result in results.values()),
        },
        "mean": _mean_of_datasets(results),
        "protocol": {
            "charset": charset,
            "cased": cased,
            "punctuation": punctuation,
            "max_label_length": max_label_length,
            "remove_whitespace": remove_whitespace,
            "unicode_normalization": cleaner.unicode_normalization,
            "refine_iters": refine_iters if refine_iters is not None else getattr(model.config, "refine_iters", None),
            "charset_source": charset_source,
            **protocol_record(reading, processor, caption_charset),
        },
    }
    if reference_model is not None:
        report["combined"]["num_differing_from_reference"] = sum(
            result["num_differing_from_reference"] for result in results.values())
    if all_confusions is not None:
        report["confusions"] = all_confusions.summary(confusions)
    return report


def _record_counts(dataset, records, max_samples: int | None) -> dict:
    """`num_records`, `num_skipped`, `skipped` and `removed_characters` of one dataset: what the filter counted, plus
    what the dataset itself left out when it was opened (e.g. LMDB records without a label), unless only the first
    `max_samples` were read."""
    counts = records.stats
    removed = counts.pop("removed_characters", 0)
    kept = counts.pop("kept", 0)
    if max_samples is None:
        counts.update({reason: n for reason, n in getattr(dataset, "counts", {}).items() if reason != "kept" and n})
    return {
        "num_records": kept + sum(counts.values()),
        "num_skipped": sum(counts.values()),
        "skipped": dict(sorted(counts.items())),
        "removed_characters": removed,
    }


# --------------------------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------------------------

TABLE_HEADER = ("Dataset", "# samples", "Accuracy (%)", "1 - NED (%)", "Confidence (%)", "Label length")


def _table_row(name: str, result: dict, num_samples, length_column: str = "mean_label_length") -> list[str]:
    def percent(value):
        return "-" if value is None else f"{100 * value:.2f}"

    length = result.get(length_column)
    return [
        name,
        str(num_samples),
        percent(result.get("accuracy")),
        percent(result.get("one_minus_ned")),
        percent(result.get("mean_confidence")),
        "-" if length is None else f"{length:.2f}",
    ]


def format_results_table(results: dict) -> str:
    """The results of [`evaluate_model`] as a Markdown table, one row per dataset and two combined rows, followed by
    the protocol they were scored under (see [`describe_protocol`]).

    "Combined" weighs every sample equally (the reference's combined row); "Mean of datasets" is the arithmetic mean
    of the per-dataset values, each dataset counting once. "Label length" is the protocol's `length_column`: the mean
    label length, or under the reference protocol the mean length of the predictions, as test.py prints it.
    """
    column = results.get("protocol", {}).get("length_column", "mean_label_length")
    rows = [_table_row(name, result, result["num_samples"], column) for name, result in results["datasets"].items()]
    combined = results["combined"]
    rows.append(_table_row("Combined (weighted)", combined, combined["num_samples"], column))
    rows.append(_table_row("Mean of datasets", results["mean"], f"{results['mean']['num_datasets']} sets", column))
    widths = [max(len(row[column]) for row in [TABLE_HEADER, *rows]) for column in range(len(TABLE_HEADER))]

    def line(cells):
        padded = [cell.ljust(width) if column == 0 else cell.rjust(width) for column, (cell, width) in
                  enumerate(zip(cells, widths))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join([":" + "-" * (widths[0] + 1)] + ["-" * (width + 1) + ":" for width in widths[1:]]) + "|"
    table = "\n".join([line(TABLE_HEADER), rule, *(line(row) for row in rows)])
    if "protocol" in results:
        table += "\n\nProtocol: " + describe_protocol(results["protocol"])
    return table


def describe_protocol(protocol: dict) -> str:
    """E.g. "the model's own charset (150 characters, case-sensitive, without punctuation); labels and predictions in
    Unicode NFC; labels longer than 14 characters not scored"."""
    charset = protocol["charset"]
    source = protocol.get("charset_source")
    what = {"model": "the model's own charset", "benchmark": "the STR benchmark protocol",
            "explicit": "a given comparison charset"}.get(source, "comparison charset")
    parts = [f"{what} ({describe_charset(charset)})"]
    form = protocol.get("unicode_normalization")
    if form == ASCII_FOLD:
        parts.append("labels and predictions folded to ASCII (NFKD, accents dropped)")
    elif form and form != "none":
        parts.append(f"labels and predictions in Unicode {form}")
    if protocol.get("max_label_length") is not None:
        parts.append(f"labels longer than {protocol['max_label_length']} characters not scored")
    if protocol.get("name") in PROTOCOLS:
        parts.append(f"read as {PROTOCOLS[protocol['name']].describe()}")
    return "; ".join(parts)


def describe_charset(charset: str) -> str:
    """E.g. "36 characters, case-insensitive, without punctuation"."""
    cased = charset != charset.lower() and charset != charset.upper()
    punctuation = any(char in string.punctuation for char in charset)
    return (
        f"{len(charset)} characters, {'case-sensitive' if cased else 'case-insensitive'}, "
        f"{'with' if punctuation else 'without'} punctuation"
    )


def describe_differences(results: dict, precision: str, reference_precision: str) -> str:
    """E.g. "int8 texts that differ from fp32 texts: 3 of 1000 (0.30 %)", from a run with a reference model."""
    combined = results["combined"]
    differing, total = combined["num_differing_from_reference"], combined["num_samples"]
    share = f" ({100 * differing / total:.2f} %)" if total else ""
    return f"{precision} texts that differ from {reference_precision} texts: {differing} of {total}{share}"


def format_skipped(results: dict) -> str:
    """One line per dataset with skipped samples, e.g. `SVT: 2 of 649 skipped (1 unreadable image, 1 no label)`."""
    max_label_length = results.get("protocol", {}).get("max_label_length")
    lines = []
    for name, result in results["datasets"].items():
        if result["num_skipped"]:
            reasons = []
            for reason, count in result["skipped"].items():
                description = SKIP_REASONS.get(reason, reason)
                if reason == "too_long" and max_label_length is not None:
                    description += f" (> {max_label_length} characters)"
                reasons.append(f"{count} {description}")
            lines.append(f"{name}: {result['num_skipped']} of {result['num_records']} skipped ({', '.join(reasons)})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# Data and model loading
# --------------------------------------------------------------------------------------------------------------------


def write_predictions(results: dict, path: str | os.PathLike) -> None:
    """Move every dataset's `samples` out of `results` into `path`, one JSON object per line."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for name, result in results["datasets"].items():
            for record, read, prediction, label, confidence in result.pop("samples", []):
                row = {"dataset": name, "record": record, "read": read, "prediction": prediction, "label": label,
                       "confidence": confidence}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _benchmark_order(name: str) -> tuple:
    base = name.rsplit("/", 1)[-1]
    if base in STANDARD_BENCHMARKS:
        return (0, STANDARD_BENCHMARKS.index(base), name)
    return (1, 0, name)


def find_benchmarks(roots: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """Name -> LMDB directory for every LMDB directory at or below the roots.

    A dataset is named after its directory (`data/test/IIIT5k` -> `IIIT5k`). When two share a directory name, they
    are named by their path relative to their root instead (`test/IIIT5k`, `val/IIIT5k`).
    """
    found, seen = [], set()  # (root, directory); resolved paths, so that overlapping roots read a database once
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"Data root {root} does not exist.")
        for directory in find_lmdb_dirs(root):
            if Path(directory).resolve() not in seen:
                seen.add(Path(directory).resolve())
                found.append((root, Path(directory)))
    base_counts = Counter(directory.name for _, directory in found)
    named = {}
    for root, directory in found:
        name = directory.name
        if base_counts[name] > 1:
            relative = directory.relative_to(root).as_posix() if directory != root else directory.name
            name = relative if relative not in named else directory.as_posix()
        named[name] = directory
    return dict(sorted(named.items(), key=lambda item: _benchmark_order(item[0])))


def select_datasets(available: Mapping[str, object], wanted: Iterable[str] | None) -> dict:
    """The datasets named in `wanted` (by name or directory name), in that order; all of them when it is empty."""
    if not wanted:
        return dict(available)
    selected = {}
    for want in wanted:
        matches = [name for name in available if name == want or name.rsplit("/", 1)[-1] == want]
        if not matches:
            raise ValueError(f"Dataset {want!r} not found. Available: {', '.join(available) or 'none'}.")
        for name in matches:
            selected[name] = available[name]
    return selected


def _hub_name(source: str) -> tuple[str, str]:
    """(name, source) from `NAME=SOURCE` or a bare source (named after its last path component)."""
    if "=" in source:
        name, source = source.split("=", 1)
        return name, source
    stem = source.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".parquet", ".arrow", ".jsonl", ".json", ".csv"):
        stem = stem.removesuffix(suffix)
    return stem, source


def load_benchmarks(
    sources: list[str],
    data_sources: list[str],
    names: Iterable[str] | None = None,
    split: str = "test",
    image_column: str = "image",
    text_column: str = "text",
    cache_dir: str | None = None,
) -> dict:
    """Name -> dataset for the `--data` arguments, each read as LMDB (tree) or with `load_str_dataset` (hub).

    Datasets are chosen by `names` (see [`select_datasets`]) before any is opened, so unused sets cost nothing.
    """
    if len(data_sources) == 1:
        data_sources = data_sources * len(sources)
    if len(data_sources) != len(sources):
        raise ValueError(
            f"Give one --data-source for all --data, or one per --data ({len(sources)}); got {len(data_sources)}."
        )
    lmdb_roots = [source for source, kind in zip(sources, data_sources) if kind == "lmdb"]
    locations = {name: ("lmdb", path) for name, path in find_benchmarks(lmdb_roots).items()} if lmdb_roots else {}
    for source, kind in zip(sources, data_sources):
        if kind == "hub":
            name, source = _hub_name(source)
            if name in locations:
                raise ValueError(f"Two datasets are named {name!r}: name one explicitly with NAME=SOURCE.")
            locations[name] = ("hub", source)

    datasets = {}
    for name, (kind, location) in select_datasets(locations, names).items():
        if kind == "lmdb":
            # Labels are read raw; evaluate_model cleans them under the comparison protocol and counts the drops.
            datasets[name] = LmdbDataset(location, name=name)
        else:
            # Images stay undecoded (`{"bytes", "path"}`), so that a corrupt one is counted instead of raising.
            options = {} if cache_dir is None else {"cache_dir": cache_dir}
            datasets[name] = load_str_dataset(
                location, split=split, streaming=False, image_column=image_column, text_column=text_column, **options
            )
    return datasets


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
        help="A saved CLIP4STR directory, a Hub model id, or a directory exported by `modeling_clip4str.export_onnx` "
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
