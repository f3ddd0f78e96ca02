"""The PARSeq-style two-stream character decoder that CLIP4STR uses twice (visual and cross-modal branch)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention_clip4str import CLIP4STRAttention
from .configuration_clip4str import CLIP4STRConfig
from .permutations_clip4str import block_diagonal, merge_masks

# Per layer, the decoder's cross-attention keys and values of a memory, each `[B, heads, M, head_dim]`.
MemoryKeyValues = list[tuple[torch.Tensor, torch.Tensor]]


class CLIP4STRDecoderLayer(nn.Module):
    """Pre-LayerNorm two-stream (XLNet-style) decoder layer.

    The query stream (position queries) and the content stream (context characters) share one self-attention whose
    keys and values come from the content stream; both then attend to the memory and pass an MLP.
    """

    def __init__(self, config: CLIP4STRConfig):
        super().__init__()
        dim, eps, dropout = config.projection_dim, config.decoder_layer_norm_eps, config.decoder_dropout
        self.self_attn = CLIP4STRAttention(dim, config.decoder_num_heads, dropout)
        self.cross_attn = CLIP4STRAttention(dim, config.decoder_num_heads, dropout)
        self.linear1 = nn.Linear(dim, dim * config.decoder_mlp_ratio)
        self.linear2 = nn.Linear(dim * config.decoder_mlp_ratio, dim)
        self.norm_q = nn.LayerNorm(dim, eps=eps)
        self.norm_c = nn.LayerNorm(dim, eps=eps)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward_stream(
        self,
        stream: torch.Tensor,
        stream_normed: torch.Tensor,
        self_key_value: tuple[torch.Tensor, torch.Tensor],
        memory_key_value: tuple[torch.Tensor, torch.Tensor],
        self_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        self_query: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One stream through self-attention (over the content), cross-attention (over the memory) and the MLP.

        `self_query` may hold the self-attention queries of `stream_normed`, already projected. With
        `output_attentions`, also returns the cross-attention weights `[B, heads, L, M]`."""
        attended = self.self_attn(stream_normed, self_key_value, self_mask, projected_query=self_query)
        stream = stream + self.dropout1(attended)
        cross = self.cross_attn(self.norm1(stream), memory_key_value, memory_mask, output_attentions=output_attentions)
        cross, weights = cross if output_attentions else (cross, None)
        stream = stream + self.dropout2(cross)
        hidden = self.linear2(self.dropout(F.gelu(self.linear1(self.norm2(stream)))))
        stream = stream + self.dropout3(hidden)
        return (stream, weights) if output_attentions else stream

    def forward(
        self,
        query: torch.Tensor,
        content: torch.Tensor,
        memory_key_value: tuple[torch.Tensor, torch.Tensor],
        query_mask: torch.Tensor | None = None,
        content_mask: torch.Tensor | None = None,
        query_memory_mask: torch.Tensor | None = None,
        content_memory_mask: torch.Tensor | None = None,
        update_content: bool = True,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Returns the new query and content streams, and with `output_attentions` the query stream's
        cross-attention weights `[B, heads, Lq, M]`."""
        content_normed = self.norm_c(content)
        self_key_value = self.self_attn.project_key_value(content_normed)
        new_query = self.forward_stream(
            query, self.norm_q(query), self_key_value, memory_key_value, query_mask, query_memory_mask,
            output_attentions=output_attentions,
        )
        new_query, weights = new_query if output_attentions else (new_query, None)
        if update_content:
            content = self.forward_stream(
                content, content_normed, self_key_value, memory_key_value, content_mask, content_memory_mask
            )
        return (new_query, content, weights) if output_attentions else (new_query, content)


class CLIP4STRDecoder(nn.Module):
    """Reads characters from a memory (image tokens, or image and caption tokens).

    The content stream of a context `tokens` (`tokens[:, 0]` is `[B]`) is: position 0 the embedding of `[B]`;
    position j >= 1 the position query j - 1 plus the embedding of `tokens[:, j]`. Token embeddings are scaled by
    sqrt(D). The output head predicts `[E]` and the charset (C + 1 classes).

    Every computation that reads the decoder's weights ([`decode_context`], [`memory_key_values`],
    [`decode_autoregressive`]) runs through `forward`: hooks on `forward` then see all of them, as accelerate's
    offloading needs (a decoder placed on "cpu" or "disk" by a `device_map` has its weights loaded for each call).
    """

    _OPERATIONS = ("decode_context", "memory_key_values", "decode_autoregressive")

    def __init__(self, config: CLIP4STRConfig):
        super().__init__()
        dim = config.projection_dim
        self.dim = dim
        self.layers = nn.ModuleList([CLIP4STRDecoderLayer(config) for _ in range(config.decoder_num_layers)])
        self.token_embedding = nn.Embedding(len(config.charset) + 3, dim)
        self.pos_queries = nn.Parameter(torch.zeros(1, config.num_decoding_steps, dim))
        self.dropout = nn.Dropout(config.decoder_dropout)
        self.norm = nn.LayerNorm(dim, eps=config.decoder_layer_norm_eps)
        self.head = nn.Linear(dim, config.num_classes)

    def forward(self, *args, operation: str = "decode_context", **kwargs):
        """Run `operation` (one of `decode_context`, the default, `memory_key_values` or `decode_autoregressive`)
        with the given arguments; see those methods."""
        if operation not in self._OPERATIONS:
            raise ValueError(f"Unknown decoder operation {operation!r}; choose one of {', '.join(self._OPERATIONS)}.")
        return getattr(self, f"_{operation}")(*args, **kwargs)

    def decode_context(self, *args, **kwargs):
        """Logits of a whole context in one pass (training, refinement, non-autoregressive reading); the arguments
        are those of [`_decode_context`]."""
        return self(*args, operation="decode_context", **kwargs)

    def memory_key_values(self, memory: torch.Tensor) -> MemoryKeyValues:
        """Cross-attention keys and values of `memory` `[B, M, D]` for every layer, computed once per memory."""
        return self(memory, operation="memory_key_values")

    def decode_autoregressive(self, *args, **kwargs):
        """Greedy left-to-right reading; the arguments are those of [`_decode_autoregressive`]."""
        return self(*args, operation="decode_autoregressive", **kwargs)

    # --- building blocks (called from the operations only) ----------------------------------------------------------
    def embed_tokens(self, tokens: torch.LongTensor) -> torch.Tensor:
        return math.sqrt(self.dim) * self.token_embedding(tokens)

    def embed_content(self, tokens: torch.LongTensor) -> torch.Tensor:
        """Content stream of a context `[B, L]` starting with `[B]`: `[B, L, D]`."""
        embedded = self.embed_tokens(tokens)
        length = tokens.shape[1]
        if length == 1:
            return embedded
        return torch.cat([embedded[:, :1], embedded[:, 1:] + self.pos_queries[:, : length - 1]], dim=1)

    @staticmethod
    def concat_key_values(first: MemoryKeyValues, second: MemoryKeyValues) -> MemoryKeyValues:
        """Keys and values of the memory `cat([first, second], dim=1)`, from those of its parts."""
        return [
            (torch.cat([k1, k2], dim=2), torch.cat([v1, v2], dim=2)) for (k1, v1), (k2, v2) in zip(first, second)
        ]

    def logits(self, query: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(query))

    def decode_step(self, content, query, extend, memory_key_values: MemoryKeyValues, first_query=None,
                    output_attentions: bool = False):
        """One left-to-right step, as `generate` runs it and the exported step graph traces it: the newest context
        token's content `[B, 1, D]` joins the cached self-attention keys and values (`extend(layer, keys, values)`
        returns all of them), and the queries `query` `[B, Q, D]` read. `first_query`: the first layer's
        self-attention queries, already projected. Returns logits `[B, Q, C + 1]` and the per-layer cross-attention
        weights (empty unless `output_attentions`)."""
        last = len(self.layers) - 1
        attentions = []
        for index, layer in enumerate(self.layers):
            content_normed = layer.norm_c(content)
            self_key_value = extend(index, *layer.self_attn.project_key_value(content_normed))
            memory = memory_key_values[index]
            if index == 0 and first_query is not None:
                new_query = layer.forward_stream(query, None, self_key_value, memory, self_query=first_query,
                                                 output_attentions=output_attentions)
            else:
                new_query = layer.forward_stream(query, layer.norm_q(query), self_key_value, memory,
                                                 output_attentions=output_attentions)
            if output_attentions:
                new_query, weights = new_query
                attentions.append(weights)
            if index != last:
                content = layer.forward_stream(content, content_normed, self_key_value, memory)
            query = new_query
        return self.logits(query), attentions

    # --- the operations -----------------------------------------------------------------------------------------------
    def _memory_key_values(self, memory: torch.Tensor) -> MemoryKeyValues:
        return [layer.cross_attn.project_key_value(memory) for layer in self.layers]

    def _decode_context(
        self,
        tokens: torch.LongTensor,
        memory_key_values: MemoryKeyValues,
        queries: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
        content_mask: torch.Tensor | None = None,
        padding_mask: torch.BoolTensor | None = None,
        memory_mask: torch.Tensor | None = None,
        num_queries: int | None = None,
        output_attentions: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """
        Args:
            tokens: context `[B, L]`, `[B]` first.
            memory_key_values: from [`memory_key_values`].
            queries: position queries `[B or 1, Lq, D]`; defaults to the first `num_queries` position queries.
            query_mask: additive `[Lq, L]`, or `[K, Lq, L]` to run K orders (permutations) in one pass.
            content_mask: additive `[L, L]` (or `[K, L, L]`); only used by layers that update the content stream.
            padding_mask: `[B, L]`, True for context positions no query may see.
            memory_mask: additive `[K, M]`: which memory positions each of the K orders may see (when each order
                has its own part of the memory, as the cross-modal branch has in training).
            num_queries: how many position queries to read with when `queries` is not given (default L).
            output_attentions: also return each layer's cross-attention weights of the query stream.

        Returns:
            logits `[B, Lq, C + 1]`, or `[B, K, Lq, C + 1]` when K orders are given; with `output_attentions`, also
            a tuple (one per layer) of weights `[B, heads, Lq, M]` (`[B, heads, K, Lq, M]` with K orders).
        """
        batch, length = tokens.shape
        if queries is None:
            queries = self.pos_queries[:, : length if num_queries is None else num_queries]
        num_queries = queries.shape[1]
        query = self.dropout(queries.expand(batch, -1, -1))
        content = self.dropout(self.embed_content(tokens))

        grouped = query_mask is not None and query_mask.dim() == 3
        num_groups = query_mask.shape[0] if grouped else 1
        # With several layers the content stream itself depends on the order, so each order gets its own copy.
        content_per_group = grouped and num_groups > 1 and len(self.layers) > 1
        pad = None
        if padding_mask is not None:
            pad = torch.zeros(padding_mask.shape, dtype=query.dtype, device=query.device)
            pad = pad.masked_fill_(padding_mask, float("-inf"))[:, None, None, :]

        query_memory_mask = content_memory_mask = None
        if grouped:
            query = query.repeat(1, num_groups, 1)
            if content_per_group:
                content = content.repeat(1, num_groups, 1)
                query_mask = block_diagonal(query_mask)
                content_mask = block_diagonal(content_mask) if content_mask is not None else None
                pad = pad.repeat(1, 1, 1, num_groups) if pad is not None else None
            else:
                query_mask = query_mask.reshape(num_groups * num_queries, length)
            if memory_mask is not None:
                query_memory_mask = memory_mask.repeat_interleave(num_queries, dim=0)
                if content_per_group:
                    content_memory_mask = memory_mask.repeat_interleave(length, dim=0)
        query_mask = merge_masks(query_mask, pad)
        # A single layer never updates the content stream, so its mask would go unused.
        content_mask = merge_masks(content_mask, pad) if len(self.layers) > 1 else None

        last = len(self.layers) - 1
        attentions = []
        for index, layer in enumerate(self.layers):
            outputs = layer(
                query,
                content,
                memory_key_values[index],
                query_mask,
                content_mask,
                query_memory_mask,
                content_memory_mask,
                update_content=index != last,
                output_attentions=output_attentions,
            )
            query, content = outputs[:2]
            if output_attentions:
                weights = outputs[2]
                if grouped:
                    weights = weights.unflatten(2, (num_groups, num_queries))
                attentions.append(weights)
        logits = self.logits(query)
        if grouped:
            logits = logits.view(batch, num_groups, num_queries, -1)
        return (logits, tuple(attentions)) if output_attentions else logits

    def _decode_autoregressive(
        self,
        memory_key_values: MemoryKeyValues,
        num_steps: int,
        bos_token_id: int,
        eos_token_id: int,
        stop_when_finished: bool,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Greedy left to right: step i's query sees the context `[B]` + the predictions of steps < i.

        Each step embeds only the newest context token; the self-attention keys and values of earlier positions
        (and, with several layers, their content states) are cached, since a left-to-right context never changes
        what came before.

        Returns:
            logits `[B, L, C + 1]` and the predicted ids `[B, L]`, L <= num_steps (fewer when
            `stop_when_finished` and every sequence has predicted `[E]`); with `output_attentions`, also a tuple (one
            per layer) of the query stream's cross-attention weights `[B, heads, L, M]`.
        """
        key0 = memory_key_values[0][0]
        batch, device = key0.shape[0], key0.device
        heads, head_dim = self.layers[0].self_attn.num_heads, self.layers[0].self_attn.head_dim
        dtype = self.pos_queries.dtype
        cache = [
            (
                torch.empty(batch, heads, num_steps, head_dim, dtype=dtype, device=device),
                torch.empty(batch, heads, num_steps, head_dim, dtype=dtype, device=device),
            )
            for _ in self.layers
        ]
        token = torch.full((batch, 1), bos_token_id, dtype=torch.long, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        # The first layer's query stream enters as the bare position queries, so its self-attention queries are
        # known before decoding starts: project all positions at once instead of one per step.
        first = self.layers[0]
        first_queries = first.self_attn.project_query(first.norm_q(self.pos_queries[:, :num_steps]))
        step_logits, step_ids = [], []
        step_attentions = [[] for _ in self.layers]
        for step in range(num_steps):
            content = self.embed_tokens(token)
            if step > 0:
                content = content + self.pos_queries[:, step - 1 : step]
            query = self.pos_queries[:, step : step + 1].expand(batch, -1, -1)

            def extend(index, keys, values, step=step):
                key_cache, value_cache = cache[index]
                key_cache[:, :, step : step + 1] = keys
                value_cache[:, :, step : step + 1] = values
                return key_cache[:, :, : step + 1], value_cache[:, :, : step + 1]

            first_query = first_queries[:, :, step : step + 1].expand(batch, -1, -1, -1)
            logits, attentions = self.decode_step(content, query, extend, memory_key_values, first_query,
                                                  output_attentions)
            for index, weights in enumerate(attentions):
                step_attentions[index].append(weights)
            token = logits.argmax(-1)
            step_logits.append(logits)
            step_ids.append(token)
            if stop_when_finished and step + 1 < num_steps:
                finished |= token[:, 0] == eos_token_id
                if bool(finished.all()):
                    break
        logits, ids = torch.cat(step_logits, dim=1), torch.cat(step_ids, dim=1)
        if output_attentions:
            return logits, ids, tuple(torch.cat(weights, dim=2) for weights in step_attentions)
        return logits, ids


__all__ = ["CLIP4STRAttention", "CLIP4STRDecoderLayer", "CLIP4STRDecoder", "MemoryKeyValues"]
