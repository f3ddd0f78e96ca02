"""The checkpoint converter: command line, safe loading, clear failures."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch

from conftest import CLIP_TOKENIZER, REFERENCE, REPO, not_clip_tokenizer


@pytest.fixture(scope="module")
def reference_state_dict():
    return torch.load(REFERENCE / "reference.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference_checkpoint():
    return torch.load(REFERENCE / "reference.ckpt", weights_only=True)


def test_command_line_writes_a_loadable_directory(tmp_path, reference_cases):
    from transformers import AutoModel, AutoProcessor

    import modeling_clip4str  # noqa: F401  (registers the Auto classes)

    out = tmp_path / "converted"
    result = subprocess.run(
        [sys.executable, "-m", "modeling_clip4str.convert_clip4str_original_to_hf", str(REFERENCE / "reference.ckpt"),
         str(out), "--clip-tokenizer", str(CLIP_TOKENIZER)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Converted" in result.stdout
    assert (out / "model.safetensors").is_file() and (out / "caption_tokenizer").is_dir()
    model = AutoModel.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    texts = processor.batch_decode(model.generate(reference_cases["pixel_values"]))
    assert texts == reference_cases["texts_94"]


def test_unsafe_pickle_is_refused_unless_allowed(tmp_path, reference_checkpoint):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError, load_checkpoint

    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": reference_checkpoint["state_dict"],
                "hyper_parameters": argparse.Namespace(dec_num_heads=4)}, path)
    with pytest.raises(ConversionError, match="--allow-unsafe-pickle"):
        load_checkpoint(str(path))
    state_dict, _ = load_checkpoint(str(path), allow_unsafe_pickle=True)
    assert "visual_decoder.head.weight" in state_dict

    result = subprocess.run(
        [sys.executable, "-m", "modeling_clip4str.convert_clip4str_original_to_hf", str(path), str(tmp_path / "out"),
         "--clip-tokenizer", str(CLIP_TOKENIZER)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1 and "--allow-unsafe-pickle" in result.stderr


def _convert(tmp_path, state_dict_or_path, **kwargs):
    from modeling_clip4str.convert_clip4str_original_to_hf import convert

    path = state_dict_or_path
    if isinstance(state_dict_or_path, dict):
        path = tmp_path / "edited.pt"
        torch.save(state_dict_or_path, path)
    kwargs.setdefault("clip_tokenizer", str(CLIP_TOKENIZER))
    return convert(str(path), None, decoder_num_heads=4, **kwargs)


def test_missing_key_is_named(tmp_path, reference_checkpoint):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError

    state_dict = dict(reference_checkpoint["state_dict"])
    del state_dict["cross_decoder.norm.bias"]
    with pytest.raises(ConversionError, match=r"missing: cross_decoder\.norm\.bias"):
        _convert(tmp_path, state_dict)


def test_unexpected_key_is_named(tmp_path, reference_checkpoint):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError

    state_dict = dict(reference_checkpoint["state_dict"])
    state_dict["clip_model.visual.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(ConversionError, match=r"clip_model\.visual\.extra_head\.weight"):
        _convert(tmp_path, state_dict)


def test_misshaped_key_is_named(tmp_path, reference_checkpoint):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError

    state_dict = dict(reference_checkpoint["state_dict"])
    state_dict["cross_decoder.norm.weight"] = torch.ones(65)
    with pytest.raises(ConversionError, match=r"mis-shaped: cross_decoder\.norm\.weight"):
        _convert(tmp_path, state_dict)


def test_wrong_charset_is_explained(tmp_path, reference_checkpoint):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError

    with pytest.raises(ConversionError, match="charset"):
        _convert(tmp_path, dict(reference_checkpoint["state_dict"]), charset="abc")


def test_wrapped_state_dicts_are_unwrapped(tmp_path, reference_checkpoint, reference_cases):
    wrapped = {"module." + key: value for key, value in reference_checkpoint["state_dict"].items()}
    model, _ = _convert(tmp_path, {"state_dict": wrapped})
    logits = model.generate(reference_cases["pixel_values"], return_dict_in_generate=True).logits
    assert (logits - reference_cases["logits"]).abs().max() <= 1e-4


def test_presets_match_released_shapes():
    from modeling_clip4str import CLIP4STRConfig

    base = CLIP4STRConfig.from_preset("clip4str-b16")
    assert (base.vision_config.hidden_size, base.vision_config.patch_size, base.projection_dim) == (768, 16, 512)
    assert base.vision_config.num_attention_heads == 12 and base.text_config.num_attention_heads == 8
    large = CLIP4STRConfig.from_preset("clip4str-l14")
    assert (large.vision_config.num_hidden_layers, large.text_config.hidden_size, large.projection_dim) == (24, 768, 768)
    huge = CLIP4STRConfig.from_preset("clip4str-h14")
    assert huge.vision_config.num_attention_heads == 1280 // 64 and huge.text_config.num_hidden_layers == 24
    for config in (base, large, huge):
        assert config.vision_config.hidden_act == config.text_config.hidden_act == "quick_gelu"
        assert config.decoder_num_heads == 8 and config.num_frozen_text_layers == 6
    with pytest.raises(ValueError, match="Unknown preset"):
        CLIP4STRConfig.from_preset("clip4str-xl")


def test_a_bare_state_dict_says_which_settings_were_assumed(tmp_path, reference_checkpoint, capsys):
    # The reference fixture's charset, given; the heads given by `_convert`; the rest assumed and said so.
    charset = reference_checkpoint["hyper_parameters"]["charset_train"]
    _convert(tmp_path, dict(reference_checkpoint["state_dict"]), charset=charset)
    message = capsys.readouterr().err
    assert "Assumed" in message and "caption_charset=" in message and "refine_iters=1" in message
    assert "decoder_num_heads" not in message and "charset='" not in message.replace("caption_charset", "")


def test_converter_without_clip_tokenizer_files_is_refused(tmp_path):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError

    _, folder = not_clip_tokenizer(tmp_path)
    with pytest.raises(ConversionError, match=rf"{folder}.*--clip-tokenizer"):
        _convert(tmp_path, REFERENCE / "reference_state_dict.pt", clip_tokenizer=str(folder))


# --- converted checkpoints --------------------------------------------------------------------------------------------
def test_converter_refuses_nan_or_infinite_weights_naming_them(tmp_path, reference_state_dict):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError

    state_dict = dict(reference_state_dict)
    head = state_dict["visual_decoder.head.weight"].clone()
    head[0, :2] = float("nan")
    state_dict["visual_decoder.head.weight"] = head
    state_dict["clip_model.ln_final.bias"] = torch.full_like(state_dict["clip_model.ln_final.bias"], float("inf"))
    named = r"clip_model\.ln_final\.bias \(128 of 128\).*visual_decoder\.head\.weight \(2 of"
    with pytest.raises(ConversionError, match=named):
        _convert(tmp_path, state_dict)


def test_converter_names_a_missing_checkpoint(tmp_path):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError

    with pytest.raises(ConversionError, match=r"No checkpoint at .*absent\.ckpt"):
        _convert(tmp_path, tmp_path / "absent.ckpt")


def test_converter_names_an_empty_checkpoint(tmp_path):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError

    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(ConversionError, match=r"empty\.ckpt is empty \(0 bytes\)"):
        _convert(tmp_path, tmp_path / "empty.ckpt")


def test_converter_names_a_truncated_checkpoint(tmp_path):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError

    data = (REFERENCE / "reference.ckpt").read_bytes()
    (tmp_path / "half.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match=r"half\.ckpt cannot be read.*truncated or corrupted"):
        _convert(tmp_path, tmp_path / "half.ckpt")


def test_converter_names_a_file_that_is_not_a_checkpoint(tmp_path):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError

    (tmp_path / "page.ckpt").write_text("<html>Not found</html>")
    with pytest.raises(ConversionError, match=r"page\.ckpt is not a PyTorch checkpoint") as raised:
        _convert(tmp_path, tmp_path / "page.ckpt")
    assert "allow-unsafe-pickle" not in str(raised.value)


def test_converter_names_a_misshaped_ln_final(tmp_path, reference_state_dict):
    from modeling_clip4str.convert_clip4str_original_to_hf import ConversionError

    for shape in ((65,), (0,)):
        state_dict = dict(reference_state_dict, **{"clip_model.ln_final.weight": torch.ones(shape)})
        with pytest.raises(ConversionError, match=rf"clip_model\.ln_final\.weight has shape \({shape[0]},\)"):
            _convert(tmp_path, state_dict)
    state_dict = dict(reference_state_dict, **{"clip_model.ln_final.weight": torch.ones(128, 2)})
    named = r"mis-shaped: text_model\.final_layer_norm\.weight \(checkpoint \(128, 2\)"
    with pytest.raises(ConversionError, match=named):
        _convert(tmp_path, state_dict)


@pytest.mark.parametrize("module", ["modeling_clip4str.convert_original_checkpoint", "modeling_clip4str.export_onnx"])
def test_old_command_lines_still_run(module):
    """The command lines of before the re-layout forward to the modules that took their code."""
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
