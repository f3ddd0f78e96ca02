"""Export a CLIP4STR model to ONNX, for ONNX Runtime without PyTorch ([`CLIP4STROnnxModel`]).

    python -m modeling_clip4str.export_onnx MODEL_DIR OUT_DIR [--opset 17] [--quantize int8] [--images A.png DIR ...]

Predict-and-refine is a loop around tensor programs, with a text step in the middle (the visual prediction becomes a
CLIP BPE caption). The tensor programs become graphs, each with a dynamic batch size:

- `image_encoder`: pixel values -> image memory, and both decoders' cross-attention keys and values of it;
- `caption_encoder`: caption ids -> text memory, and the cross-modal decoder's keys and values of it;
- `{visual,cross}_decoder_step`: one left-to-right step with cached self-attention keys and values (also the
  all-positions pass of `decode_ar=False`: step 0 with every position's query);
- `{visual,cross}_decoder_cloze`: the refinement pass over all positions.

The loops and the caption step run in Python (`reading_clip4str.py`, over the sessions of `onnx_clip4str.py`).
OUT_DIR also receives the processor files, the model's config, the caption tokenizer, `clip4str_onnx.json`
(settings with the special ids, graphs, their inputs and outputs, and the checks below), and copies of
`onnx_clip4str.py`, `reading_clip4str.py` and `labels_clip4str.py`, so that the directory runs on its own.

Each graph is checked against PyTorch on export (on a batch size other than the traced one) and the largest
difference is printed; then the whole `generate` (decode_ar true and false) against the PyTorch model's, on `--images`
or on random pixels. With `--quantize int8`, the graphs are also written with int8 weights (ONNX Runtime's dynamic
quantisation: matrix products in int8, activations quantised per call) and compared likewise, including how many
texts differ from the fp32 ones.

The graphs are traced with torch's TorchScript-based exporter (`dynamo=False`): it needs no extra package, takes well
under a second per graph, and the graphs are loop bodies whose only varying sizes are the batch, the cached steps and
the query count, which `dynamic_axes` states directly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .caption_clip4str import TextTower, text_tower_from
from .modeling_clip4str import CLIP4STRForSceneTextRecognition
from .onnx_clip4str import CLIP4STROnnxModel
from .onnx_description_clip4str import (
    CAPTION_ENCODER,
    CAPTION_TOKENIZER_FILE,
    DESCRIPTION_FILE,
    FORMAT_VERSION,
    IMAGE_ENCODER,
    cloze_graph,
    step_graph,
)
from .permutations_clip4str import cloze_mask
from .processing_clip4str import CLIP4STRProcessor

DEFAULT_OPSET = 17
TRACE_BATCH = 2  # graphs are traced at one batch size and checked at another, which shows the batch is dynamic
CHECK_BATCH = 3
# An fp32 graph whose outputs differ from PyTorch's by more than this (relative to the outputs' largest magnitude)
# was exported wrongly.
FP32_TOLERANCE = 1e-4
# Files that let an exported directory run where this package is not installed.
RUNTIME_FILES = (
    "onnx_clip4str.py", "onnx_description_clip4str.py", "onnx_processing_clip4str.py", "reading_clip4str.py",
    "labels_clip4str.py",
)


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


def _session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def largest_difference(graph: GraphExport, path: Path) -> tuple[float, float]:
    """Largest |ONNX Runtime - PyTorch| over every output of `graph`, on inputs of a batch size other than the traced
    one (and, for a step graph, also at step 0 with no cache), and the outputs' largest magnitude."""
    session = _session(path)
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


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation with ONNX Runtime: weights of matrix products stored as int8 (per output channel),
    activations quantised at run time. Convolutions (the patch embedding) and lookups stay fp32: ONNX Runtime's CPU
    integer convolution takes no int8 weights, and quantising a position table would change every word."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    # The quantiser advises (on the root logger) a shape-inference and optimisation pass first; on these graphs that
    # pass changes neither the quantised weights nor the outputs.
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(source), str(target), op_types_to_quantize=["MatMul"], per_channel=True, weight_type=QuantType.QInt8
        )
    finally:
        root.setLevel(level)


def pixel_values_to_check(model, processor, images: list[str] | None, batch: int = 4) -> torch.Tensor:
    """Pixel values to check `generate` on: the given images (files, or folders of them), or seeded random pixels."""
    if images:
        paths = []
        for item in images:
            item = Path(item)
            if item.is_dir():
                paths += sorted(p for p in item.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
            else:
                paths.append(item)
        if not paths:
            raise ValueError(f"No images (.png, .jpg, .jpeg, .bmp) found in {images}.")
        return processor(images=[str(path) for path in paths])["pixel_values"]
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, *model.config.image_input_size, generator=generator)


