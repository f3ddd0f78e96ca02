"""Model cards (README.md with Hub metadata) that say what a CLIP4STR checkpoint really is, in one place: the card of a
model converted from a reference checkpoint ([`converted_model_card`], written by
`modeling_clip4str.convert_clip4str_original_to_hf`) and of a model trained by `run_str.py` ([`training_model_card`],
written by the trainer):

    write_model_card(training_args.output_dir, model, training_args, train_sources=data_args.train_datasets,
                     eval_results={"IIIT5k": {"word_accuracy": 0.95, "one_minus_ned": 0.98, "num_samples": 3000}},
                     base_model="openai/clip-vit-base-patch16")

Everything a card states comes from the config or from the caller: its name (the Hub id, else the output folder's
name), the input size, the charset, the tower shapes, what it started from or was converted from (source file and
SHA-256, and where each setting came from), what it was trained on and with which settings, and the evaluation
results as measured (metadata `model-index` entries and a table). The shared pieces are in `model_card_parts.py`.
The model package imports this module only inside the converter's function that writes the card.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence

from huggingface_hub import ModelCard

from .model_card_parts import (
    card_metadata,
    charset_summary,
    compose_card,
    eval_result_entries,
    file_sha256,
    is_hub_id,
    model_facts,
    public_source_name,
    results_table,
    usage_lines,
)

SETTING_ORIGINS = {
    "checkpoint": "the checkpoint's hyper-parameters",
    "weights": "the tensor shapes",
    "given": "given to the converter",
    "assumed": "assumed (the released models' value)",
}
"""Where a converted model's setting came from, as [`converted_model_card`] words it."""


# --- converted models -----------------------------------------------------------------------------------------------
def _setting_value(config, name: str) -> str:
    value = getattr(config, name)
    if isinstance(value, str) and name.endswith("charset"):
        return charset_summary(value)
    return f"`{value!r}`"


def converted_model_card(
    config,
    source_checkpoint: str | os.PathLike,
    *,
    setting_origins: Mapping[str, str],
    sha256: str | None = None,
    model_name: str | None = None,
    base_model: str | None = None,
    clip_tokenizer: str | None = None,
    eval_results: Mapping[str, Mapping[str, float]] | None = None,
    eval_protocol: str | None = None,
    language: str | list[str] | None = None,
    license: str | None = "apache-2.0",
    normalization: str | None = "clip",
) -> ModelCard:
    """The card of a model converted from a reference CLIP4STR checkpoint.

    Args:
        config: the converted model's `CLIP4STRConfig`.
        source_checkpoint: the converted file; its name is stated, and its SHA-256 unless `sha256` is given.
        setting_origins: `{config field: origin}` for the settings a bare state dict cannot carry (decoder heads,
            charsets, lengths, refinement passes), origins as in [`SETTING_ORIGINS`]; see
            [`~modeling_clip4str.convert_clip4str_original_to_hf.infer_setting_origins`].
        model_name: the card's title and model-index name (default: the file name without extension).
        base_model: the Hub id of the CLIP the checkpoint was trained from, when known.
        clip_tokenizer: the CLIP BPE tokenizer used for captions: a Hub id is named as it is, a local folder by its
            last component (a card is published; a user's directory layout is not).
        eval_results: `{dataset: metrics}` measured on the converted model (see [`eval_result_entries`]).
        normalization: the saved processor's normalisation ("clip" or "reference-test"; `None` for other values).
    """
    unknown = sorted(set(setting_origins.values()) - set(SETTING_ORIGINS))
    if unknown:
        raise ValueError(f"Unknown setting origins {unknown}; use {sorted(SETTING_ORIGINS)}.")
    file_name = os.path.basename(os.fspath(source_checkpoint))
    sha256 = sha256 or file_sha256(source_checkpoint)
    model_name = model_name or os.path.splitext(file_name)[0]
    entries = eval_result_entries(eval_results or {}, eval_protocol)
    metadata = card_metadata(
        model_name, base_model=base_model, eval_results=entries, language=language, license=license,
    )
    body = [
        f"# {model_name}",
        "",
        f"CLIP4STR converted from the reference implementation's checkpoint `{file_name}` with "
        "`python -m modeling_clip4str.convert_clip4str_original_to_hf`.",
        "",
        f"- **Source checkpoint**: `{file_name}`, SHA-256 `{sha256}`.",
    ]
    if base_model:
        body.append(f"- **CLIP it was trained from**: {base_model}.")
    if clip_tokenizer:
        body.append(f"- **Caption tokenizer**: the CLIP BPE tokenizer of {public_source_name(clip_tokenizer)}.")
    body += model_facts(config)
    body += ["", "## Conversion settings", "", "| Setting | Value | From |", "|---|---|---|"]
    body += [
        f"| {name} | {_setting_value(config, name)} | {SETTING_ORIGINS[origin]} |"
        for name, origin in setting_origins.items()
    ]
    if "assumed" in setting_origins.values():
        body += [
            "",
            "The source did not record the settings marked *assumed*: they are the released models' values, not "
            "read from the file. If the checkpoint was trained otherwise, convert it again with the matching options "
            "(e.g. `--decoder-num-heads`, `--charset`).",
        ]
    body += [""] + usage_lines(model_name) + ["", "## Preprocessing and benchmark protocol", ""]
    body += _normalization_lines(normalization) + ["", "## Evaluation", ""]
    if entries:
        protocol = f" (protocol: {eval_protocol})" if eval_protocol else ""
        body += [f"Measured on the converted model{protocol}:", "", results_table(entries)]
    else:
        body.append(
            "Not measured for this card. The conversion computes what the source checkpoint computes; "
            "`python training/evaluate_str.py` scores the model under the benchmark protocol."
        )
    return compose_card(metadata, body)


