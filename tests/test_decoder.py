"""The decoder's fast paths compute what the plain definitions compute."""

from __future__ import annotations

import pytest
import torch

from conftest import make_model, tiny_config
from modeling_clip4str.decoder_clip4str import CLIP4STRDecoder
from modeling_clip4str.permutations_clip4str import causal_mask, permutation_masks, sample_permutations


def _decoder(depth: int, seed: int = 0):
    torch.manual_seed(seed)
    decoder = CLIP4STRDecoder(tiny_config(decoder_num_layers=depth)).eval()
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.normal_(0, 0.3)
    return decoder


def _naive_left_to_right(decoder, memory_kv, steps, bos, eos):
    """Recompute the whole context at every step, as the reference does."""
    batch = memory_kv[0][0].shape[0]
    context = torch.full((batch, 1), bos, dtype=torch.long)
    logits = []
    for step in range(steps):
        length = step + 1
        mask = causal_mask(steps)
        step_logits = decoder(
            context,
            memory_kv,
            queries=decoder.pos_queries[:, step : step + 1],
            query_mask=mask[step : step + 1, :length],
            content_mask=mask[:length, :length],
        )
        logits.append(step_logits)
        context = torch.cat([context, step_logits.argmax(-1)], dim=1)
    return torch.cat(logits, dim=1)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_cached_left_to_right_equals_recomputation(depth):
    decoder = _decoder(depth)
    config = tiny_config()
    memory = torch.randn(3, 9, config.projection_dim)
    with torch.no_grad():
        memory_kv = decoder.memory_key_values(memory)
        fast, ids = decoder.decode_autoregressive(memory_kv, 8, config.bos_token_id, 0, stop_when_finished=False)
        slow = _naive_left_to_right(decoder, memory_kv, 8, config.bos_token_id, 0)
    assert (fast - slow).abs().max() < 1e-5
    assert torch.equal(ids, fast.argmax(-1))


def test_left_to_right_stops_when_every_word_has_ended():
    decoder = _decoder(1)
    with torch.no_grad():
        decoder.head.bias.zero_()
        decoder.head.bias[0] = 100.0  # [E] always wins
        memory_kv = decoder.memory_key_values(torch.randn(2, 5, 32))
        logits, _ = decoder.decode_autoregressive(memory_kv, 10, 95, 0, stop_when_finished=True)
        assert logits.shape[1] == 1
        logits, _ = decoder.decode_autoregressive(memory_kv, 10, 95, 0, stop_when_finished=False)
        assert logits.shape[1] == 10


@pytest.mark.parametrize("depth", [1, 2])
def test_permutations_in_one_pass_equal_one_by_one(depth):
    decoder = _decoder(depth, seed=1)
    torch.manual_seed(2)
    tokens = torch.randint(1, 50, (4, 7))
    tokens[:, 0] = 95
    tokens[1, 4:] = 96  # padding
    padding = tokens == 96
    perms = sample_permutations(6, 6)
    content_masks, query_masks = permutation_masks(perms)
    memory_kv = decoder.memory_key_values(torch.randn(4, 9, 32))
    with torch.no_grad():
        together = decoder(tokens, memory_kv, query_mask=query_masks, content_mask=content_masks, padding_mask=padding)
        for k in range(len(perms)):
            alone = decoder(tokens, memory_kv, query_mask=query_masks[k], content_mask=content_masks[k],
                            padding_mask=padding)
            assert (together[:, k] - alone).abs().max() < 1e-5


@pytest.mark.parametrize("depth", [1, 2])
def test_grouped_memory_equals_separate_memories(depth):
    """In training each order of the cross-modal branch reads its own caption: one pass with a memory mask."""
    decoder = _decoder(depth, seed=4)
    tokens = torch.randint(1, 50, (2, 5))
    tokens[:, 0] = 95
    perms = sample_permutations(4, 4)
    content_masks, query_masks = permutation_masks(perms)
    groups = len(perms)
    image = torch.randn(2, 6, 32)
    captions = torch.randn(2, groups, 3, 32)
    with torch.no_grad():
        image_kv = decoder.memory_key_values(image)
        caption_kv = decoder.memory_key_values(captions.flatten(1, 2))
        memory_kv = decoder.concat_key_values(image_kv, caption_kv)
        hidden = ~torch.eye(groups, dtype=torch.bool).repeat_interleave(3, dim=1)
        memory_mask = torch.zeros(groups, 6 + groups * 3).masked_fill(
            torch.cat([torch.zeros(groups, 6, dtype=torch.bool), hidden], dim=1), float("-inf")
        )
        together = decoder(tokens, memory_kv, query_mask=query_masks, content_mask=content_masks,
                           memory_mask=memory_mask)
        for k in range(groups):
            own = decoder.memory_key_values(torch.cat([image, captions[:, k]], dim=1))
            alone = decoder(tokens, own, query_mask=query_masks[k], content_mask=content_masks[k])
            assert (together[:, k] - alone).abs().max() < 1e-5


