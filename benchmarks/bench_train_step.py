#!/usr/bin/env python
"""Training step speed: the permutations one after another (the reference's loop) against all of them through
each decoder at once (with the text tower run once per distinct caption), as the model trains.

A step is forward + backward of the training loss with 6 permutations and dropout 0.1, batch 8, random weights.
Also checks that both ways give the same loss without dropout (same sampled orders).

    python benchmarks/bench_train_step.py --shapes b16 small --batch-size 8 --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import random
import string

import torch

from common import build_model, describe_machine, median_seconds
from modeling_clip4str import CLIP4STRProcessor
from modeling_clip4str.loss_clip4str import permutation_loss, permuted_batch


def random_labels(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 12))) for _ in range(count)]


def labels_tensor(model, words):
    return CLIP4STRProcessor.from_config(model.config)(text=words)["labels"]


def looped_loss(model, pixel_values, labels) -> torch.Tensor:
    """The training loss with the orders one after another, as the reference computes it: each order projects its
    memories again and encodes every caption of its visual prediction. Samples the orders as the model's forward
    does, so with the same seed both sample the same ones."""
    image_memory = model.encode_image(pixel_values)
    batch = permuted_batch(labels.to(image_memory.device), model.config, seeded=not model.training)
    visual_all, cross_all = [], []
    for k in range(batch.num_orders):
        masks = dict(query_mask=batch.query_masks[k], content_mask=batch.content_masks[k],
                     padding_mask=batch.padding_mask)
        visual = model.visual_decoder(batch.context, model.visual_decoder.memory_key_values(image_memory), **masks)
        captions = model.tokenize_captions(model.caption_texts(visual.detach())).to(image_memory.device)
        cross_memory = torch.cat([image_memory.detach(), model.encode_text(captions)], dim=1)
        cross = model.cross_decoder(batch.context, model.cross_decoder.memory_key_values(cross_memory), **masks)
        visual_all.append(visual)
        cross_all.append(cross)
    return permutation_loss(torch.stack(visual_all, dim=1), torch.stack(cross_all, dim=1), batch.targets, model.config)


def batched_loss(model, pixel_values, labels) -> torch.Tensor:
    return model(pixel_values=pixel_values, labels=labels).loss


def step_time(model, pixel_values, labels, loss_of, repeats: int) -> float:
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        loss_of(model, pixel_values, labels).backward()

    return median_seconds(step, repeats)


def same_loss(model, pixel_values, labels) -> float:
    """|loss(batched) - loss(loop)| without dropout (eval mode), with the same sampled orders."""
    model.eval()  # no dropout anywhere (decoder modules and attention probabilities)
    losses = []
    for loss_of in (batched_loss, looped_loss):
        torch.manual_seed(1234)
        with torch.no_grad():
            losses.append(loss_of(model, pixel_values, labels).item())
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
        image_shape = (args.batch_size, 3, *model.config.image_input_size)
        pixel_values = torch.randn(image_shape, generator=torch.Generator().manual_seed(0))
        labels = labels_tensor(model, random_labels(args.batch_size))
        difference = same_loss(model, pixel_values, labels)
        loop = step_time(model, pixel_values, labels, looped_loss, repeats=args.repeats)
        batched = step_time(model, pixel_values, labels, batched_loss, repeats=args.repeats)
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