_NORMALIZATION_TEXT = {
    "clip": "CLIP's mean and std, as the reference trained and validated these weights",
    "reference-test": "0.5 per channel, as the reference's test.py (the published numbers) and read.py read",
}


def _normalization_lines(normalization: str | None) -> list[str]:
    used = _NORMALIZATION_TEXT.get(normalization, "a mean and std of its own (see `preprocessor_config.json`)")
    return [
        f"The processor normalises images with {used}. The other choice is one argument away: "
        '`AutoProcessor.from_pretrained(..., normalization="reference-test")` (0.5 per channel) or '
        '`normalization="clip"`.',
        "",
        "`python -m training.evaluate_str` scores this model as the reference's test.py does unless told otherwise "
        "(`benchmark_protocol: reference` in `config.json`): images normalised with 0.5 per channel, captions "
        "filtered by the comparison charset, and the label-length column holding the mean length of the "
        "predictions. `--protocol pipeline` scores it as the pipeline reads it instead.",
    ]


def write_converted_model_card(
    output_dir: str | os.PathLike,
    config,
    source_checkpoint: str | os.PathLike,
    *,
    setting_origins: Mapping[str, str],
    clip_tokenizer: str | None = None,
    normalization: str | None = "clip",
) -> str:
    """Write [`converted_model_card`] as `output_dir/README.md`; returns its path."""
    card = converted_model_card(config, source_checkpoint, setting_origins=setting_origins,
                                clip_tokenizer=clip_tokenizer, normalization=normalization)
    path = os.path.join(os.fspath(output_dir), "README.md")
    card.save(path)
    return path


# --- trained models -------------------------------------------------------------------------------------------------
def model_name_of(training_args, hub_model_id: str | None = None) -> str:
    """The Hub id (`hub_model_id`, else `training_args.hub_model_id`), else the output folder's name."""
    name = hub_model_id or getattr(training_args, "hub_model_id", None)
    return name or os.path.basename(os.path.normpath(training_args.output_dir))


def _source_text(source: str) -> str:
    if is_hub_id(source):
        return f"[{source}](https://huggingface.co/datasets/{source})"
    return f"`{os.path.basename(os.path.normpath(source))}` (local data)"


def _base_model_text(base_model: str | None) -> str:
    if not base_model:
        return "not recorded"
    if is_hub_id(base_model):
        return f"[{base_model}](https://huggingface.co/{base_model})"
    return f"`{os.path.basename(os.path.normpath(base_model))}` (a local checkpoint)"