def test_batched_and_looped_training_losses_agree(caption_tokenizer):
    from conftest import make_processor, word_image

    model = make_model(caption_tokenizer, seed=5, decoder_num_layers=2, perm_num=6)
    processor = make_processor(model.config, caption_tokenizer)
    words = ["hello", "World42", "a", "Scene-Text"]
    batch = processor(images=[word_image(w) for w in words], text=words)
    losses = {}
    for batched in (True, False):
        model.batch_permutations = batched
        torch.manual_seed(7)  # the same sampled orders
        with torch.no_grad():
            losses[batched] = model(**batch).loss.item()
    assert abs(losses[True] - losses[False]) < 1e-5


def test_non_autoregressive_generate_reads_all_positions(caption_tokenizer):
    model = make_model(caption_tokenizer, seed=6)
    pixel_values = torch.randn(2, 3, 32, 32)
    for refine_iters in (0, 2):
        output = model.generate(pixel_values, decode_ar=False, refine_iters=refine_iters, return_dict_in_generate=True)
        assert output.logits.shape == (2, model.config.num_decoding_steps, model.config.num_classes)


def test_sequences_are_padded_after_the_end_token(caption_tokenizer):
    model = make_model(caption_tokenizer, seed=8)
    output = model.generate(torch.randn(4, 3, 32, 32), return_dict_in_generate=True)
    config = model.config
    for row, logits in zip(output.sequences.tolist(), output.logits.argmax(-1).tolist()):
        if config.eos_token_id in logits:
            end = logits.index(config.eos_token_id)
            assert row[: end + 1] == logits[: end + 1]
            assert all(token == config.pad_token_id for token in row[end + 1 :])
        else:
            assert row == logits
    probabilities = output.logits.softmax(-1).amax(-1)
    assert torch.allclose(output.char_confidences, probabilities)
    assert ((output.confidences > 0) & (output.confidences <= 1)).all()


def test_cached_text_tower_equals_the_transformers_text_model(caption_tokenizer):
    model = make_model(caption_tokenizer, seed=9)
    texts = ["hello", "", "riverside2024", "averyveryverylongwordindeedthatgetstruncated"]
    with torch.no_grad():
        expected = model.encode_text(model.tokenize_captions(texts))
        state = model._caption_state(texts, torch.device("cpu"))
        assert (state.memory - expected).abs().max() < 1e-5
        # A later pass re-encodes only what changed, from the first changed token on, with the same result.
        changed = ["hello", "x", "riverside2025", "averyveryverylongwordindeedthatgetstruncated"]
        updated = model._caption_state(changed, torch.device("cpu"), previous=state)
        assert (updated.memory - model.encode_text(model.tokenize_captions(changed))).abs().max() < 1e-5
        assert model._caption_state(changed, torch.device("cpu"), previous=updated) is updated


def test_caption_cache_overflow_keeps_the_batch_consistent(caption_tokenizer, monkeypatch):
    import modeling_clip4str.modeling_clip4str as modeling

    model = make_model(caption_tokenizer, seed=10)
    monkeypatch.setattr(modeling, "_CAPTION_CACHE_SIZE", 2)
    expected = {text: model.tokenize_captions([text])[0] for text in ["ab", "cd", "ef", "gh"]}
    for batch in (["ab", "cd", "ef"], ["ab", "gh", "cd", "ef"], ["gh"]):
        rows = model.tokenize_captions(batch)
        for text, row in zip(batch, rows):
            assert torch.equal(row, expected[text])
