"""Shared test helpers: the reference fixture, a tiny CLIP4STR and its processor, all offline."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

# No test may reach the network: make every Hugging Face library fail fast instead of trying.
for _variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_variable, "1")

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLIP4STR_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "fixtures" / "reference-tiny"
CLIP_TOKENIZER = REFERENCE / "clip_tokenizer"


def tiny_config(**overrides):
    from modeling_clip4str import CLIP4STRConfig, clip_tower_config

    values = dict(
        vision_config=clip_tower_config(
            64, 2, intermediate_size=128, num_attention_heads=2, image_size=32, patch_size=8
        ),
        text_config=clip_tower_config(
            64, 2, intermediate_size=128, num_attention_heads=2, vocab_size=49408, max_position_embeddings=77
        ),
        projection_dim=32,
        decoder_num_heads=2,
        decoder_dropout=0.0,
        max_label_length=12,
        num_frozen_text_layers=1,
    )
    values.update(overrides)
    return CLIP4STRConfig(**values)


@pytest.fixture(scope="session")
def caption_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(CLIP_TOKENIZER))


def make_processor(config):
    """The processor a model of `config` needs (the caption tokenizer is the model's: see `make_model`)."""
    from modeling_clip4str import CLIP4STRProcessor

    return CLIP4STRProcessor.from_config(config)


def make_model(caption_tokenizer, seed: int = 0, **overrides):
    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    torch.manual_seed(seed)
    model = CLIP4STRForSceneTextRecognition(tiny_config(**overrides))
    model.set_caption_tokenizer(caption_tokenizer)
    return model.eval()


@pytest.fixture(scope="session")
def reference_cases():
    return torch.load(REFERENCE / "cases.pt", weights_only=True)


@pytest.fixture(scope="session")
def converted_reference(tmp_path_factory):
    """The reference checkpoint converted and saved once per session: (directory, model, processor)."""
    from modeling_clip4str.convert_clip4str_original_to_hf import convert

    out = tmp_path_factory.mktemp("converted") / "reference-tiny"
    model, processor = convert(str(REFERENCE / "reference.ckpt"), str(out), clip_tokenizer=str(CLIP_TOKENIZER))
    return out, model, processor


def word_image(text: str, size=(96, 32), mode: str = "RGB"):
    """A plain rendering of `text` (PIL's default font) for input-handling tests."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(image).text((4, 8), text, fill=(0, 0, 0))
    return image.convert(mode) if mode != "RGB" else image


def tiny_clip_directory(directory, image_size: int = 32, patch_size: int = 8, projection_dim: int = 48):
    """Save a tiny random `CLIPModel` with the CLIP BPE tokenizer files, as `from_clip` expects a Hub CLIP."""
    import shutil

    from transformers import CLIPConfig, CLIPModel

    from modeling_clip4str import clip_tower_config

    torch.manual_seed(0)
    tower = dict(hidden_size=64, num_layers=2, intermediate_size=128, num_attention_heads=2)
    config = CLIPConfig(
        text_config=clip_tower_config(**tower, vocab_size=49408, max_position_embeddings=77),
        vision_config=clip_tower_config(**tower, image_size=image_size, patch_size=patch_size),
        projection_dim=projection_dim,
    )
    clip = CLIPModel(config)
    directory = Path(directory)
    clip.save_pretrained(directory)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(CLIP_TOKENIZER / name, directory / name)
    return directory, clip


def load_benchmark(name: str):
    """A script of `benchmarks/` as a module (with its sibling `common` importable, as when the script runs)."""
    import importlib
    import sys

    folder = str(REPO / "benchmarks")
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module(name)


def png_bytes_of(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_lmdb(path, samples) -> None:
    """Write an STR-format LMDB: `samples` is a list of (image bytes or None, label str/bytes or None)."""
    import lmdb

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for index, (image, label) in enumerate(samples, start=1):
            if image is not None:
                txn.put(b"image-%09d" % index, image)
            if label is not None:
                txn.put(b"label-%09d" % index, label.encode() if isinstance(label, str) else label)
        txn.put(b"num-samples", str(len(samples)).encode())
    env.close()


def kill_when_file_appears(process, signal_file: Path, log: Path, timeout: float, waiting_for: str, before_kill=None):
    """SIGKILL `process` once it writes `signal_file` (a run that announces it is half-way through a save); fail with
    the end of its `log` if it exits first, or with `waiting_for` after `timeout` seconds. `before_kill()` may check
    the half-done state first. The process is always reaped."""
    try:
        deadline = time.monotonic() + timeout
        while not signal_file.exists():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"the run never reached {waiting_for}"
            time.sleep(0.2)
        if before_kill is not None:
            before_kill()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)


def not_clip_tokenizer(tmp_path):
    """What transformers returns, instead of raising, for a CLIP tokenizer whose files are missing."""
    from transformers import CLIPTokenizer

    empty = tmp_path / "no-tokenizer-files"
    empty.mkdir(exist_ok=True)
    return CLIPTokenizer.from_pretrained(str(empty)), empty
