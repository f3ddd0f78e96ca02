"""Permuted sequence modelling: the character orders a training batch is taught with, their attention masks, and the
memory layout that lets each order of the cross-modal branch read its own caption in one pass."""

from __future__ import annotations

import itertools
import math

import torch

# With four characters and mirrored orders, these indices into the 24 orders of `itertools.permutations(range(4))`
# give 12 orders none of which is the mirror image of another (the other 12 are their mirrors).
_FOUR_CHAR_MIRROR_FREE = [0, 3, 4, 6, 9, 10, 12, 16, 17, 18, 19, 21]


def sample_permutations(
    num_chars: int,
    perm_num: int,
    perm_forward: bool = True,
    perm_mirrored: bool = True,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.LongTensor:
    """The orders over `[B]`, the `num_chars` character positions and `[E]` that a batch is trained with.

    Position 0 (`[B]`) always comes first and position `num_chars + 1` (`[E]`) last, except in the second order,
    which reads right to left with `[E]` right after `[B]` (so `[E]` is also learnt from an empty context).

    Returns:
        `torch.LongTensor` of shape `[K, num_chars + 2]`, K <= perm_num.
    """
    if num_chars < 1:
        raise ValueError(f"num_chars must be positive, got {num_chars}.")
    if num_chars == 1:
        return torch.arange(3, device=device).unsqueeze(0)

    num_sampled_pairs = perm_num // 2 if perm_mirrored else perm_num
    available = math.factorial(num_chars) // (2 if perm_mirrored else 1)
    wanted = min(num_sampled_pairs, available)

    orders = [torch.arange(num_chars)] if perm_forward else []
    if num_chars < 5:
        # Few orders exist: draw from all of them without repeats.
        pool = torch.tensor(list(itertools.permutations(range(num_chars))))
        if num_chars == 4 and perm_mirrored:
            pool = pool[_FOUR_CHAR_MIRROR_FREE]
        else:
            pool = pool[:available]
        if perm_forward:
            pool = pool[1:]  # the identity order is already in
        take = max(wanted - len(orders), 0)
        if take and len(pool):
            picks = torch.randperm(len(pool), generator=generator)[:take]
            orders.extend(pool[picks])
    else:
        orders.extend(torch.randperm(num_chars, generator=generator) for _ in range(max(wanted - len(orders), 0)))
    perms = torch.stack(orders)
    if perm_mirrored:
        perms = torch.stack([perms, perms.flip(-1)], dim=1).reshape(-1, num_chars)

    bos = perms.new_zeros(len(perms), 1)
    eos = perms.new_full((len(perms), 1), num_chars + 1)
    perms = torch.cat([bos, perms + 1, eos], dim=1)
    if len(perms) > 1:
        perms[1, 1:] = num_chars + 1 - torch.arange(num_chars + 1)
    return perms.to(device)


def num_orders(num_chars: int, perm_num: int, perm_forward: bool = True, perm_mirrored: bool = True) -> int:
    """K, the number of orders [`sample_permutations`] returns for words of up to `num_chars` characters, without
    drawing any: at most `perm_num`, fewer when a short word has fewer distinct orders."""
    if num_chars < 1:
        raise ValueError(f"num_chars must be positive, got {num_chars}.")
    if num_chars == 1:
        return 1
    pairs = perm_num // 2 if perm_mirrored else perm_num
    wanted = min(pairs, math.factorial(num_chars) // (2 if perm_mirrored else 1))
    return max(wanted, int(perm_forward)) * (2 if perm_mirrored else 1)


def permutation_masks(perms: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention masks of orders: a position may not see the positions that come after it in its order.

    Args:
        perms: `[K, S]` orders over S = L + 1 positions (`[B]`, characters, `[E]`).

    Returns:
        `(content_mask, query_mask)`, additive float masks of shape `[K, L, L]` (0 = visible, -inf = hidden).
        The content stream covers positions 0..L-1; query i (predicting position i + 1) also may not see itself.
    """
    num_positions = perms.shape[-1]
    rank = torch.empty_like(perms)
    rank.scatter_(-1, perms, torch.arange(num_positions, device=perms.device).expand_as(perms))
    hidden = rank.unsqueeze(-2) > rank.unsqueeze(-1)  # [K, query position, key position]
    content_hidden = hidden[:, :-1, :-1]
    eye = torch.eye(num_positions, dtype=torch.bool, device=perms.device)
    query_hidden = (hidden | eye)[:, 1:, :-1]
    return _additive(content_hidden), _additive(query_hidden)


def causal_mask(size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """`[size, size]` additive mask: position i sees 0..i."""
    hidden = torch.ones(size, size, dtype=torch.bool, device=device).triu(1)
    return _additive(hidden, dtype)


def cloze_mask(size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """`[size, size]` additive mask of refinement: query i sees every context position except i + 1 (its target)."""
    hidden = torch.zeros(size, size, dtype=torch.bool, device=device)
    index = torch.arange(size - 1, device=device)
    hidden[index, index + 1] = True
    return _additive(hidden, dtype)


def side_by_side_captions(caption_key_values, num_groups: int):
    """Lay the K captions of each sample side by side, as one memory, for the cross-modal pass that runs all K orders
    at once (order k reads caption k).

    Args:
        caption_key_values: per decoder layer, the keys and values of the captions, `[B * K, heads, S, head_dim]` each
            (row `b * K + k`: sample b, order k).
        num_groups: K.

    Returns:
        per layer, keys and values `[B, heads, K * S, head_dim]` (caption k at positions `k * S : (k + 1) * S`).
    """

    def merge(states):
        rows, heads, length, head_dim = states.shape
        grouped = states.view(rows // num_groups, num_groups, heads, length, head_dim)
        return grouped.transpose(1, 2).flatten(2, 3)

    return [(merge(key), merge(value)) for key, value in caption_key_values]


def caption_memory_mask(num_groups: int, image_tokens: int, caption_tokens: int, device=None) -> torch.Tensor | None:
    """`[K, image_tokens + K * caption_tokens]` additive mask over the memory `[image, caption 0, ..., caption K-1]`
    of [`side_by_side_captions`]: order k sees the image and its own caption k. `None` for a single order (nothing to
    hide)."""
    if num_groups == 1:
        return None
    other_captions = ~torch.eye(num_groups, dtype=torch.bool, device=device)
    hidden = torch.cat(
        [
            torch.zeros(num_groups, image_tokens, dtype=torch.bool, device=device),
            other_captions.repeat_interleave(caption_tokens, dim=1),
        ],
        dim=1,
    )
    return _additive(hidden)


def _additive(hidden: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return torch.zeros(hidden.shape, dtype=dtype, device=hidden.device).masked_fill_(hidden, float("-inf"))


def block_diagonal(masks: torch.Tensor) -> torch.Tensor:
    """`[K, A, B]` additive masks -> `[K*A, K*B]`, with everything outside the diagonal blocks hidden."""
    groups, rows, cols = masks.shape
    out = masks.new_full((groups, rows, groups, cols), float("-inf"))
    index = torch.arange(groups, device=masks.device)
    out[index, :, index, :] = masks
    return out.view(groups * rows, groups * cols)


def merge_masks(mask: torch.Tensor | None, pad: torch.Tensor | None) -> torch.Tensor | None:
    """The sum of two additive masks, either of which may be absent."""
    if mask is None:
        return pad
    if pad is None:
        return mask
    return mask + pad


__all__ = [
    "block_diagonal",
    "merge_masks",
    "num_orders",
    "sample_permutations",
    "permutation_masks",
    "causal_mask",
    "cloze_mask",
    "side_by_side_captions",
    "caption_memory_mask",
]
