"""The pieces every CLIP4STR model card is made of ([`~training.evaluation.model_card`] composes them): facts from the
config (input size, charset, architecture), evaluation results as Hub `model-index` entries and a table, the Hub
metadata, the usage block, and how a card names a source (a Hub id as it is, a local path by its last component).

Metric values are given as fractions in [0, 1] (as `compute_str_metrics` and `evaluate_str` return them) and shown
as percentages with two decimals, as STR papers report them.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TASK_TYPE = "image-to-text"
TASK_NAME = "Scene Text Recognition"
BASE_TAGS = ("scene-text-recognition", "ocr", "clip4str", "custom_code")
# Charsets up to this length are listed in full; longer ones by a summary and their first characters.
MAX_LISTED_CHARACTERS = 200

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# --------------------------------------------------------------------------------------------------------------------
# Facts from the config
# --------------------------------------------------------------------------------------------------------------------


def input_size_text(config) -> str:
    """E.g. "32x128 (height x width)"."""
    height, width = config.image_input_size
    return f"{height}x{width} (height x width)"


def _character_class(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Nd":
        return "digits"
    if category.startswith("L"):
        script = unicodedata.name(char, "OTHER").split(" ")[0]
        return "CJK characters" if script == "CJK" else f"{script.title()} letters"
    if category.startswith("M"):
        return "combining marks"
    if category.startswith(("P", "S")):
        return "punctuation and symbols"
    if category.startswith("Z"):
        return "spaces"
    return "other characters"


def charset_summary(charset: str) -> str:
    """E.g. "94 characters: 10 digits, 52 Latin letters, 32 punctuation and symbols" (classes in charset order)."""
    counts: dict[str, int] = {}
    for char in charset:
        kind = _character_class(char)
        counts[kind] = counts.get(kind, 0) + 1
    parts = ", ".join(f"{count:,} {kind}" for kind, count in counts.items())
    return f"{len(charset):,} characters: {parts}"


def charset_scripts(charset: str) -> list[str]:
    """The scripts of the charset's letters, e.g. ["Latin"]."""
    scripts = []
    for char in charset:
        kind = _character_class(char)
        if kind.endswith(" letters") or kind == "CJK characters":
            script = kind.replace(" letters", "").replace(" characters", "")
            if script not in scripts:
                scripts.append(script)
    return scripts


def charset_block(charset: str) -> str:
    """The charset in token-id order as a fenced block (its first characters only for a large charset)."""
    listed = charset[:MAX_LISTED_CHARACTERS]
    fence = "`" * max(3, _longest_run(listed, "`") + 1)
    lines = [f"{fence}text", listed, fence]
    if len(charset) > len(listed):
        lines.append(
            f"(the first {len(listed)} of {len(charset):,}; the full charset is `charset` in config.json)"
        )
    return "\n".join(lines)


def _longest_run(text: str, char: str) -> int:
    runs = re.findall(f"{re.escape(char)}+", text)
    return max((len(run) for run in runs), default=0)


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def architecture_text(config) -> str:
    vision, text = config.vision_config, config.text_config
    return (
        f"CLIP image tower of {_count(vision.num_hidden_layers, 'layer')} x {vision.hidden_size} (patch "
        f"{vision.patch_size}), CLIP text tower of {_count(text.num_hidden_layers, 'layer')} x {text.hidden_size}, "
        f"joint width {config.projection_dim}; visual and cross-modal decoders of "
        f"{_count(config.decoder_num_layers, 'layer')} with {_count(config.decoder_num_heads, 'head')}; "
        f"{_count(config.refine_iters, 'refinement pass', 'refinement passes')}"
    )


def model_facts(config) -> list[str]:
    """Markdown bullet lines every CLIP4STR card states."""
    scripts = charset_scripts(config.charset)
    return [
        f"- **Input**: RGB word crops resized to {input_size_text(config)}, aspect ratio not kept.",
        f"- **Charset**: {charset_summary(config.charset)}"
        + (f" (scripts: {', '.join(scripts)})" if scripts else "")
        + "; in token-id order:",
        "",
        charset_block(config.charset),
        "",
        f"- **Words**: up to {config.max_label_length} characters.",
        f"- **Architecture**: {architecture_text(config)}.",
    ]


# --------------------------------------------------------------------------------------------------------------------
# Evaluation results
# --------------------------------------------------------------------------------------------------------------------


def _metric(metrics: Mapping[str, float], *names: str) -> float | None:
    for name in names:
        for key in (name, f"eval_{name}"):
            if metrics.get(key) is not None:
                value = float(metrics[key])
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{key}={value} is not a fraction in [0, 1]; pass scores as fractions.")
                return value
    return None


