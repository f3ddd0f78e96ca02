"""The converted reference-tiny checkpoint computes what the reference implementation computed."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from conftest import CLIP_TOKENIZER, REFERENCE


def test_pixel_values_match_reference_transform(converted_reference, reference_cases):
    _, _, processor = converted_reference
    images = [Image.open(REFERENCE / "images" / f"{index}.png") for index in range(6)]
    pixel_values = processor(images=images)["pixel_values"]
    assert pixel_values.shape == reference_cases["pixel_values"].shape
    assert (pixel_values - reference_cases["pixel_values"]).abs().max() <= 1e-5


def test_image_memory_matches(converted_reference, reference_cases):
    _, model, _ = converted_reference
    with torch.no_grad():
        memory = model.encode_image(reference_cases["pixel_values"])
    assert memory.shape == reference_cases["memory"].shape
    assert (memory - reference_cases["memory"]).abs().max() <= 1e-5


@pytest.mark.parametrize("refine_iters", [0, 1, 2])
def test_final_logits_and_texts_match(converted_reference, reference_cases, refine_iters):
    _, model, processor = converted_reference
    expected = reference_cases["by_refine_iters"][refine_iters]
    output = model.generate(
        reference_cases["pixel_values"], refine_iters=refine_iters, return_dict_in_generate=True
    )
    # The number of positions shows the early stop: 14 without refinement, all 26 with it.
    assert output.logits.shape == expected["logits"].shape
    assert (output.logits - expected["logits"]).abs().max() <= 1e-4
    assert (output.visual_logits - expected["visual_logits"][-1]).abs().max() <= 1e-4
    texts = processor.batch_decode(output.sequences)
    expected_texts = processor.batch_decode(expected["logits"].argmax(-1))
    assert texts == expected_texts
    if refine_iters == reference_cases["refine_iters"]:
        assert texts == reference_cases["texts_94"]


def test_texts_in_36_character_protocol(converted_reference, reference_cases):
    _, model, processor = converted_reference
    texts = processor.batch_decode(model.generate(reference_cases["pixel_values"]))
    lowered = ["".join(c for c in text.lower() if c in model.config.caption_charset) for text in texts]
    assert lowered == reference_cases["texts_36"]


def test_training_loss_matches(converted_reference, reference_cases):
    _, model, processor = converted_reference
    model.train()
    try:
        labels = processor(text=reference_cases["train_labels"])["labels"]
        with torch.no_grad():
            loss = model(pixel_values=reference_cases["pixel_values"], labels=labels).loss
    finally:
        model.eval()
    assert abs(loss.item() - reference_cases["train_loss"].item()) <= 1e-4


def test_loss_ignores_extra_label_padding(converted_reference, reference_cases):
    _, model, processor = converted_reference
    labels = processor(text=reference_cases["train_labels"])["labels"]
    padded = torch.nn.functional.pad(labels, (0, 5), value=-100)
    model.train()
    try:
        with torch.no_grad():
            loss = model(pixel_values=reference_cases["pixel_values"], labels=padded).loss
    finally:
        model.eval()
    assert abs(loss.item() - reference_cases["train_loss"].item()) <= 1e-4


def test_bare_state_dict_converts_to_same_model_given_heads(tmp_path, reference_cases):
    from modeling_clip4str.convert_clip4str_original_to_hf import convert

    model, _ = convert(
        str(REFERENCE / "reference_state_dict.pt"),
        str(tmp_path / "from-state-dict"),
        clip_tokenizer=str(CLIP_TOKENIZER),
        decoder_num_heads=4,
    )
    assert model.config.decoder_num_heads == 4
    expected = reference_cases["by_refine_iters"][1]["logits"]
    logits = model.generate(reference_cases["pixel_values"], return_dict_in_generate=True).logits
    assert (logits - expected).abs().max() <= 1e-4


def test_bare_state_dict_with_default_heads_differs(tmp_path, reference_cases):
    """Without the heads setting the released default (8) applies, which is not how this fixture was trained."""
    from modeling_clip4str.convert_clip4str_original_to_hf import convert

    model, _ = convert(str(REFERENCE / "reference_state_dict.pt"), None, clip_tokenizer=str(CLIP_TOKENIZER))
    assert model.config.decoder_num_heads == 8
    logits = model.generate(reference_cases["pixel_values"], return_dict_in_generate=True).logits
    expected = reference_cases["by_refine_iters"][1]["logits"]
    assert logits.shape != expected.shape or (logits - expected).abs().max() > 1e-3
