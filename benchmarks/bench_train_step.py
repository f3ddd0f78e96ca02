#!/usr/bin/env python
"""Training step speed: the permutations one after another (the reference's loop) against all of them through
each decoder at once (with the text tower run once per distinct caption).

A step is forward + backward of `model(pixel_values, labels).loss` with 6 permutations and dropout 0.1, batch 8,
random weights. Also checks that both ways give the same loss without dropout (same sampled orders).

    python benchmarks/bench_train_step.py --shapes b16 small --batch-size 8 --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import random
import string

import torch

from common import build_model, describe_machine, median_seconds


def random_labels(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 12))) for _ in range(count)]


def labels_tensor(model, words):
    from modeling_clip4str import CLIP4STRTokenizer

    return CLIP4STRTokenizer(charset=model.config.charset).encode_labels(words)


def step_time(model, pixel_values, labels, batched: bool, repeats: int) -> float:
    model.batch_permutations = batched
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        model(pixel_values=pixel_values, labels=labels).loss.backward()

    return median_seconds(step, repeats)


def same_loss(model, pixel_values, labels) -> float:
    """|loss(batched) - loss(loop)| without dropout (eval mode), with the same sampled orders."""
    model.eval()  # no dropout anywhere (decoder modules and attention probabilities)
    losses = []
    for batched in (True, False):
        model.batch_permutations = batched
        torch.manual_seed(1234)
        with torch.no_grad():
            losses.append(model(pixel_values=pixel_values, labels=labels).loss.item())
    model.train()
    return abs(losses[0] - losses[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["b16", "small"], choices=["b16", "small"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output-json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {describe_machine('cpu')}", flush=True)
    rows = []
    for shape in args.shapes:
        model = build_model(shape, perm_num=6, decoder_dropout=0.1)
        size = model.config.vision_config.image_size
        pixel_values = torch.randn(args.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
        labels = labels_tensor(model, random_labels(args.batch_size))
        difference = same_loss(model, pixel_values, labels)
        loop = step_time(model, pixel_values, labels, batched=False, repeats=args.repeats)
        batched = step_time(model, pixel_values, labels, batched=True, repeats=args.repeats)
        rows.append({
            "shape": shape, "batch": args.batch_size, "loop_s": loop, "batched_s": batched,
            "loop_samples_per_s": args.batch_size / loop, "batched_samples_per_s": args.batch_size / batched,
            "speedup": loop / batched, "loss_difference": difference,
        })
        print(json.dumps(rows[-1]), flush=True)
    print("| shape | batch | loop s/step | batched s/step | loop samples/s | batched samples/s | speed-up | loss diff |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['batch']} | {r['loop_s']:.3f} | {r['batched_s']:.3f} | "
              f"{r['loop_samples_per_s']:.2f} | {r['batched_samples_per_s']:.2f} | {r['speedup']:.2f}x | "
              f"{r['loss_difference']:.1e} |")
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump({"machine": describe_machine("cpu"), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
