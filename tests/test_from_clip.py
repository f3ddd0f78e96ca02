"""`from_clip` starts CLIP4STR from any Hugging Face CLIP checkpoint, and the result trains."""

from __future__ import annotations

import torch

from conftest import make_processor, tiny_clip_directory, word_image


def _tiny_clip_directory(tmp_path):
    return tiny_clip_directory(tmp_path / "tiny-clip")


def test_towers_hold_the_clip_weights(tmp_path):
    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    directory, clip = _tiny_clip_directory(tmp_path)
    model = CLIP4STRForSceneTextRecognition.from_clip(str(directory), max_label_length=10, decoder_num_heads=4)
    assert model.config.projection_dim == 48
    assert model.config.max_label_length == 10
    for ours, theirs in (
        (model.vision_model, clip.vision_model),
        (model.text_model, clip.text_model),
        (model.visual_projection, clip.visual_projection),
        (model.text_projection, clip.text_projection),
    ):
        mine = ours.state_dict()
        for name, value in theirs.state_dict().items():
            assert torch.equal(mine[name], value), name
    assert model.caption_tokenizer is not None
    assert model.tokenize_captions(["hello"])[0, :3].tolist() == [49406, 3306, 49407]


def test_from_clip_model_trains(tmp_path, caption_tokenizer):
    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    directory, _ = _tiny_clip_directory(tmp_path)
    model = CLIP4STRForSceneTextRecognition.from_clip(
        str(directory), charset="abcdefghijklmnopqrstuvwxyz", max_label_length=8, decoder_num_heads=4,
        num_frozen_text_layers=1, decoder_dropout=0.0,
    )
    processor = make_processor(model.config)
    words = ["cat", "dog", "sun", "tree"]
    batch = processor(images=[word_image(word) for word in words], text=words)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    torch.manual_seed(0)
    losses = []
    for _ in range(40):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    # Frozen parts did not move; the image tower did.
    assert model.text_model.embeddings.token_embedding.weight.grad is None
