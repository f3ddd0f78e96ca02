"""The model card (README.md in Hub format) written next to a model trained by `run_str.py`.

    write_model_card(training_args.output_dir, model, training_args, train_sources=data_args.train_datasets,
                     eval_results={"IIIT5k": {"word_accuracy": 0.95, "one_minus_ned": 0.98, "num_samples": 3000}},
                     base_model="openai/clip-vit-base-patch16")

The card states the model as it is: its name (the Hub id, else the output folder's name), its input size and charset
(from the config), what it started from, what it was trained on and with which settings, and the evaluation results
as measured (metadata `model-index` entries and a table). The pieces shared with the converter's card live in
`modeling_clip4str/model_card_clip4str.py`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence

from huggingface_hub import ModelCard

from modeling_clip4str.model_card_clip4str import (
    card_metadata,
    compose_card,
    eval_result_entries,
    is_hub_id,
    model_facts,
    results_table,
    usage_lines,
)


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


__all__ = ["model_name_of", "training_model_card", "write_model_card"]
