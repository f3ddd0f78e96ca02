"""The results of [`~training.evaluation.benchmark.evaluate_model`] as people read them: the STR results table with the
protocol it was scored under, the skipped samples with their reasons, the differences between two precisions, and
the predictions as JSON lines."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

from modeling_clip4str.labels_clip4str import ASCII_FOLD
from training.data import SKIP_REASONS
from training.evaluation.benchmark_protocols import PROTOCOLS

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


def write_predictions(results: dict, path: str | os.PathLike) -> None:
    """Move every dataset's `samples` out of `results` into `path`, one JSON object per line."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for name, result in results["datasets"].items():
            for record, read, prediction, label, confidence in result.pop("samples", []):
                row = {"dataset": name, "record": record, "read": read, "prediction": prediction, "label": label,
                       "confidence": confidence}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
