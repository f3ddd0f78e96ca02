"""One reading loop for both back-ends: the PyTorch model and the ONNX Runtime reader refuse the same bad inputs with
the same messages, honour `max_new_tokens` alike, and the export records the model's special ids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import make_model, make_processor

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def both(caption_tokenizer, tmp_path_factory):
    from clip4str_onnx.export_onnx import export
    from clip4str_onnx.onnx_clip4str import CLIP4STROnnxModel

    model = make_model(caption_tokenizer, seed=5)
    out = tmp_path_factory.mktemp("loop") / "onnx"
    export(model, make_processor(model.config), out, log=lambda line: None)
    return model, CLIP4STROnnxModel.from_pretrained(out, num_threads=1), out


def _good(batch=2):
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _nan():
    pixel_values = _good(3)
    pixel_values[1, 0, 2, 2] = float("nan")
    pixel_values[2, 1, 0, 0] = float("inf")
    return pixel_values


BAD_INPUTS = {
    "uint8 pixels": (lambda: (_good() * 50).clamp(0, 255).to(torch.uint8), {}),
    "NaN and infinite pixels": (_nan, {}),
    "three dimensions": (lambda: _good()[0], {}),
    "four channels": (lambda: torch.zeros(1, 4, 32, 32), {}),
    "empty batch": (lambda: torch.zeros(0, 3, 32, 32), {}),
    "wrong image size": (lambda: torch.zeros(1, 3, 32, 64), {}),
    "fractional refine_iters": (_good, {"refine_iters": 1.5}),
    "negative refine_iters": (_good, {"refine_iters": -1}),
    "bool refine_iters": (_good, {"refine_iters": True}),
    "string decode_ar": (_good, {"decode_ar": "no"}),
    "zero max_new_tokens": (_good, {"max_new_tokens": 0}),
    "fractional max_new_tokens": (_good, {"max_new_tokens": 2.5}),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_both_back_ends_refuse_alike(both, case):
    model, onnx_model, _ = both
    make, options = BAD_INPUTS[case]
    with pytest.raises((TypeError, ValueError)) as from_torch:
        model.generate(make(), **options)
    with pytest.raises((TypeError, ValueError)) as from_onnx:
        onnx_model.generate(make(), **options)
    assert type(from_onnx.value) is type(from_torch.value)
    assert str(from_onnx.value) == str(from_torch.value)


def test_max_new_tokens_cuts_both_alike(both):
    model, onnx_model, _ = both
    pixel_values = _good(3)
    with torch.no_grad():
        expected = model.generate(pixel_values, max_new_tokens=3, return_dict_in_generate=True)
    output = onnx_model.generate(pixel_values, max_new_tokens=3, return_dict_in_generate=True)
    assert output.sequences.shape == (3, 3)
    assert (output.sequences == expected.sequences.numpy()).all()
    assert np.abs(output.confidences - expected.confidences.numpy()).max() <= 1e-5


def test_export_records_special_ids(both):
    model, onnx_model, out = both
    settings = json.loads((out / "clip4str_onnx.json").read_text())["settings"]
    for name in ("eos_token_id", "bos_token_id", "pad_token_id"):
        assert settings[name] == getattr(model.config, name) == getattr(onnx_model.config, name)


def test_exports_without_recorded_ids_still_load(both):
    from clip4str_onnx.onnx_clip4str import CLIP4STROnnxConfig

    model, _, out = both
    settings = json.loads((out / "clip4str_onnx.json").read_text())["settings"]
    for name in ("eos_token_id", "bos_token_id", "pad_token_id"):
        del settings[name]
    config = CLIP4STROnnxConfig.from_dict(settings)
    assert (config.eos_token_id, config.bos_token_id, config.pad_token_id) == (
        model.config.eos_token_id, model.config.bos_token_id, model.config.pad_token_id
    )
