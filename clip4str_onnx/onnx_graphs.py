"""The tensor programs of CLIP4STR's reading loop as modules to trace, and their export to ONNX with a check against
PyTorch ([`export_onnx`] writes them, [`~onnx_clip4str.OnnxGraphs`] runs them):

- `image_encoder`: pixel values -> image memory, and both decoders' cross-attention keys and values of it;
- `caption_encoder`: caption ids -> text memory, and the cross-modal decoder's keys and values of it;
- `{visual,cross}_decoder_step`: one left-to-right step with cached self-attention keys and values (also the
  all-positions pass of `decode_ar=False`: step 0 with every position's query);
- `{visual,cross}_decoder_cloze`: the refinement pass over all positions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modeling_clip4str import CLIP4STRForSceneTextRecognition
from modeling_clip4str.caption_clip4str import TextTower, text_tower_from
from modeling_clip4str.permutations_clip4str import cloze_mask

from .onnx_description_clip4str import CAPTION_ENCODER, IMAGE_ENCODER, cloze_graph, step_graph

TRACE_BATCH = 2  # graphs are traced at one batch size and checked at another, which shows the batch is dynamic
CHECK_BATCH = 3


def _stack(key_values) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer keys and values -> keys and values `[layers, B, heads, M, head_dim]`."""
    return torch.stack([key for key, _ in key_values]), torch.stack([value for _, value in key_values])


def _unstack(keys: torch.Tensor, values: torch.Tensor):
    """Keys and values `[layers, B, heads, M, head_dim]` -> per layer. One layer (the released models) is a Squeeze,
    which ONNX Runtime runs without copying; indexing would copy the whole memory at every decoding step."""
    if keys.shape[0] == 1:
        return [(keys.squeeze(0), values.squeeze(0))]
    return [(keys[index], values[index]) for index in range(keys.shape[0])]


# --- the graphs, as modules to trace ------------------------------------------------------------------------------
class ImageEncoderGraph(nn.Module):
    """pixel_values `[B, 3, H, W]` -> image memory `[B, M, D]` and, for each decoder, the cross-attention keys and
    values of it, `[layers, B, heads, M, head_dim]`."""

    input_names = ["pixel_values"]
    output_names = ["image_memory", "visual_memory_keys", "visual_memory_values", "cross_memory_keys",
                    "cross_memory_values"]

    def __init__(self, model: CLIP4STRForSceneTextRecognition):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        memory = self.model.encode_image(pixel_values)
        visual = _stack(self.model.visual_decoder.memory_key_values(memory))
        cross = _stack(self.model.cross_decoder.memory_key_values(memory))
        return memory, *visual, *cross


class CaptionEncoderGraph(nn.Module):
    """Caption ids `[N, S]` -> text memory `[N, S, D]` and the cross-modal decoder's keys and values of it
    `[layers, N, heads, S, head_dim]` (the text tower as `generate` runs it, over every position)."""

    input_names = ["input_ids"]
    output_names = ["text_memory", "memory_keys", "memory_values"]

    def __init__(self, model: CLIP4STRForSceneTextRecognition):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        memory, _ = text_tower_from(TextTower(self.model.text_model, self.model.text_projection), input_ids)
        return memory, *_stack(self.model.cross_decoder.memory_key_values(memory))