def compare_generate(model, onnx_model: CLIP4STROnnxModel, processor, pixel_values, reference=None) -> dict:
    """`onnx_model.generate` against `model.generate` (or, given `reference`, against another exported model), with
    decode_ar true and false: largest logits difference and how many texts differ."""
    result = {"num_images": int(len(pixel_values))}
    for decode_ar in (True, False):
        if reference is None:
            with torch.no_grad():
                expected = model.generate(pixel_values, decode_ar=decode_ar, return_dict_in_generate=True)
            expected_logits = expected.logits.numpy()
        else:
            expected = reference.generate(pixel_values, decode_ar=decode_ar, return_dict_in_generate=True)
            expected_logits = expected.logits
        output = onnx_model.generate(pixel_values, decode_ar=decode_ar, return_dict_in_generate=True)
        texts, expected_texts = processor.batch_decode(output), processor.batch_decode(expected)
        key = "left_to_right" if decode_ar else "all_at_once"
        same_shape = output.logits.shape == expected_logits.shape
        result[key] = {
            "max_abs_logits_difference": float(np.abs(output.logits - expected_logits).max()) if same_shape else None,
            "num_texts_differing": sum(a != b for a, b in zip(texts, expected_texts)),
        }
    return result


def save_beside_graphs(model, processor, out_dir: Path) -> None:
    """Processor files, the model's config, the caption tokenizer (with the `tokenizer.json` that the `tokenizers`
    library reads) and the runtime code."""
    processor.save_pretrained(out_dir)
    model.config.save_pretrained(out_dir)
    if model.caption_tokenizer is None:
        raise ValueError("The model has no caption tokenizer; load it from a directory with `caption_tokenizer/`.")
    model.caption_tokenizer.save_pretrained(out_dir / Path(CAPTION_TOKENIZER_FILE).parent)
    if not (out_dir / CAPTION_TOKENIZER_FILE).is_file():
        raise ValueError(
            f"The caption tokenizer ({type(model.caption_tokenizer).__name__}) wrote no tokenizer.json; the exported "
            "model needs a fast (tokenizers-backed) CLIP tokenizer such as `CLIPTokenizer` of transformers 5."
        )
    here = Path(__file__).resolve().parent
    for name in RUNTIME_FILES:
        shutil.copy(here / name, out_dir / name)


def describe_io(session) -> dict:
    def describe(values):
        return {
            value.name: {"shape": [dim if isinstance(dim, int) else str(dim) for dim in value.shape],
                         "dtype": value.type.removeprefix("tensor(").removesuffix(")")}
            for value in values
        }

    return {"inputs": describe(session.get_inputs()), "outputs": describe(session.get_outputs())}


def settings_of(model) -> dict:
    config = model.config
    return {
        "charset": config.charset,
        "caption_charset": config.caption_charset,
        "max_label_length": config.max_label_length,
        "context_length": config.context_length,
        "refine_iters": config.refine_iters,
        "decode_ar": config.decode_ar,
        "image_input_size": list(config.image_input_size),
        "caption_eos_token_id": int(model.caption_tokenizer.eos_token_id),
        "decoder_num_layers": config.decoder_num_layers,
        "decoder_num_heads": config.decoder_num_heads,
        "decoder_head_dim": config.projection_dim // config.decoder_num_heads,
        "benchmark_protocol": config.benchmark_protocol,
        "eos_token_id": config.eos_token_id,
        "bos_token_id": config.bos_token_id,
        "pad_token_id": config.pad_token_id,
    }


def preprocessing_of(processor: CLIP4STRProcessor) -> dict:
    """The image processor's settings, for [`CLIP4STROnnxProcessor`] (which prepares images without torch)."""
    image_processor = processor.image_processor
    size = image_processor.size
    steps = {name: getattr(image_processor, name) for name in ("do_resize", "do_rescale", "do_normalize")}
    if not all(steps.values()):
        raise ValueError(f"The exported reader resizes, rescales and normalises images; this processor has {steps}.")
    return {
        "image_size": [size["height"], size["width"]],
        "resample": int(image_processor.resample),
        "rescale_factor": float(image_processor.rescale_factor),
        "image_mean": [float(value) for value in image_processor.image_mean],
        "image_std": [float(value) for value in image_processor.image_std],
    }


