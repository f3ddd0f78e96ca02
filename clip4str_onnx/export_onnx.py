"""Export a CLIP4STR model to ONNX, for ONNX Runtime without PyTorch ([`CLIP4STROnnxModel`]).

    python -m clip4str_onnx.export_onnx MODEL_DIR OUT_DIR [--opset 17] [--quantize int8] [--images A.png DIR ...]

Predict-and-refine is a loop around tensor programs, with a text step in the middle (the visual prediction becomes a
CLIP BPE caption). The tensor programs become graphs, each with a dynamic batch size (see `onnx_graphs.py`: the image
encoder, the caption encoder, and each decoder's left-to-right step and cloze pass).

The loops and the caption step run in Python (`modeling_clip4str/reading_clip4str.py`, over the sessions of
`onnx_clip4str.py`). OUT_DIR also receives the processor files, the model's config, the caption tokenizer,
`clip4str_onnx.json` (settings with the special ids, graphs, their inputs and outputs, and the checks below), and
copies of `onnx_clip4str.py`, `onnx_description_clip4str.py`, `onnx_processing_clip4str.py`, `reading_clip4str.py` and
`labels_clip4str.py`, so that the directory runs on its own.

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
from pathlib import Path

import numpy as np
import torch

import modeling_clip4str

from modeling_clip4str import CLIP4STRForSceneTextRecognition, CLIP4STRProcessor

from .onnx_clip4str import CLIP4STROnnxModel
from .onnx_description_clip4str import CAPTION_TOKENIZER_FILE, DESCRIPTION_FILE, FORMAT_VERSION
from .onnx_graphs import export_graph, graphs_of, largest_difference, onnx_session

DEFAULT_OPSET = 17
# An fp32 graph whose outputs differ from PyTorch's by more than this (relative to the outputs' largest magnitude)
# was exported wrongly.
FP32_TOLERANCE = 1e-4
# Files that let an exported directory run where this project is not installed: this package's reader and the model
# package's torch-free reading loop, copied under these names (the copies import each other as top-level modules).
RUNTIME_FILES = {
    Path(__file__).resolve().parent: (
        "onnx_clip4str.py", "onnx_description_clip4str.py", "onnx_processing_clip4str.py",
    ),
    Path(modeling_clip4str.__file__).resolve().parent: ("reading_clip4str.py", "labels_clip4str.py"),
}


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
    for folder, names in RUNTIME_FILES.items():
        for name in names:
            shutil.copy(folder / name, out_dir / name)


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
        entry = {"purpose": graph.purpose, "files": {"fp32": path.name}, **describe_io(onnx_session(path)),
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
        epilog="Load the result with `CLIP4STROnnxModel.from_pretrained(OUT_DIR)` (clip4str_onnx.onnx_clip4str).",
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
