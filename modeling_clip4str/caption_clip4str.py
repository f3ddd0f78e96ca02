"""The caption path of the cross-modal branch: the visual prediction as text, its CLIP BPE ids, its text memory.

What SPEC ("Text path") asks for: the greedy text of the visual logits up to the first `[E]`, adapted to the caption
charset (the label rule's [`adapt_to_charset`]); `<|startoftext|>` + BPE ids + `<|endoftext|>`, cut to
`context_length` (the last kept id becoming `<|endoftext|>`) and padded with id 0; the CLIP text tower over every
position (no padding mask), its final LayerNorm and the text projection.

Nothing here is an `nn.Module`: the text tower and its projection belong to the model (their state-dict keys are
`text_model.*` and `text_projection.*`) and are passed in as a [`TextTower`].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .reading_clip4str import MAX_CACHED_CAPTIONS, CachedCaptionIds

class TextTower(NamedTuple):
    """The CLIP text transformer (`CLIPTextModel`) and the projection to the joint width D."""

    model: nn.Module
    projection: nn.Linear


@dataclass
class CaptionState:
    """The captions of one decoding pass and what the text tower made of them, so that a later pass (refinement)
    encodes only the captions that changed, from their first changed token on.

    texts: the captions; input_ids `[N, S]`; memory: text memory `[N, S, D]`; key_values: per text layer, the
    self-attention keys and values `[N, heads, S, head_dim]`.
    """

    texts: list[str]
    input_ids: torch.LongTensor
    memory: torch.FloatTensor
    key_values: list[tuple[torch.Tensor, torch.Tensor]]


# The ids CLIP text configs written before these fields were used carry (`eos_token_id == 2`): such a tower names no
# start or end id, and transformers' CLIP text model treats the value the same way.
_LEGACY_CLIP_EOS_TOKEN_ID = 2


def check_caption_tokenizer(tokenizer, text_config) -> None:
    """Refuse a caption tokenizer that is not the one the text tower `text_config` was trained with: its vocabulary
    must have `text_config.vocab_size` tokens, and its start and end ids must lie in it and equal the tower's.

    transformers returns a near-empty tokenizer (2 tokens) instead of raising when a CLIP tokenizer's files are
    missing; captions made with it are nonsense to the text tower and the model misreads words without a sign."""
    name = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
    fix = (
        "Give the CLIP BPE tokenizer the text tower was trained with (a folder with vocab.json and merges.txt, or "
        "tokenizer.json), e.g. `model.set_caption_tokenizer(CLIPTokenizer.from_pretrained(DIR))`."
    )
    vocab_size = text_config.vocab_size
    size = len(tokenizer)
    if size != vocab_size:
        raise ValueError(
            f"The caption tokenizer from {name!r} has {size} tokens, but the text tower embeds {vocab_size}: it is "
            f"not the tower's tokenizer (were its files missing?). {fix}"
        )
    legacy = getattr(text_config, "eos_token_id", None) == _LEGACY_CLIP_EOS_TOKEN_ID
    for id_name, role in (("bos_token_id", "start"), ("eos_token_id", "end")):
        value = getattr(tokenizer, id_name, None)
        if value is None or not 0 <= value < vocab_size:
            raise ValueError(
                f"The caption tokenizer from {name!r} has {role} id `{id_name}`={value!r}, outside the text tower's "
                f"vocabulary of {vocab_size}. {fix}"
            )
        expected = getattr(text_config, id_name, None)
        if not legacy and expected is not None and value != expected:
            raise ValueError(
                f"The caption tokenizer from {name!r} has {role} id `{id_name}`={value}, but the text tower expects "
                f"{expected} (`text_config.{id_name}`). {fix}"
            )


class CaptionIds(CachedCaptionIds):
    r"""
    CLIP BPE ids of captions (see [`CachedCaptionIds`]), as torch tensors, with a transformers tokenizer.

    Args:
        tokenizer: a CLIP BPE tokenizer (e.g. `CLIPTokenizer`); `None` until the model is given one.
        max_cached (`int`): the cache is emptied when it would grow past this many captions.
    """

    def __init__(self, tokenizer=None, max_cached: int = MAX_CACHED_CAPTIONS):
        super().__init__(max_cached)
        self.tokenizer = tokenizer

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=True)["input_ids"]

    def _end_id(self) -> int:
        return self.tokenizer.eos_token_id

    def __call__(self, texts: list[str], context_length: int) -> torch.LongTensor:
        """Ids of `texts` as SPEC builds them: `[N, context_length]`, padded with 0."""
        if self.tokenizer is None:
            raise ValueError(
                "This CLIP4STR model has no caption tokenizer, which its cross-modal branch needs. Load the model "
                "from a directory that has a `caption_tokenizer/` folder, or call "
                "`model.set_caption_tokenizer(CLIPTokenizer.from_pretrained(...))`."
            )
        return torch.from_numpy(self.rows(texts, context_length))


def text_memory(tower: TextTower, input_ids: torch.LongTensor) -> torch.FloatTensor:
    """Caption ids `[N, S]` -> text memory `[N, S, D]` (every position: the zero-padded ones are part of it)."""
    fully_frozen = not any(parameter.requires_grad for parameter in tower.model.parameters())
    with torch.set_grad_enabled(torch.is_grad_enabled() and not fully_frozen):
        hidden = tower.model(input_ids=input_ids).last_hidden_state
    return tower.projection(hidden)


def distinct_text_memory(tower: TextTower, input_ids: torch.LongTensor, texts: list[str]) -> torch.FloatTensor:
    """Text memory `[N, S, D]` of captions whose ids `[N, S]` are those of `texts`, each distinct caption encoded
    once (in training the orders of a word often agree, so most captions repeat)."""
    first_row = {}
    for row, text in enumerate(texts):
        first_row.setdefault(text, row)
    distinct_rows = torch.tensor(list(first_row.values()), device=input_ids.device)
    where = {text: position for position, text in enumerate(first_row)}
    memory = text_memory(tower, input_ids.index_select(0, distinct_rows))
    return memory.index_select(0, torch.tensor([where[text] for text in texts], device=memory.device))


def text_tower_from(tower: TextTower, input_ids: torch.LongTensor, start: int = 0, past=None):
    """The text tower (inference only) over positions `start:` of `input_ids` `[N, S]`, given the keys and values
    `past` of positions `< start` (the tower is causal, so those positions do not change).

    Returns the text memory of positions `start:` `[N, S - start, D]` and every layer's keys and values of all
    positions.
    """
    text = tower.model
    length = input_ids.shape[1]
    positions = torch.arange(start, length, device=input_ids.device)
    hidden = text.embeddings.token_embedding(input_ids[:, start:]) + text.embeddings.position_embedding(positions)
    mask = None
    if start > 0:  # query p (absolute position start + i) sees keys 0..p
        mask = torch.ones(length - start, length, dtype=torch.bool, device=input_ids.device).tril(start)
    key_values = []
    for index, layer in enumerate(text.encoder.layers):
        attention = layer.self_attn
        normed = layer.layer_norm1(hidden)
        shape = (hidden.shape[0], hidden.shape[1], attention.num_heads, attention.head_dim)
        query = attention.q_proj(normed).view(shape).transpose(1, 2)
        key = attention.k_proj(normed).view(shape).transpose(1, 2)
        value = attention.v_proj(normed).view(shape).transpose(1, 2)
        if past is not None:
            key = torch.cat([past[index][0][:, :, :start], key], dim=2)
            value = torch.cat([past[index][1][:, :, :start], value], dim=2)
        key_values.append((key, value))
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, is_causal=mask is None, scale=attention.scale
        )
        hidden = hidden + attention.out_proj(attended.transpose(1, 2).reshape(hidden.shape))
        hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
    return tower.projection(text.final_layer_norm(hidden)), key_values


def caption_state(
    tower: TextTower, texts: list[str], input_ids: torch.LongTensor, previous: CaptionState | None = None
) -> CaptionState:
    """Text memory of captions `texts` with ids `input_ids` `[N, S]`. Given the state of an earlier pass over the same
    N rows, only the rows whose ids changed are encoded, and only from their first changed token on."""
    if previous is None:
        memory, key_values = text_tower_from(tower, input_ids)
        return CaptionState(texts, input_ids, memory, key_values)
    changed = (input_ids != previous.input_ids).any(-1).nonzero().flatten()
    if len(changed) == 0:
        return previous
    rows = input_ids[changed]
    start = int((rows != previous.input_ids[changed]).int().argmax(-1).min())
    past = [(key[changed], value[changed]) for key, value in previous.key_values]
    tail, new_key_values = text_tower_from(tower, rows, start, past)
    memory = previous.memory.clone()
    memory[changed, start:] = tail
    key_values = []
    for (key, value), (new_key, new_value) in zip(previous.key_values, new_key_values):
        key, value = key.clone(), value.clone()
        key[changed], value[changed] = new_key, new_value
        key_values.append((key, value))
    return CaptionState(texts, input_ids, memory, key_values)


def freeze_text_tower(tower: TextTower, num_layers: int) -> None:
    """Freeze the token and position embeddings and the first `num_layers` layers of the text tower (all of it, with
    its final LayerNorm and the projection, when `num_layers` equals its depth); -1 freezes nothing. Every other
    parameter of the tower is unfrozen."""
    depth = len(tower.model.encoder.layers)
    if num_layers > depth:
        raise ValueError(f"Cannot freeze {num_layers} layers of a {depth}-layer text tower.")
    for name, parameter in tower.model.named_parameters():
        if num_layers < 0:
            frozen = False
        elif name.startswith("embeddings."):
            frozen = True
        elif name.startswith("encoder.layers."):
            frozen = int(name.split(".")[2]) < num_layers
        else:
            frozen = num_layers >= depth
        parameter.requires_grad_(not frozen)
    tower.projection.weight.requires_grad_(not num_layers >= depth)


__all__ = [
    "CaptionIds",
    "check_caption_tokenizer",
    "CaptionState",
    "TextTower",
    "caption_state",
    "distinct_text_memory",
    "freeze_text_tower",
    "text_memory",
    "text_tower_from",
]