class DecoderStepGraph(nn.Module):
    """One left-to-right step of a decoder, with cached self-attention keys and values.

    Inputs: tokens `[B, 1]` (the newest context token: `[B]` at step 0, else the prediction of step - 1); step `[1]`;
    query_positions `[Q]` (the positions to predict: `[step]` left to right, every position for `decode_ar=False`);
    past keys and values `[layers, B, heads, step, head_dim]`; memory keys and values `[layers, B, heads, M,
    head_dim]`. Outputs: logits `[B, Q, C + 1]` and the keys and values with this step's appended.
    """

    input_names = ["tokens", "step", "query_positions", "past_keys", "past_values", "memory_keys", "memory_values"]
    output_names = ["logits", "present_keys", "present_values"]

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, tokens, step, query_positions, past_keys, past_values, memory_keys, memory_values):
        decoder = self.decoder
        # The content of position j >= 1 adds position query j - 1; position 0 ([B]) adds nothing.
        shifted_queries = torch.cat([torch.zeros_like(decoder.pos_queries[:, :1]), decoder.pos_queries[:, :-1]], 1)
        content = decoder.embed_tokens(tokens) + shifted_queries.index_select(1, step)
        query = decoder.pos_queries.index_select(1, query_positions).expand(tokens.shape[0], -1, -1)
        present_keys, present_values = [], []

        def extend(index, keys, values):
            present_keys.append(torch.cat([past_keys[index], keys], dim=2))
            present_values.append(torch.cat([past_values[index], values], dim=2))
            return present_keys[-1], present_values[-1]

        logits, _ = decoder.decode_step(content, query, extend, _unstack(memory_keys, memory_values))
        return logits, torch.stack(present_keys), torch.stack(present_values)


class DecoderClozeGraph(nn.Module):
    """The refinement pass of a decoder: context `[B, T]` (`[B]` + the previous prediction; positions from the first
    `[E]` on hidden), every position's query, each seeing all context but its own target. -> logits `[B, T, C + 1]`.
    """

    input_names = ["context", "memory_keys", "memory_values"]
    output_names = ["logits"]

    def __init__(self, decoder, eos_token_id: int):
        super().__init__()
        self.decoder = decoder
        self.eos_token_id = eos_token_id

    def forward(self, context, memory_keys, memory_values):
        mask = cloze_mask(self.decoder.pos_queries.shape[1], device=context.device)
        padding_mask = (context == self.eos_token_id).long().cumsum(-1) > 0
        return self.decoder(
            context,
            _unstack(memory_keys, memory_values),
            queries=self.decoder.pos_queries,
            query_mask=mask,
            content_mask=mask,
            padding_mask=padding_mask,
        )


@dataclass
class GraphExport:
    """A graph to export: the module, example inputs at a batch size, and which input and output axes vary."""

    name: str
    purpose: str
    module: nn.Module
    example_inputs: Callable[..., tuple]  # batch size -> input tensors
    dynamic_axes: dict


