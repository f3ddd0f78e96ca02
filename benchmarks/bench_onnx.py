#!/usr/bin/env python
"""How fast does ONNX Runtime read words, in fp32 and with int8 weights, against PyTorch fp32?

For each shape, word length and batch size: images/s of the whole `generate` (refine_iters=1) with PyTorch fp32,
ONNX Runtime fp32 and ONNX Runtime int8 (`export_onnx --quantize int8`), timed in alternation (PyTorch, fp32, int8,
PyTorch, ...) so that drift in the machine's speed hits all three alike; medians of `--repeats` runs; and the speed-ups
over PyTorch. Random weights, made to end every word at a known length (see `common.force_length`): a short word
(5 characters) and a full-length one (all 26 steps). The same number of threads for torch and ONNX Runtime.

    python benchmarks/bench_onnx.py --shapes b16 --batch-sizes 1 8 --threads 2 --repeats 7

Each (shape, length) is exported once (the length is set in the weights), which takes a minute or two for B/16.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from common import build_model, describe_machine, force_length, interleaved_medians
from modeling_clip4str import CLIP4STRProcessor
from clip4str_onnx.export_onnx import export
from clip4str_onnx.onnx_clip4str import CLIP4STROnnxModel

LENGTHS = {"short": 5, "full": None}
REFINE_ITERS = 1


def run(shape: str, length: str, batch_sizes, threads: int, repeats: int) -> list[dict]:
    model = build_model(shape).eval()
    force_length(model, LENGTHS[length])
    processor = CLIP4STRProcessor.from_config(model.config)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        export(model, processor, directory, quantize="int8", log=lambda line: None)
        fp32 = CLIP4STROnnxModel.from_pretrained(directory, num_threads=threads)
        int8 = CLIP4STROnnxModel.from_pretrained(directory, precision="int8", num_threads=threads)
        for batch in batch_sizes:
            generator = torch.Generator().manual_seed(batch)
            pixel_values = torch.randn(batch, 3, *model.config.image_input_size, generator=generator)
            pixel_array = pixel_values.numpy()

            def pytorch():
                with torch.inference_mode():
                    model.generate(pixel_values, refine_iters=REFINE_ITERS)

            def onnx_fp32():
                fp32.generate(pixel_array, refine_iters=REFINE_ITERS)

            def onnx_int8():
                int8.generate(pixel_array, refine_iters=REFINE_ITERS)

            with torch.inference_mode():
                output = model.generate(pixel_values, refine_iters=0, return_dict_in_generate=True)
            steps = output.logits.shape[1]
            int8_ids = int8.generate(pixel_array, refine_iters=REFINE_ITERS)
            fp32_ids = fp32.generate(pixel_array, refine_iters=REFINE_ITERS)
            seconds = interleaved_medians([pytorch, onnx_fp32, onnx_int8], repeats)
            rows.append({
                "shape": shape, "batch": batch, "word": length, "steps": steps, "threads": threads,
                "pytorch_images_per_s": batch / seconds[0],
                "onnx_fp32_images_per_s": batch / seconds[1],
                "onnx_int8_images_per_s": batch / seconds[2],
                "fp32_speedup": seconds[0] / seconds[1],
                "int8_speedup": seconds[0] / seconds[2],
                "int8_ids_differ": int((int8_ids != fp32_ids).any(-1).sum()),
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def to_markdown(rows) -> str:
    lines = [
        "| shape | batch | word (steps) | PyTorch fp32 img/s | ORT fp32 img/s | ORT int8 img/s | fp32 speed-up | "
        "int8 speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['batch']} | {r['word']} ({r['steps']}) | {r['pytorch_images_per_s']:.2f} | "
            f"{r['onnx_fp32_images_per_s']:.2f} | {r['onnx_int8_images_per_s']:.2f} | {r['fp32_speedup']:.2f}x | "
            f"{r['int8_speedup']:.2f}x |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["b16"], choices=["b16", "small"])
    parser.add_argument("--words", nargs="+", default=list(LENGTHS), choices=list(LENGTHS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=2, help="threads of torch and of ONNX Runtime (fixed)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median reported)")
    parser.add_argument("--output-json", help="write all rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {describe_machine('cpu')}", flush=True)
    rows = []
    for shape in args.shapes:
        for word in args.words:
            rows += run(shape, word, args.batch_sizes, args.threads, args.repeats)
    print(to_markdown(rows))
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump({"machine": describe_machine("cpu"), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
