"""Scoring CLIP4STR readers on benchmarks: each dataset read through its filter (the label rule of training for the
comparison charset), every prediction compared under the STR protocol, and the results per dataset, combined and as
the mean of datasets ([`evaluate_model`], the library behind `python -m training.evaluate_str`, whose docstring
states the protocol). Samples that cannot be scored are counted per dataset with the reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from itertools import islice

import datasets as hf_datasets
import torch
from tqdm.auto import tqdm

from modeling_clip4str.labels_clip4str import LabelCleaner
from training.data import EvaluationDataset, FilteredIterableDataset, STRDataCollator, STRExampleFilter
from training.evaluation.benchmark_protocols import captions_for, processor_for, protocol_record, resolve_protocol
from training.evaluation.confusions import CharacterConfusions
from training.evaluation.protocol import STRScoreAccumulator, evaluation_charset, normalize_for_protocol

logger = logging.getLogger("evaluate_str")

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
    """The comparison charset for `model` and where it comes from (see [`~training.evaluation.protocol.evaluation_charset`],
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
        model: a CLIP4STR model, its ONNX Runtime version ([`~clip4str_onnx.onnx_clip4str.CLIP4STROnnxModel`]),
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
        protocol: how the model reads the images (see [`~training.evaluation.benchmark_protocols`]): `"reference"` (the
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
        - `confusions` (with `confusions > 0`): the summary of [`~training.evaluation.confusions.CharacterConfusions`] over all
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
