#!/usr/bin/env python
"""The offline demo: synthetic word images -> a small CLIP4STR trained from a random CLIP -> scores on held-out words
-> a PNG grid of predictions. Nothing is downloaded.

    python -m training.demo [--output-dir demo_output] [--seed 0]
    python -m training.demo --language vi [--output-dir demo_output/vi]     # Vietnamese, tone marks included

Steps (each one a command you can also run by hand; they are printed as they run):
1. `python -m training.synth`: rendered words (matplotlib's fonts, varied sizes, colours, rotation, blur, noise); the
   test words never occur in training.
2. A small random CLIP (`CLIPModel` with random weights, and a byte-level CLIP BPE tokenizer written here) is saved,
   so that `run_str.py` can start from it exactly as it starts from `openai/clip-vit-base-patch16`.
3. `python -m training.run_str --clip_model_name_or_path <random CLIP> --image_size 32 128 ...` trains CLIP4STR on
   the train split (one thread for the model, one data-loader worker: see `--threads`).
4. `python -m training.evaluate_str --model <trained> --data-source hub --data held-out=<data> --split test` scores
   it on the held-out words.
5. A grid of test images with predictions and confidences is written to `<output-dir>/predictions.png`.

With `--language vi` the words are made-up Vietnamese words (one or two syllables, each with one of the six tones, in
lower, capitalised or upper case), the charset is built from the training labels by
`python -m training.tools.build_charset` (step 1b) and given to `run_str.py --charset_file`, and the evaluation scores
on that charset (tone marks included) and splits the character errors into base letters and diacritics.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The recipe: settings found to reach >= 90% word accuracy on held-out words within the time budget on 2 CPU cores
# (see the README for the measured numbers).
# Words are drawn left-aligned at their natural width ("left" layout): a tiny model from random weights finds the
# characters several times sooner than when every word is stretched to the full image width.
# Pillow's basic text layout is pinned: Pillow uses raqm only where it finds FriBiDi at run time, and the two engines
# place glyphs differently, so the same seed would render other images (and train another model) on another machine.
DATA = dict(num_train=80_000, num_test=1_000, min_len=3, max_len=8, augment=0.25, colors="dark-on-light",
            layout="left", fonts="DejaVu", layout_engine="basic")
# The model reads the 32x128 images as rendered: a 4x16 patch grid, its position table resized from the tower's 8x8
# one. (Squeezed into 64x64 squares, eight patch columns had to hold up to eight characters.)
CLIP = dict(image_size=64, patch_size=8, vision_width=64, vision_layers=2, text_width=32, text_layers=1,
            projection_dim=64, position_scale=0.5, input_size=(32, 128))
# Two orders per batch (left-to-right and its mirror): on 2 cores, more samples per second beat more orders per sample.
# The model then reads without refinement (refine_iters 0): a cloze pass shows each position every other character,
# a context that these two orders never train (PARSeq's refinement relies on random orders among its K). Measured
# on the held-out words, refinement cost 0 to 1.3 points in English and 2 to 12 in Vietnamese (README).
TRAIN = dict(max_steps=11000, batch_size=32, learning_rate=2e-3, decoder_heads=2, perm_num=2, refine_iters=0)

# The Vietnamese recipe, from the English one: the same small CLIP and optimiser; words of 1 to 10 characters (a
# syllable has 1 to 7; longer words are rare and are drawn again), about five times as many classes (the charset is
# built from the training labels: 89 letters in each case when all occur), hence more images. Captions keep
# the whole Vietnamese charset (the English demo's captions also keep its whole charset): with the 36-character
# default the cross-modal branch would see "tiếng" as "ting".
# Pillow's basic text layout is pinned, as for English.
DATA_VI = dict(num_train=100_000, num_test=1_000, min_len=1, max_len=10, augment=0.25, colors="dark-on-light",
               layout="left", fonts="DejaVu", layout_engine="basic")
# 10,000 steps, read without refinement. Measured (README): seed 0 86.2 % in 21.9 minutes on an idle 2-core machine,
# seed 1 86.2 %, seed 2 69.6 % (the dot-below tone half-learnt): the goal (85 % within 25 minutes) holds for the
# shipped seed, not for every seed.
TRAIN_VI = dict(max_steps=10000, batch_size=32, learning_rate=2e-3, decoder_heads=2, perm_num=2, refine_iters=0)
RECIPES = {"en": (DATA, TRAIN), "vi": (DATA_VI, TRAIN_VI)}
CHARSET_EN = "0123456789abcdefghijklmnopqrstuvwxyz"


def byte_level_clip_tokenizer(directory: Path) -> Path:
    """Write a CLIP BPE tokenizer with no merges: every byte is a token (alone or word-final), plus the start and end
    tokens. A random text tower needs no particular vocabulary, and this one needs no download."""
    bytes_ = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    characters, extra = list(bytes_), 0
    for byte in range(256):  # the printable stand-ins CLIP (like GPT-2) uses for the other bytes
        if byte not in bytes_:
            characters.append(256 + extra)
            extra += 1
    symbols = [chr(code) for code in characters]
    vocab = {}
    for symbol in symbols + [symbol + "</w>" for symbol in symbols] + ["<|startoftext|>", "<|endoftext|>"]:
        vocab[symbol] = len(vocab)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return directory


def random_clip(directory: Path, seed: int) -> Path:
    """Save a small `CLIPModel` with random weights and its tokenizer files, like a Hub CLIP checkpoint."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from modeling_clip4str import clip_tower_config

    byte_level_clip_tokenizer(directory)
    vocab_size = len(CLIPTokenizer.from_pretrained(directory))
    torch.manual_seed(seed)

    def tower(width, layers):
        # Heads of 32 channels instead of CLIP's 64: a tower this narrow would otherwise have a single head.
        return clip_tower_config(width, layers, num_attention_heads=max(1, width // 32))

    config = CLIPConfig(
        vision_config=dict(tower(CLIP["vision_width"], CLIP["vision_layers"]), image_size=CLIP["image_size"],
                           patch_size=CLIP["patch_size"]),
        text_config=dict(tower(CLIP["text_width"], CLIP["text_layers"]), vocab_size=vocab_size,
                         max_position_embeddings=77, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1),
        projection_dim=CLIP["projection_dim"],
    )
    clip = CLIPModel(config)
    # A random position table of std 0.02 hides where a patch is; a 2-D sine-cosine table makes the layout readable
    # from the first step (about a thousand steps sooner to the first correct words).
    grid = CLIP["image_size"] // CLIP["patch_size"]
    with torch.no_grad():
        table = clip.vision_model.embeddings.position_embedding.weight
        table.zero_()
        table[1:] = sincos_2d(CLIP["vision_width"], grid) * CLIP["position_scale"]
    clip.save_pretrained(directory)
    return directory


def sincos_2d(width: int, grid: int):
    """Sine-cosine positions `[grid * grid, width]` for a row-major patch grid: half of the channels encode the row,
    half the column, at geometrically spaced frequencies."""
    import torch

    if width % 4:
        raise ValueError(f"A 2-D sine-cosine table needs a width divisible by 4, got {width}.")
    frequencies = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float64) / (width // 4))
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")

    def encode(coordinate):
        angles = coordinate.reshape(-1, 1).double() * frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


def run(command: list[str], log: Path, threads: int | None = None) -> float:
    """Run a step, echoing it, with its output also saved to `log`. Returns the seconds it took."""
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    env = dict(os.environ)  # the steps run as modules from the repository root (`python -m training.x`)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        for line in process.stdout:
            handle.write(line)
            if "it/s]" not in line and "s/it]" not in line:  # keep progress bars out of the console
                print("  " + line.rstrip(), flush=True)
        if process.wait() != 0:
            raise SystemExit(f"Step failed (exit {process.returncode}); see {log}.")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--language", choices=sorted(RECIPES), default="en",
                        help="en: 0-9a-z words (the README's recipe); vi: Vietnamese words with tone marks")
    parser.add_argument("--output-dir", default=None, help="default: demo_output (en), demo_output/vi (vi)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument("--learning-rate", type=float, default=None, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--num-train", type=int, default=None, help="training images (default: the recipe's)")
    parser.add_argument("--num-test", type=int, default=None, help="held-out test images (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of the training process. One thread for the model and one for the data "
                             "loader suit 2 cores: with more threads than free cores, small matrix products stall.")
    args = parser.parse_args()
    data_recipe, train_recipe = RECIPES[args.language]
    max_steps = train_recipe["max_steps"] if args.max_steps is None else args.max_steps
    learning_rate = train_recipe["learning_rate"] if args.learning_rate is None else args.learning_rate
    num_train = data_recipe["num_train"] if args.num_train is None else args.num_train
    num_test = data_recipe["num_test"] if args.num_test is None else args.num_test
    default_dir = "demo_output" if args.language == "en" else f"demo_output/{args.language}"
    out = Path(args.output_dir or default_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    start = time.perf_counter()

    data = out / "data"
    synth = [sys.executable, "-m", "training.synth", str(data), "--num-train", str(num_train),
             "--num-test", str(num_test), "--min-len", str(data_recipe["min_len"]),
             "--max-len", str(data_recipe["max_len"]), "--augment", str(data_recipe["augment"]),
             "--colors", data_recipe["colors"], "--layout", data_recipe["layout"], "--fonts", data_recipe["fonts"],
             "--seed", str(args.seed)]
    if args.language != "en":
        synth += ["--language", args.language]
    synth += ["--layout-engine", data_recipe["layout_engine"]]
    times["data"] = run(synth, out / "synth.log")

    if args.language == "en":
        charset_options = ["--charset", CHARSET_EN]
    else:
        # The model reads the characters of its training labels (NFC, code-point order).
        charset_file = out / "charset.txt"
        times["charset"] = run([sys.executable, "-m", "training.tools.build_charset", str(data), "--output",
                                str(charset_file), "--report", str(out / "charset_counts.tsv")], out / "charset.log")
        charset = charset_file.read_text(encoding="utf-8").strip("\n")
        charset_options = ["--charset_file", str(charset_file), "--caption_charset", charset]

    clip_dir = random_clip(out / "random-clip", args.seed)
    model_dir = out / "clip4str-demo"
    times["train"] = run([
        sys.executable, "-m", "training.run_str",
        "--clip_model_name_or_path", str(clip_dir),
        *charset_options, "--max_label_length", str(data_recipe["max_len"]),
        "--image_size", *(str(value) for value in CLIP["input_size"]),
        "--decoder_num_heads", str(train_recipe["decoder_heads"]), "--perm_num", str(train_recipe["perm_num"]),
        "--refine_iters", str(train_recipe["refine_iters"]),
        "--decoder_dropout", "0.0", "--num_frozen_text_layers", "-1",
        "--train_datasets", str(data), "--streaming", "true", "--augment", "false",
        "--output_dir", str(model_dir), "--overwrite_output_dir", "true",
        "--max_steps", str(max_steps), "--per_device_train_batch_size", str(train_recipe["batch_size"]),
        "--learning_rate", str(learning_rate), "--decoder_lr_multiplier", "1",
        "--scale_lr_by_batch", "false", "--weight_decay", "0.05",
        "--logging_steps", "250", "--save_strategy", "no", "--dataloader_num_workers", "1",
        "--seed", str(args.seed), "--disable_tqdm", "true", "--language", args.language,
    ], out / "train.log", threads=args.threads)

    results = out / "results.json"
    evaluate = [
        sys.executable, "-m", "training.evaluate_str", "--model", str(model_dir), "--data-source", "hub",
        "--data", f"held-out={data}", "--split", "test", "--batch-size", "100", "--no-progress",
        "--output-json", str(results), "--output-markdown", str(out / "results.md"),
    ]
    if args.language != "en":
        evaluate += ["--confusions", "20"]  # scored on the model's own charset: tone marks count
    times["evaluate"] = run(evaluate, out / "evaluate.log")

    scores = json.loads(results.read_text())
    accuracy = scores["combined"]["accuracy"]
    grid = write_grid(model_dir, data, out / "predictions.png", language=args.language)
    times["total"] = time.perf_counter() - start
    summary = {"held_out_word_accuracy": accuracy, "training_steps": max_steps, "learning_rate": learning_rate,
               "seconds": {key: round(value, 1) for key, value in times.items()}, "grid": str(grid)}
    if args.language != "en":
        protocol = scores["protocol"]
        summary = {"language": args.language, **summary, "one_minus_ned": scores["combined"]["one_minus_ned"],
                   "charset_size": len(protocol["charset"]), "protocol": protocol["charset_source"],
                   "character_errors": scores["confusions"]["kinds"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(summary, indent=2, ensure_ascii=False))


def write_grid(model_dir: Path, data: Path, path: Path, count: int = 24, language: str = "en") -> Path:
    import datasets
    import torch

    from training.loading import load_model_and_processor
    from training.visualize import save_prediction_grid

    test = datasets.load_dataset("parquet", data_files=sorted(str(p) for p in (data / "test").glob("*.parquet")),
                                 split="train")
    test = test.select(range(min(count, len(test))))  # a run with fewer held-out words shows them all
    model, processor = load_model_and_processor(str(model_dir))
    images, labels = list(test["image"]), list(test["text"])
    with torch.inference_mode():
        output = model.generate(**processor(images=images), return_dict_in_generate=True)
    decoded = processor.batch_decode(output, return_confidences=True)
    # The English demo is judged under the 36-character protocol; other languages on the model's own charset.
    charset = None if language == "en" else model.config.charset
    title = "CLIP4STR demo: held-out words" + ("" if language == "en" else f" ({language})")
    save_prediction_grid(images, labels, decoded["texts"], decoded["confidences"], path, title=title, charset=charset)
    return path


if __name__ == "__main__":
    main()