def _dataset_type(name: str) -> str:
    if _HUB_ID.match(name) and "/" in name:
        return name
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "dataset"


def eval_result_entries(
    eval_results: Mapping[str, Mapping[str, float]], protocol: str | None = None
) -> list[EvalResult]:
    """`EvalResult`s for `{dataset name: metrics}`: word accuracy (`word_accuracy` or `accuracy`) and 1 - NED
    (`one_minus_ned`), each optionally `eval_`-prefixed as the Trainer names them; `num_samples` is shown with the
    name. `protocol` (e.g. "36-char") is appended to the metric names."""
    suffix = f" ({protocol})" if protocol else ""
    entries = []
    for name, metrics in eval_results.items():
        samples = metrics.get("num_samples", metrics.get("eval_num_samples"))
        shown = f"{name} ({int(samples):,})" if samples is not None else name
        common = dict(task_type=TASK_TYPE, task_name=TASK_NAME, dataset_type=_dataset_type(name), dataset_name=shown)
        accuracy = _metric(metrics, "word_accuracy", "accuracy")
        if accuracy is not None:
            entries.append(EvalResult(
                **common, metric_type="accuracy", metric_name=f"Word accuracy{suffix}",
                metric_value=round(100 * accuracy, 2),
            ))
        one_minus_ned = _metric(metrics, "one_minus_ned")
        if one_minus_ned is not None:
            entries.append(EvalResult(
                **common, metric_type="1-ned", metric_name=f"1 - NED{suffix}",
                metric_value=round(100 * one_minus_ned, 2),
            ))
    return entries


def results_table(entries: Iterable[EvalResult]) -> str:
    """A Markdown table with a row per dataset: word accuracy and 1 - NED in percent."""
    rows: dict[str, dict[str, float]] = {}
    for entry in entries:
        rows.setdefault(entry.dataset_name, {})[entry.metric_type] = entry.metric_value
    lines = ["| Dataset | Word accuracy (%) | 1 - NED (%) |", "|---|---:|---:|"]
    for name, values in rows.items():
        cells = [f"{values[key]:.2f}" if key in values else "-" for key in ("accuracy", "1-ned")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# Cards
# --------------------------------------------------------------------------------------------------------------------


def is_hub_id(name: str | None) -> bool:
    """Whether `name` can be a Hub repository id (and is not a local path)."""
    return bool(name) and not os.path.exists(name) and bool(_HUB_ID.match(name))


def card_metadata(
    model_name: str,
    *,
    base_model: str | None = None,
    datasets: Iterable[str] = (),
    eval_results: list[EvalResult] | None = None,
    language: str | list[str] | None = None,
    tags: Iterable[str] = (),
    license: str | None = "apache-2.0",
) -> ModelCardData:
    """Hub metadata of a CLIP4STR card. `base_model` and `datasets` are kept only when they are Hub ids."""
    hub_datasets = [name for name in datasets if is_hub_id(name)]
    return ModelCardData(
        model_name=model_name,
        license=license,
        library_name="transformers",
        pipeline_tag=TASK_TYPE,
        tags=sorted({*BASE_TAGS, *tags}),
        base_model=base_model if is_hub_id(base_model) else None,
        datasets=hub_datasets or None,
        language=language,
        metrics=sorted({entry.metric_type for entry in eval_results}) if eval_results else None,
        eval_results=eval_results or None,
    )


def compose_card(metadata: ModelCardData, body_lines: Iterable[str]) -> ModelCard:
    """A `ModelCard` of YAML front matter and a Markdown body."""
    return ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n" + "\n".join(body_lines).strip() + "\n")


def usage_lines(model_name: str) -> list[str]:
    return [
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'reader = pipeline("image-to-text", model="{model_name}", trust_remote_code=True)',
        'reader("word.png")  # [{\'generated_text\': ...}]',
        "```",
    ]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def public_source_name(source: str | os.PathLike) -> str:
    """How a card names where something came from: a local path by its last component, a Hub id as it is."""
    source = os.fspath(source)
    if os.path.exists(source) or os.path.isabs(source) or source.startswith((".", "~")):
        return os.path.basename(os.path.normpath(source)) or source
    return source


__all__ = [
    "BASE_TAGS", "TASK_NAME", "TASK_TYPE", "card_metadata", "charset_summary", "compose_card", "eval_result_entries",
    "file_sha256", "input_size_text", "is_hub_id", "model_facts", "public_source_name", "results_table",
    "usage_lines",
]
