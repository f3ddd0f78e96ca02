"""What CLIP4STR's forward pass and `generate` return."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class CLIP4STROutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, returned with `labels`):
            Permuted-sequence loss of both branches: the sum over orders p of n_p * (CE_visual + w * CE_cross),
            divided by the sum of n_p (n_p: targets of order p).
        logits (`torch.FloatTensor` of shape `[B, positions, C + 1]`):
            Cross-modal logits. With `labels`: those of the left-to-right order (teacher forced). Without: the final
            logits of predict-and-refine, as [`~CLIP4STRForSceneTextRecognition.generate`] computes them.
        visual_logits (`torch.FloatTensor` of shape `[B, positions, C + 1]`):
            The visual branch's logits, likewise.
        image_memory (`torch.FloatTensor` of shape `[B, 1 + patches, D]`):
            Every ViT token after the final LayerNorm and the visual projection.
        hidden_states (`tuple(torch.FloatTensor)`, returned with `output_hidden_states=True`):
            The image tower's hidden states, `[B, 1 + patches, D_vision]`: its embeddings, then each layer's output.
        attentions (`tuple(torch.FloatTensor)`, returned with `output_attentions=True`):
            The image tower's self-attention weights per layer, `[B, heads, 1 + patches, 1 + patches]`.
        text_hidden_states (`tuple(torch.FloatTensor)`, returned with `output_hidden_states=True`):
            The text tower's hidden states, `[B, context_length, D_text]`, over the captions the final cross-modal
            logits read (with `labels`: those of the left-to-right order).
        text_attentions (`tuple(torch.FloatTensor)`, returned with `output_attentions=True`):
            The text tower's self-attention weights per layer, `[B, heads, context_length, context_length]`.
        visual_decoder_attentions (`tuple(torch.FloatTensor)`, returned with `output_attentions=True`):
            Per visual-decoder layer, the cross-attention of each character position over the image memory,
            `[B, heads, positions, 1 + patches]`, in the pass that gave `visual_logits`. See
            [`~CLIP4STRForSceneTextRecognition.attention_maps`].
        cross_decoder_attentions (`tuple(torch.FloatTensor)`, returned with `output_attentions=True`):
            Per cross-modal decoder layer, the cross-attention of each character position over the image memory
            followed by the caption memory, `[B, heads, positions, 1 + patches + context_length]`, in the pass that
            gave `logits`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    visual_logits: torch.FloatTensor | None = None
    image_memory: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    text_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    text_attentions: tuple[torch.FloatTensor, ...] | None = None
    visual_decoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_decoder_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class CLIP4STRGenerateOutput(ModelOutput):
    """
    Args:
        sequences (`torch.LongTensor` of shape `[B, positions]`):
            Predicted character ids; every position after the first `[E]` holds `[P]`.
        logits (`torch.FloatTensor` of shape `[B, positions, C + 1]`): the final cross-modal logits.
        visual_logits (`torch.FloatTensor` of shape `[B, positions, C + 1]`): the visual branch's last logits.
        char_confidences (`torch.FloatTensor` of shape `[B, positions]`):
            Highest softmax probability at each position (the character's, or the `[E]`'s).
        confidences (`torch.FloatTensor` of shape `[B]`):
            Word confidence: the product of `char_confidences` up to and including the first `[E]`.
        scores (`tuple(torch.FloatTensor)`, returned with `output_scores=True` or `output_logits=True`):
            `logits` per position, a tuple of `[B, C + 1]` tensors, as transformers' `generate` returns them.
    """

    sequences: torch.LongTensor | None = None
    logits: torch.FloatTensor | None = None
    visual_logits: torch.FloatTensor | None = None
    char_confidences: torch.FloatTensor | None = None
    confidences: torch.FloatTensor | None = None
    scores: tuple[torch.FloatTensor, ...] | None = None


__all__ = ["CLIP4STRGenerateOutput", "CLIP4STROutput"]
