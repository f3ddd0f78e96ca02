#!/usr/bin/env python
"""How much does reading a word cost beyond the image encoder?

For each shape and batch size: images/s of (a) the image encoder with its projection alone and (b) the whole
`generate` with refine_iters=1, for a short word (5 characters) and a full-length one (all 26 steps); and b/a as
time ratios (and the full length again with predictions that refinement keeps, so the captions are encoded
once, as with a confident trained model). Medians of several runs. CPU fp32 by default; on CUDA fp16 and bf16 too.

    python benchmarks/bench_generate.py --shapes b16 small --batch-sizes 1 8 32 --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import json

import torch

from common import build_model, describe_machine, force_length, interleaved_medians


def run(shape, batch_sizes, device, dtype, repeats, lengths):
    model = build_model(shape).to(device=device, dtype=dtype).eval()
    untouched = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rows = []
    for batch in batch_sizes:
        pixel_values = torch.randn(batch, 3, *model.config.image_input_size, device=device, dtype=dtype)

        def sync():
            if device == "cuda":
                torch.cuda.synchronize()

        def encoder():
            with torch.inference_mode():
                model.encode_image(pixel_values)
            sync()

        def whole():
            with torch.inference_mode():
                model.generate(pixel_values, refine_iters=1)
            sync()

        for name, num_chars, stable in lengths:
            model.load_state_dict(untouched)  # each setting starts from the same random weights
            force_length(model, num_chars, stable)
            with torch.inference_mode():
                steps = model.generate(pixel_values, refine_iters=0, return_dict_in_generate=True).logits.shape[1]
            # Encoder and generate runs alternate, so that drift in the machine's speed hits both alike.
            encoder_time, generate_time = interleaved_medians([encoder, whole], repeats)
            rows.append({
                "shape": shape, "device": device, "dtype": str(dtype).replace("torch.", ""), "batch": batch,
                "decoding": name, "steps": steps,
                "encoder_images_per_s": batch / encoder_time, "generate_images_per_s": batch / generate_time,
                "ratio": generate_time / encoder_time,
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def to_markdown(rows) -> str:
    lines = ["| shape | device | dtype | batch | decoding (steps) | encoder img/s | generate img/s | generate / encoder |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['device']} | {r['dtype']} | {r['batch']} | {r['decoding']} ({r['steps']}) | "
            f"{r['encoder_images_per_s']:.2f} | {r['generate_images_per_s']:.2f} | {r['ratio']:.3f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["b16", "small"], choices=["b16", "small"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (fixed for comparable numbers)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output-json", help="write all rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = [torch.float32] if args.device == "cpu" else [torch.float16, torch.bfloat16]
    # short: 5 characters; full: all 26 steps, with predictions that refinement changes (captions re-encoded) or
    # keeps (captions encoded once), the two ends of what trained models do.
    lengths = [("short", 5, False), ("full", None, False), ("full-stable", None, True)]
    print(f"# {describe_machine(args.device)}", flush=True)
    rows = []
    for shape in args.shapes:
        for dtype in dtypes:
            rows += run(shape, args.batch_sizes, args.device, dtype, args.repeats, lengths)
    print(to_markdown(rows))
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump({"machine": describe_machine(args.device), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
