"""Shared helpers of the benchmark scripts: model shapes with random weights, timing, machine description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch

from modeling_clip4str import CLIP4STRConfig, CLIP4STRForSceneTextRecognition, clip_tower_config

REPO = Path(__file__).resolve().parents[1]
CLIP_TOKENIZER = REPO.parent / "shared" / "fixtures" / "reference-tiny" / "clip_tokenizer"


def small_config(**overrides) -> CLIP4STRConfig:
    """A small shape: 4-layer, 256-wide towers at 224x224, patch 16, D = 256, decoder heads 8."""
    return CLIP4STRConfig(
        vision_config=clip_tower_config(256, 4, image_size=224, patch_size=16),
        text_config=clip_tower_config(256, 4, vocab_size=49408, max_position_embeddings=77),
        projection_dim=256,
        **overrides,
    )


def build_model(shape: str, **overrides) -> CLIP4STRForSceneTextRecognition:
    """Random weights (seeded) of a released shape ("b16") or the small one."""
    torch.manual_seed(0)
    config = CLIP4STRConfig.from_preset("clip4str-b16", **overrides) if shape == "b16" else small_config(**overrides)
    model = CLIP4STRForSceneTextRecognition(config)
    tokenizer_dir = os.environ.get("CLIP4STR_CLIP_TOKENIZER", str(CLIP_TOKENIZER))
    from transformers import CLIPTokenizer

    model.set_caption_tokenizer(CLIPTokenizer.from_pretrained(tokenizer_dir))
    return model


def force_length(model: CLIP4STRForSceneTextRecognition, num_chars: int | None, stable: bool = False) -> None:
    """Make both decoders predict `[E]` exactly at position `num_chars` (None: never, so all 26 steps run).

    Random weights end words at random places; the benchmark needs a known length. The head's `[E]` row reads one
    feature that the position queries of positions >= num_chars set very high, and of earlier positions very low.

    With `stable`, position i also predicts a fixed character whatever the context, as a confident trained model
    does: refinement then leaves the predictions, and so the captions, unchanged, and the text tower is not run
    again. Without it, random weights change the predictions at refinement and the captions are re-encoded.
    """
    eos = model.config.eos_token_id
    num_positions = model.config.num_decoding_steps
    with torch.no_grad():
        for decoder in (model.visual_decoder, model.cross_decoder):
            decoder.head.weight[eos].zero_()
            decoder.head.bias[eos] = -1e4
            if num_chars is not None:
                decoder.head.weight[eos, 0] = 1e3
                decoder.norm.weight[0] = 1.0
                decoder.norm.bias[0] = 0.0
                decoder.pos_queries[:, num_chars:, 0] = 1e4
                # ... and very low before it: left to chance, that feature ends some words after 2 or 3 steps.
                decoder.pos_queries[:, :num_chars, 0] = -1e4
                decoder.head.bias[eos] = 0.0
            if stable:
                letters = model.config.charset.index("a") + 1  # ids of "a", "b", ... (the 94-char charset)
                for position in range(min(num_positions, num_chars if num_chars is not None else num_positions)):
                    feature = 1 + position
                    decoder.norm.weight[feature] = 1.0
                    decoder.norm.bias[feature] = 0.0
                    decoder.pos_queries[:, position, feature] = 1e4
                    decoder.head.weight[letters + position % 26, feature] = 1e3


def median_seconds(function, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(functions, repeats: int, warmup: int = 1) -> list[float]:
    """Median seconds of each function, timed in alternation (f1, f2, f1, f2, ...)."""
    for function in functions:
        for _ in range(warmup):
            function()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            function()
            times[index].append(time.perf_counter() - start)
    return [statistics.median(values) for values in times]


def describe_machine(device: str) -> str:
    parts = [platform.processor() or platform.machine(), f"{os.cpu_count()} logical CPUs",
             f"torch {torch.__version__}", f"{torch.get_num_threads()} threads"]
    if device == "cuda" and torch.cuda.is_available():
        parts.insert(0, torch.cuda.get_device_name())
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    parts[0] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return ", ".join(parts)
