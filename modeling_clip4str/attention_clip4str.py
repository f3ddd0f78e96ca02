"""The decoders' multi-head attention, whose keys and values are projected once and reused."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CLIP4STRAttention(nn.Module):
    """Multi-head attention whose keys and values can be projected once and reused (decoding steps, permutations)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split_heads(self, states: torch.Tensor) -> torch.Tensor:
        batch, length, _ = states.shape
        return states.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def project_key_value(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, S, D]` -> keys and values `[B, heads, S, head_dim]`."""
        return self._split_heads(self.k_proj(states)), self._split_heads(self.v_proj(states))

    def project_query(self, states: torch.Tensor) -> torch.Tensor:
        """`[B, L, D]` -> queries `[B, heads, L, head_dim]`."""
        return self._split_heads(self.q_proj(states))

    def forward(
        self,
        hidden_states: torch.Tensor | None,
        key_value: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        projected_query: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            hidden_states: queries `[B, Lq, D]` (may be None when `projected_query` is given).
            key_value: from [`project_key_value`], `[B, heads, S, head_dim]` each.
            attention_mask: additive float mask broadcastable to `[B, heads, Lq, S]`.
            projected_query: the queries already through [`project_query`], `[B, heads, Lq, head_dim]`.
            output_attentions: also return the attention weights (computed explicitly, since the fused kernel
                does not expose them).

        Returns:
            `[B, Lq, D]`, and with `output_attentions` the weights `[B, heads, Lq, S]`.
        """
        query = projected_query if projected_query is not None else self.project_query(hidden_states)
        batch, _, length, _ = query.shape
        dim = self.num_heads * self.head_dim
        key, value = key_value
        if attention_mask is not None:
            attention_mask = attention_mask.to(query.dtype)
        dropout = self.dropout if self.training else 0.0
        # An ONNX export takes the explicit form too: SDPA's export computes its scale at run time and scales and
        # transposes the keys at every call, where a constant scale lets ONNX Runtime fold both into one matrix
        # product (a decoding step re-reads the whole memory otherwise).
        if output_attentions or torch.onnx.is_in_onnx_export():
            scores = query @ key.transpose(-1, -2) / math.sqrt(self.head_dim)
            if attention_mask is not None:
                scores = scores + attention_mask
            weights = scores.softmax(-1)
            attended = F.dropout(weights, p=dropout, training=self.training) @ value
        else:
            attended = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout)
        output = self.out_proj(attended.transpose(1, 2).reshape(batch, length, dim))
        return (output, weights) if output_attentions else output


__all__ = ["CLIP4STRAttention"]