def _hyperparameters(training_args, trained_steps: int | None) -> dict:
    """The settings that shaped the weights; those run_str.py adds to `TrainingArguments` only when present."""
    names = [
        "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "world_size", "learning_rate",
        "decoder_lr_multiplier", "scale_lr_by_batch", "weight_decay", "one_cycle", "warmup_ratio", "warmup_steps",
        "max_grad_norm", "seed",
    ]
    values = {"trained_steps": trained_steps}
    values.update({name: getattr(training_args, name) for name in names if hasattr(training_args, name)})
    return {name: value for name, value in values.items() if value is not None}


def training_model_card(
    model,
    training_args,
    *,
    train_sources: Sequence[str],
    eval_results: Mapping[str, Mapping[str, float]] | None = None,
    base_model: str | None = None,
    hub_model_id: str | None = None,
    tags: Iterable[str] = (),
    language: str | list[str] | None = None,
    eval_protocol: str | None = None,
    trained_steps: int | None = None,
    license: str | None = "apache-2.0",
) -> ModelCard:
    """The card of a CLIP4STR trained by `run_str.py`.

    Args:
        model: the trained model (its config gives input size, charset and shapes).
        training_args: the run's `TrainingArguments` (name, hyper-parameters).
        train_sources: the training data as given (Hub dataset ids go into the metadata too).
        eval_results: `{dataset name: metrics}` as evaluated: `word_accuracy` (or `accuracy`) and `one_minus_ned`
            as fractions, optionally `eval_`-prefixed, and `num_samples`. evaluate_str's `results["datasets"]`
            fits as it is.
        base_model: the CLIP or CLIP4STR the run started from (in the metadata when it is a Hub id).
        hub_model_id: the model's Hub id (default: `training_args.hub_model_id`, else the output folder's name).
        tags: extra Hub tags.
        language: ISO code(s) of the training text's language(s), when known.
        eval_protocol: how predictions were compared, e.g. "36-char" (appended to the metric names).
        trained_steps: optimisation steps actually run (`trainer.state.global_step`).
    """
    name = model_name_of(training_args, hub_model_id)
    entries = eval_result_entries(eval_results or {}, eval_protocol)
    metadata = card_metadata(
        name, base_model=base_model, datasets=train_sources, eval_results=entries, language=language, tags=tags,
        license=license,
    )
    sources = ", ".join(_source_text(source) for source in train_sources) if train_sources else "not recorded"
    body = [
        f"# {name}",
        "",
        "A CLIP4STR scene text recognizer trained with `training/run_str.py` of the clip4str-hf project (CLIP image "
        "and text towers, a visual and a cross-modal decoder; predict, cross-check, refine).",
        "",
        f"- **Started from**: {_base_model_text(base_model)}.",
        f"- **Training data**: {sources}.",
    ]
    if language:
        body.append(f"- **Language**: {', '.join([language] if isinstance(language, str) else language)}.")
    body += model_facts(model.config)
    body += [""] + usage_lines(name)
    body += [
        "",
        "## Training hyper-parameters",
        "",
        "```json",
        json.dumps(_hyperparameters(training_args, trained_steps), indent=2),
        "```",
        "",
        "## Evaluation",
        "",
    ]
    if entries:
        protocol = f" (protocol: {eval_protocol})" if eval_protocol else ""
        body += [f"As evaluated at the end of training{protocol}:", "", results_table(entries)]
    else:
        body.append("Not evaluated in this run.")
    return compose_card(metadata, body)


def write_model_card(output_dir: str, model, training_args, **card_options) -> str:
    """Write [`training_model_card`] as `output_dir/README.md` (call it on the main process); returns the path."""
    path = os.path.join(output_dir, "README.md")
    os.makedirs(output_dir, exist_ok=True)
    training_model_card(model, training_args, **card_options).save(path)
    return path


__all__ = [
    "SETTING_ORIGINS",
    "converted_model_card",
    "model_name_of",
    "training_model_card",
    "write_converted_model_card",
    "write_model_card",
]
