"""The decoder's fast paths compute what the plain definitions compute."""

from __future__ import annotations

import pytest
import torch

from conftest import make_model, tiny_config
from modeling_clip4str.decoder_clip4str import CLIP4STRDecoder
from modeling_clip4str.permutations_clip4str import (
    caption_memory_mask,
    causal_mask,
    permutation_masks,
    sample_permutations,
    side_by_side_captions,
)


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
        caption_kv = decoder.memory_key_values(captions.flatten(0, 1))  # row b * K + k, as in training
        memory_kv = decoder.concat_key_values(image_kv, side_by_side_captions(caption_kv, groups))
        memory_mask = caption_memory_mask(groups, image_tokens=6, caption_tokens=3)
        together = decoder(tokens, memory_kv, query_mask=query_masks, content_mask=content_masks,
                           memory_mask=memory_mask)
        for k in range(groups):
            own = decoder.memory_key_values(torch.cat([image, captions[:, k]], dim=1))
            alone = decoder(tokens, own, query_mask=query_masks[k], content_mask=content_masks[k])
            assert (together[:, k] - alone).abs().max() < 1e-5


def test_batched_and_looped_training_losses_agree(caption_tokenizer):
    """The model's one-pass training loss equals the reference's order-by-order loop (the baseline of
    benchmarks/bench_train_step.py), with the same sampled orders."""
    from conftest import load_benchmark, make_processor, word_image

    looped_loss = load_benchmark("bench_train_step").looped_loss
    model = make_model(caption_tokenizer, seed=5, decoder_num_layers=2, perm_num=6)
    processor = make_processor(model.config)
    words = ["hello", "World42", "a", "Scene-Text"]
    batch = processor(images=[word_image(w) for w in words], text=words)
    losses = {}
    for name, loss_of in (("batched", lambda: model(**batch).loss), ("looped", lambda: looped_loss(model, **batch))):
        torch.manual_seed(7)  # the same sampled orders
        with torch.no_grad():
            losses[name] = loss_of().item()
    assert abs(losses["batched"] - losses["looped"]) < 1e-5


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
    from modeling_clip4str.caption_clip4str import TextTower, caption_state

    model = make_model(caption_tokenizer, seed=9)
    tower = TextTower(model.text_model, model.text_projection)

    def state_of(texts, previous=None):
        return caption_state(tower, texts, model.tokenize_captions(texts), previous)

    texts = ["hello", "", "riverside2024", "averyveryverylongwordindeedthatgetstruncated"]
    with torch.no_grad():
        expected = model.encode_text(model.tokenize_captions(texts))
        state = state_of(texts)
        assert (state.memory - expected).abs().max() < 1e-5
        # A later pass re-encodes only what changed, from the first changed token on, with the same result.
        changed = ["hello", "x", "riverside2025", "averyveryverylongwordindeedthatgetstruncated"]
        updated = state_of(changed, previous=state)
        assert (updated.memory - model.encode_text(model.tokenize_captions(changed))).abs().max() < 1e-5
        assert state_of(changed, previous=updated) is updated


def test_distinct_captions_are_encoded_once_with_the_same_memory(caption_tokenizer):
    from modeling_clip4str.caption_clip4str import TextTower, distinct_text_memory

    model = make_model(caption_tokenizer, seed=11)
    texts = ["word", "other", "word", "", "other", "word"]
    input_ids = model.tokenize_captions(texts)
    calls = []
    handle = model.text_model.register_forward_hook(lambda module, args, kwargs_or_out: calls.append(1))
    try:
        with torch.no_grad():
            memory = distinct_text_memory(TextTower(model.text_model, model.text_projection), input_ids, texts)
    finally:
        handle.remove()
    with torch.no_grad():
        expected = model.encode_text(input_ids)
    assert len(calls) == 1
    assert memory.shape == expected.shape and (memory - expected).abs().max() < 1e-5


def test_caption_ids_follow_spec(caption_tokenizer):
    model = make_model(caption_tokenizer, context_length=4)
    start, end = caption_tokenizer.bos_token_id, caption_tokenizer.eos_token_id
    hello = caption_tokenizer("hello")["input_ids"][1:-1]
    rows = model.tokenize_captions(["hello", "", "averyveryverylongwordindeed"])
    assert rows[0].tolist() == [start, *hello, end] + [0] * (2 - len(hello))  # padded with 0, not <|endoftext|>
    assert rows[1].tolist() == [start, end, 0, 0]
    assert rows[2, 0] == start and rows[2, -1] == end and (rows[2] != 0).all()  # cut, the last id becoming the end