def export(
    model: CLIP4STRForSceneTextRecognition,
    processor: CLIP4STRProcessor,
    out_dir,
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    images: list[str] | None = None,
    log=print,
) -> dict:
    """Write the graphs and everything `CLIP4STROnnxModel.from_pretrained(out_dir)` needs; check them against
    `model` (which is put in eval mode and fp32 first). Returns the description written to `clip4str_onnx.json`."""
    if quantize not in (None, "int8"):
        raise ValueError(f"Unknown quantisation {quantize!r}; the one supported is 'int8'.")
    model = model.float().eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_beside_graphs(model, processor, out_dir)
    import onnx
    import onnxruntime

    description = {
        "format_version": FORMAT_VERSION,
        "exporter": {"torch": torch.__version__.split("+")[0], "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__, "method": "torch.onnx.export(dynamo=False)",
                     "opset": opset},
        "settings": settings_of(model),
        "preprocessing": preprocessing_of(processor),
        "caption_tokenizer": CAPTION_TOKENIZER_FILE,
        "graphs": {},
    }
    for graph in graphs_of(model):
        path = out_dir / f"{graph.name}.onnx"
        export_graph(graph, path, opset)
        difference, magnitude = largest_difference(graph, path)
        log(f"{graph.name}: largest |ONNX Runtime - PyTorch| = {difference:.3g} (outputs up to {magnitude:.3g})")
        if difference > FP32_TOLERANCE * max(1.0, magnitude):
            raise RuntimeError(
                f"The exported {graph.name} differs from PyTorch by {difference:.3g}; the export is wrong. Please "
                "report this with the torch and onnxruntime versions."
            )
        entry = {"purpose": graph.purpose, "files": {"fp32": path.name}, **describe_io(_session(path)),
                 "max_abs_difference": {"fp32": difference}}
        if quantize == "int8":
            int8_path = out_dir / f"{graph.name}.int8.onnx"
            quantize_int8(path, int8_path)
            int8_difference, _ = largest_difference(graph, int8_path)
            log(f"{graph.name} (int8): largest |ONNX Runtime - PyTorch| = {int8_difference:.3g}")
            entry["files"]["int8"] = int8_path.name
            entry["max_abs_difference"]["int8"] = int8_difference
        description["graphs"][graph.name] = entry
    _write_description(out_dir, description)

    pixel_values = pixel_values_to_check(model, processor, images)
    fp32_model = CLIP4STROnnxModel.from_pretrained(out_dir)
    checks = {"images": "given" if images else "random pixels", "fp32_vs_pytorch": compare_generate(
        model, fp32_model, processor, pixel_values)}
    _log_comparison(log, "generate, fp32 vs PyTorch", checks["fp32_vs_pytorch"])
    if quantize == "int8":
        int8_model = CLIP4STROnnxModel.from_pretrained(out_dir, precision="int8")
        checks["int8_vs_fp32"] = compare_generate(model, int8_model, processor, pixel_values, reference=fp32_model)
        _log_comparison(log, "generate, int8 vs fp32", checks["int8_vs_fp32"])
    description["checks"] = checks
    _write_description(out_dir, description)
    return description


def _log_comparison(log, title: str, result: dict) -> None:
    for key in ("left_to_right", "all_at_once"):
        entry = result[key]
        difference = entry["max_abs_logits_difference"]
        shown = "different lengths" if difference is None else f"{difference:.3g}"
        log(f"{title} ({key.replace('_', ' ')}): largest logits difference {shown}; texts differ on "
            f"{entry['num_texts_differing']} of {result['num_images']} images")


def _write_description(out_dir: Path, description: dict) -> None:
    with open(out_dir / DESCRIPTION_FILE, "w", encoding="utf-8") as handle:
        json.dump(description, handle, indent=2, ensure_ascii=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Load the result with `CLIP4STROnnxModel.from_pretrained(OUT_DIR)` (modeling_clip4str.onnx_clip4str).",
    )
    parser.add_argument("model_dir", help="a saved CLIP4STR model (directory or Hub id)")
    parser.add_argument("out_dir", help="where to write the graphs, processor, caption tokenizer and description")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--quantize", choices=["int8"], help="also write int8 graphs (dynamic quantisation)")
    parser.add_argument(
        "--images", nargs="+", help="word images (files or folders) to compare generate on (default: random pixels)"
    )
    args = parser.parse_args(argv)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        parser.error("Exporting needs `onnx` and `onnxruntime`: pip install 'clip4str-hf[onnx]'.")
    model = CLIP4STRForSceneTextRecognition.from_pretrained(args.model_dir)
    processor = CLIP4STRProcessor.from_pretrained(args.model_dir)
    try:
        export(model, processor, args.out_dir, opset=args.opset, quantize=args.quantize, images=args.images)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {args.out_dir}; load it with CLIP4STROnnxModel.from_pretrained({os.fspath(args.out_dir)!r}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
