"""The model card (README.md in Hub format) that `run_str.py --push_to_hub` writes next to a trained model."""

from __future__ import annotations

import json
import os

import yaml


def render_model_card(model, training_args, data_sources: list[str], eval_metrics: dict | None = None,
                      base_model: str | None = None, tags: list[str] | None = None) -> str:
    """Markdown with YAML front matter describing a CLIP4STR trained by `run_str.py`."""
    config = model.config
    name = os.path.basename(os.path.normpath(training_args.output_dir))
    metadata = {
        "license": "apache-2.0",
        "library_name": "transformers",
        "pipeline_tag": "image-to-text",
        "tags": sorted({"scene-text-recognition", "ocr", "clip4str", "custom_code", *(tags or [])}),
    }
    if base_model:
        metadata["base_model"] = base_model
    datasets = [source for source in data_sources if not os.path.exists(source)]
    if datasets:
        metadata["datasets"] = datasets
    if eval_metrics:
        results = []
        for key, value in sorted(eval_metrics.items()):
            if key.endswith(("word_accuracy", "one_minus_ned")):
                results.append({"type": "accuracy" if key.endswith("word_accuracy") else "1-NED",
                                "name": key, "value": round(float(value), 4)})
        if results:
            metadata["model-index"] = [{"name": name, "results": [{
                "task": {"type": "image-to-text", "name": "Scene Text Recognition"},
                "dataset": {"type": "validation", "name": ", ".join(data_sources) or "validation"},
                "metrics": results,
            }]}]
    hyperparameters = {
        "max_steps": training_args.max_steps,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "world_size": training_args.world_size,
        "learning_rate (towers, before batch scaling)": training_args.learning_rate,
        "decoder_lr_multiplier": getattr(training_args, "decoder_lr_multiplier", None),
        "scale_lr_by_batch": getattr(training_args, "scale_lr_by_batch", None),
        "weight_decay": training_args.weight_decay,
        "warmup_ratio": training_args.warmup_ratio,
        "max_grad_norm": training_args.max_grad_norm,
        "seed": training_args.seed,
    }
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).strip(),
        "---",
        "",
        f"# {name}",
        "",
        "A CLIP4STR scene text recognizer trained with `training/run_str.py` of the clip4str-hf project (CLIP "
        "image and text towers, a visual and a cross-modal PARSeq-style decoder; predict, cross-check, refine).",
        "",
        f"- Charset: {len(config.charset)} characters (`{config.charset}`), words up to {config.max_label_length}.",
        f"- Image tower: {config.vision_config.num_hidden_layers} layers x {config.vision_config.hidden_size}, "
        f"{config.vision_config.image_size}px input, patch {config.vision_config.patch_size}; text tower: "
        f"{config.text_config.num_hidden_layers} layers x {config.text_config.hidden_size}; joint width "
        f"{config.projection_dim}.",
        f"- Training data: {', '.join(data_sources) if data_sources else 'not recorded'}.",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'reader = pipeline("image-to-text", model="{name}", trust_remote_code=True)',
        'reader("word.png")',
        "```",
        "",
        "## Training hyper-parameters",
        "",
        "```json",
        json.dumps(hyperparameters, indent=2),
        "```",
    ]
    if eval_metrics:
        lines += ["", "## Evaluation (validation, during training)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value:.4f} |" for key, value in sorted(eval_metrics.items())
                  if isinstance(value, (int, float))]
    return "\n".join(lines) + "\n"