def test_captions_adapt_to_the_caption_charset(caption_tokenizer):
    model = make_model(caption_tokenizer, charset="aBc-", caption_charset="abc")
    # Classes: [E] = 0, then "a" "B" "c" "-" = 1..4.
    ids = torch.tensor([[2, 4, 1, 0, 3], [3, 3, 3, 3, 3]])
    logits = torch.nn.functional.one_hot(ids, num_classes=5).float()
    assert model.caption_texts(logits) == ["ba", "ccccc"]


def test_caption_cache_overflow_keeps_the_batch_consistent(caption_tokenizer):
    from modeling_clip4str.caption_clip4str import CaptionIds

    ids = CaptionIds(caption_tokenizer, max_cached=2)
    expected = {text: CaptionIds(caption_tokenizer)([text], 16)[0] for text in ["ab", "cd", "ef", "gh"]}
    for batch in (["ab", "cd", "ef"], ["ab", "gh", "cd", "ef"], ["gh"]):
        rows = ids(batch, 16)
        for text, row in zip(batch, rows):
            assert torch.equal(row, expected[text])
        assert len(ids._cache) <= max(2, len(set(batch)))


def test_caption_ids_are_safe_to_share_between_threads(caption_tokenizer):
    """A model shared by a server's threads: one thread's cache overflow (emptying the cache) must not take ids from
    under another thread between filling the cache and reading it."""
    import threading

    from modeling_clip4str.caption_clip4str import CaptionIds

    words = [f"word{index}" for index in range(40)]
    expected = {word: CaptionIds(caption_tokenizer)([word], 16)[0] for word in words}
    shared = CaptionIds(caption_tokenizer, max_cached=3)  # almost every call empties the cache
    errors = []

    def read(offset: int) -> None:
        try:
            for step in range(60):
                batch = [words[(offset + step + index) % len(words)] for index in range(3)]
                for word, row in zip(batch, shared(batch, 16)):
                    assert torch.equal(row, expected[word]), word
        except Exception as error:  # reported to the main thread, which asserts
            errors.append(error)

    threads = [threading.Thread(target=read, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_model_copies_keep_a_working_caption_cache(caption_tokenizer):
    import copy
    import pickle

    model = make_model(caption_tokenizer, seed=12)
    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = model.generate(pixel_values)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert torch.equal(clone.generate(pixel_values), expected)


def test_only_the_first_two_orders_learn_the_end_token():
    from modeling_clip4str.loss_clip4str import order_targets

    target = torch.tensor([[3, 4, 0, 9], [5, 0, 9, 9]])  # [E] = 0, [P] = 9
    targets = order_targets(target, num_orders=4, eos_token_id=0, pad_token_id=9)
    assert targets.shape == (2, 4, 4)
    for k in (0, 1):
        assert torch.equal(targets[:, k], target)
    for k in (2, 3):
        assert torch.equal(targets[:, k], target.masked_fill(target == 0, 9))


def test_loss_weighs_each_order_by_its_number_of_targets():
    """SPEC: sum_p n_p * (CE_visual_p + w * CE_cross_p) / sum_p n_p, CE_p the mean over the targets of order p."""
    from types import SimpleNamespace

    from modeling_clip4str.loss_clip4str import order_targets, permutation_loss

    config = SimpleNamespace(pad_token_id=9, eos_token_id=0, cross_loss_weight=0.5)
    torch.manual_seed(3)
    targets = order_targets(torch.tensor([[3, 4, 0, 9], [5, 0, 9, 9]]), 4, 0, 9)
    visual, cross = torch.randn(2, 4, 4, 8), torch.randn(2, 4, 4, 8)
    weighted, counted = 0.0, 0
    for k in range(4):
        learnt = targets[:, k] != 9
        n_k = int(learnt.sum())
        ce_visual = torch.nn.functional.cross_entropy(visual[:, k][learnt], targets[:, k][learnt])
        ce_cross = torch.nn.functional.cross_entropy(cross[:, k][learnt], targets[:, k][learnt])
        weighted += n_k * (ce_visual + 0.5 * ce_cross)
        counted += n_k
    assert abs(permutation_loss(visual, cross, targets, config).item() - weighted / counted) < 1e-5