def graphs_of(model: CLIP4STRForSceneTextRecognition) -> list[GraphExport]:
    """The graphs of `model`, with example inputs that follow its shapes."""
    config = model.config
    layers, heads = config.decoder_num_layers, config.decoder_num_heads
    head_dim = config.projection_dim // heads
    height, width = config.image_input_size
    with torch.no_grad():
        image_memory_length = model.encode_image(torch.zeros(1, 3, height, width)).shape[1]
    text_length = config.context_length
    generator = torch.Generator().manual_seed(0)

    def key_values(batch, length):
        shape = (layers, batch, heads, length, head_dim)
        return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)

    def image_inputs(batch):
        return (torch.randn(batch, 3, height, width, generator=generator),)

    def caption_inputs(batch):
        return (torch.randint(0, config.text_config.vocab_size, (batch, text_length), generator=generator),)

    def step_inputs(memory_length):
        def inputs(batch, past=2):
            tokens = torch.randint(1, config.num_classes, (batch, 1), generator=generator)
            step = torch.tensor([past])
            return (tokens, step, step.clone(), *key_values(batch, past), *key_values(batch, memory_length))
        return inputs

    def cloze_inputs(memory_length):
        def inputs(batch):
            context = torch.randint(0, config.num_classes, (batch, config.num_decoding_steps), generator=generator)
            context[:, 0] = config.bos_token_id
            return (context, *key_values(batch, memory_length))
        return inputs

    kv_axes = {1: "batch", 3: "memory"}
    step_axes = {
        "tokens": {0: "batch"}, "query_positions": {0: "queries"},
        "past_keys": {1: "batch", 3: "past"}, "past_values": {1: "batch", 3: "past"},
        "memory_keys": kv_axes, "memory_values": kv_axes,
        "logits": {0: "batch", 1: "queries"},
        "present_keys": {1: "batch", 3: "present"}, "present_values": {1: "batch", 3: "present"},
    }
    cloze_axes = {"context": {0: "batch"}, "memory_keys": kv_axes, "memory_values": kv_axes, "logits": {0: "batch"}}
    cross_memory_length = image_memory_length + text_length
    graphs = [
        GraphExport(
            IMAGE_ENCODER, "image encoder with final LayerNorm and projection; both decoders' memory keys/values",
            ImageEncoderGraph(model), image_inputs,
            {name: {0: "batch"} for name in ("pixel_values", "image_memory")}
            | {name: {1: "batch"} for name in ImageEncoderGraph.output_names[1:]},
        ),
        GraphExport(
            CAPTION_ENCODER, "caption text tower with projection; the cross-modal decoder's memory keys/values",
            CaptionEncoderGraph(model), caption_inputs,
            {"input_ids": {0: "captions"}, "text_memory": {0: "captions"}, "memory_keys": {1: "captions"},
             "memory_values": {1: "captions"}},
        ),
    ]
    for branch, decoder, memory_length in (
        ("visual", model.visual_decoder, image_memory_length),
        ("cross", model.cross_decoder, cross_memory_length),
    ):
        graphs.append(GraphExport(
            step_graph(branch), f"{branch} decoder: one left-to-right step with cached keys/values",
            DecoderStepGraph(decoder), step_inputs(memory_length), step_axes,
        ))
        graphs.append(GraphExport(
            cloze_graph(branch), f"{branch} decoder: cloze (refinement) pass over all positions",
            DecoderClozeGraph(decoder, config.eos_token_id), cloze_inputs(memory_length), cloze_axes,
        ))
    return graphs


# --- exporting and checking ---------------------------------------------------------------------------------------
def export_graph(graph: GraphExport, path: Path, opset: int) -> None:
    module = graph.module.eval()
    with warnings.catch_warnings():
        # The tracer warns about Python-level shape checks (fixed image size, fixed context length) and torch warns
        # that this exporter is the older of its two; neither concerns these graphs.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            graph.example_inputs(TRACE_BATCH),
            str(path),
            dynamo=False,
            input_names=module.input_names,
            output_names=module.output_names,
            dynamic_axes=graph.dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
        )


def onnx_session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def largest_difference(graph: GraphExport, path: Path) -> tuple[float, float]:
    """Largest |ONNX Runtime - PyTorch| over every output of `graph`, on inputs of a batch size other than the traced
    one (and, for a step graph, also at step 0 with no cache), and the outputs' largest magnitude."""
    session = onnx_session(path)
    cases = [graph.example_inputs(CHECK_BATCH)]
    if isinstance(graph.module, DecoderStepGraph):
        cases.append(graph.example_inputs(CHECK_BATCH, past=0))
    difference = magnitude = 0.0
    for inputs in cases:
        with torch.no_grad():
            expected = graph.module(*inputs)
        expected = (expected,) if isinstance(expected, torch.Tensor) else expected
        feeds = {name: tensor.numpy() for name, tensor in zip(graph.module.input_names, inputs)}
        outputs = session.run(graph.module.output_names, feeds)
        for output, reference in zip(outputs, expected):
            reference = reference.numpy()
            if output.shape != reference.shape:
                raise RuntimeError(f"{path.name}: output of shape {output.shape}, PyTorch gives {reference.shape}.")
            difference = max(difference, float(np.abs(output - reference).max(initial=0.0)))
            magnitude = max(magnitude, float(np.abs(reference).max(initial=0.0)))
    return difference, magnitude


__all__ = [
    "CHECK_BATCH", "TRACE_BATCH", "CaptionEncoderGraph", "DecoderClozeGraph", "DecoderStepGraph", "GraphExport",
    "ImageEncoderGraph", "export_graph", "graphs_of", "largest_difference", "onnx_session",
]
