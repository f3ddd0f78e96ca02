"""The training objective of permuted sequence modelling: targets from labels, the orders a batch is taught with and
their targets, and the loss that sums over orders (SPEC, "Training loss")."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .permutations_clip4str import num_orders, permutation_masks, sample_permutations


@dataclass
class PermutedBatch:
    """What every order of a training batch is taught with (K orders, context length L).

    context `[B, L]` (`[B]` then the label's characters, padded); padding_mask `[B, L]` (True for context positions
    no query may see: `[P]` and `[E]`); content_masks and query_masks: additive `[K, L, L]`; targets `[B, K, L]`:
    what each order predicts at each position (`[P]` where nothing is learnt).
    """

    context: torch.LongTensor
    padding_mask: torch.BoolTensor
    content_masks: torch.Tensor
    query_masks: torch.Tensor
    targets: torch.LongTensor

    @property
    def num_orders(self) -> int:
        return self.query_masks.shape[0]


def prepare_targets(labels: torch.LongTensor, config) -> torch.LongTensor:
    """`labels` `[B, L + 1]` (ids, `[E]`, padding with `[P]` or -100) -> `[B] ids [E] [P]...`, trimmed to the batch's
    longest word: `[B, W + 2]`."""
    labels = labels.masked_fill(labels == -100, config.pad_token_id)
    ends = labels == config.eos_token_id
    if not bool((ends.sum(-1) == 1).all()):
        raise ValueError("Each row of `labels` must hold exactly one [E] (id 0) after its characters.")
    if bool(((labels < 0) | (labels > config.pad_token_id) | (labels == config.bos_token_id)).any()):
        raise ValueError(f"`labels` must hold character ids 1..{len(config.charset)}, [E] (0) and [P] padding.")
    width = int(ends.int().argmax(-1).max()) + 1
    if width - 1 > config.max_label_length:
        raise ValueError(f"A label has {width - 1} characters; this model reads at most {config.max_label_length}.")
    labels = labels[:, :width]
    bos = labels.new_full((labels.shape[0], 1), config.bos_token_id)
    return torch.cat([bos, labels], dim=1)


def order_targets(target: torch.LongTensor, num_orders: int, eos_token_id: int, pad_token_id: int) -> torch.LongTensor:
    """Targets `[B, L]` of the left-to-right order -> `[B, K, L]`, one row per order. Only the first two orders
    (left to right, right to left) learn `[E]`; in the others it becomes `[P]`, which the loss ignores."""
    targets = target.unsqueeze(1).repeat(1, num_orders, 1)
    targets[:, 2:] = targets[:, 2:].masked_fill(targets[:, 2:] == eos_token_id, pad_token_id)
    return targets


def permuted_batch(labels: torch.LongTensor, config, seeded: bool = False) -> PermutedBatch:
    """Sample the batch's orders (`config.perm_num`, `perm_forward`, `perm_mirrored`) and build what each is taught
    with, from `labels` `[B, L + 1]` as [`CLIP4STRProcessor`] makes them. With `seeded` (the model in `eval()`
    mode), the orders come from a fixed seed, so the loss of a batch is the same at every call."""
    generator = torch.Generator().manual_seed(0) if seeded else None
    targets = prepare_targets(labels, config)
    pad, eos = config.pad_token_id, config.eos_token_id
    context, target = targets[:, :-1], targets[:, 1:]
    perms = sample_permutations(
        context.shape[1] - 1, config.perm_num, config.perm_forward, config.perm_mirrored, device=targets.device,
        generator=generator,
    )
    content_masks, query_masks = permutation_masks(perms)
    return PermutedBatch(
        context=context,
        padding_mask=(context == pad) | (context == eos),  # [E] is never anyone's context
        content_masks=content_masks,
        query_masks=query_masks,
        targets=order_targets(target, len(perms), eos, pad),
    )


def num_loss_targets(labels: torch.LongTensor, config) -> int:
    """How many targets the loss of `labels` `[B, L + 1]` averages over (sum_p n_p below), computed from the labels
    alone: K orders each learn every character, and the first two also `[E]`, K being the number of orders
    [`sample_permutations`] gives for the batch's longest word.

    Summed over the batches of an optimizer step (all processes, all accumulation steps), it is the normaliser that
    makes the loss independent of how the global batch is split (`forward(..., num_items_in_batch=...)`)."""
    is_char = (labels > config.eos_token_id) & (labels < config.bos_token_id)
    longest = int(is_char.sum(-1).max()) if labels.numel() else 0
    if longest == 0:
        return 0
    orders = num_orders(longest, config.perm_num, config.perm_forward, config.perm_mirrored)
    return orders * int(is_char.sum()) + min(orders, 2) * labels.shape[0]


def permutation_loss(
    visual_logits: torch.Tensor,
    cross_logits: torch.Tensor,
    targets: torch.LongTensor,
    config,
    num_items_in_batch: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """sum_p n_p * (CE_visual + w * CE_cross) / sum_p n_p, with n_p the targets of order p that are not `[P]` and w
    `config.cross_loss_weight`: the summed cross-entropies of both branches over every learnt target, divided by
    the number of those targets, or by `num_items_in_batch` when given (the targets of the whole global batch,
    [`num_loss_targets`] summed over processes and accumulation steps).

    Args:
        visual_logits, cross_logits: `[B, K, L, C + 1]`.
        targets: `[B, K, L]` ([`PermutedBatch.targets`]).
    """
    pad = config.pad_token_id
    flat_targets = targets.flatten()
    total = F.cross_entropy(visual_logits.flatten(0, 2), flat_targets, ignore_index=pad, reduction="sum")
    total = total + config.cross_loss_weight * F.cross_entropy(
        cross_logits.flatten(0, 2), flat_targets, ignore_index=pad, reduction="sum"
    )
    if num_items_in_batch is None:
        num_items_in_batch = (targets != pad).sum()
    return total / num_items_in_batch


__all__ = ["PermutedBatch", "num_loss_targets", "order_targets", "permutation_loss", "permuted_batch", "prepare_targets"]
