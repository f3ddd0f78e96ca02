"""Training gives the same numbers however a step's batch is split: over processes (`accelerate launch`, each
process reading its own part of the stream), over gradient accumulation steps; and bf16 on the CPU.

How the runs see the same global batch: the one-process run reads 10 words of 3 to 12 characters from parquet, one
batch of 10 per step. With 2 processes, batches of 5, each process reads its own part of the stream:
- parquet: the same 10 words in 2 files, one per process (2 shards: each process gets whole shards);
- LMDB: the same 10 words and an 11th one, one shard per record; 11 shards do not divide by 2, so each process reads
  every record and keeps every second one: records 0, 2, ..., 10 and 1, 3, ..., 9. Their first batches are records
  0-9; then the first process has one record left and the second none, and both end the epoch together.
So step 1 trains on the same 10 words in every run. The parquet stream then ends in both processes, and step 2 trains
on the 10 words again (a new epoch).

The loss of a step is a sum over its words divided by the targets of the whole step, so it does not depend on how
the words are grouped, with one exception that the data are arranged around: the cross-modal branch reads the
caption of the visual branch's prediction over all the positions of the batch, up to its longest word, so a word's
loss changes a little (here ~1e-3) with the longest word of the batch it is in. Every batch of step 1 therefore
holds a word of 12 characters, the longest (one per parquet file; records 4 and 9 of the LMDB). At the second epoch
`datasets` visits the shards in another order, which keeps a 12-character word in each parquet file: step 2 is
compared for parquet only. What else could differ is fixed: no dropout (`--decoder_dropout 0`), one set of orders
(`--perm_num 2`: left to right and its mirror image), no augmentation, no shuffling, one seed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import datasets
import pytest

from conftest import REPO, png_bytes_of, tiny_clip_directory, word_image, write_lmdb

WORDS = ["cat", "tree", "house", "garden", "neighborhood",  # the first parquet shard: short words and a longest one
         "elephant", "chocolate", "basketball", "electricity", "refrigerator"]  # the second: long ones
GLOBAL_BATCH = len(WORDS)
TOLERANCE = 1e-4
# The evaluation data: the LMDB's 11 records and a corrupt image. In batches of 8 on 2 processes, the first process
# reads records 0-7, the second 8-11 and, to fill its batch, 0-3 again: only the second one skips a record.
EVAL_BATCH = 8
EVAL_CORRUPT_AT = 9
CORRUPT = (b"\x89PNG\r\n\x1a\n truncated", "broken")
TWO_PROCESSES = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    clip, _ = tiny_clip_directory(root / "clip")
    images = [png_bytes_of(word_image(word)) for word in WORDS]
    records = [{"image": {"bytes": data, "path": None}, "text": word} for data, word in zip(images, WORDS)]
    (root / "parquet").mkdir()
    half = GLOBAL_BATCH // 2
    for shard, part in enumerate((records[:half], records[half:])):
        table = datasets.Dataset.from_list(part).cast_column("image", datasets.Image())
        table.to_parquet(str(root / "parquet" / f"train-{shard:05d}-of-00002.parquet"))
    samples = list(zip(images, WORDS)) + [(png_bytes_of(word_image("sun")), "sun")]
    write_lmdb(root / "lmdb", samples)
    write_lmdb(root / "lmdb-eval", samples[:EVAL_CORRUPT_AT] + [CORRUPT] + samples[EVAL_CORRUPT_AT:])
    return root, clip


def train(workspace, name, source, *arguments, launcher=(sys.executable,), batch_size=GLOBAL_BATCH, steps=2):
    """Run training/run_str.py; returns {step: log entry} of its training log entries, and its other entries (the
    evaluations) under "others"."""
    root, clip = workspace
    out = root / name
    command = [
        *launcher, str(REPO / "training" / "run_str.py"),
        "--clip_model_name_or_path", str(clip), "--charset", "abcdefghijklmnopqrstuvwxyz", "--max_label_length", "12",
        "--decoder_num_heads", "4", "--decoder_dropout", "0", "--perm_num", "2",
        "--train_datasets", str(root / source), "--augment", "false", "--shuffle_buffer_size", "0",
        "--per_device_train_batch_size", str(batch_size), "--max_steps", str(steps), "--learning_rate", "1e-3",
        "--scale_lr_by_batch", "false", "--dataloader_num_workers", "0", "--logging_steps", "1",
        "--save_strategy", "no", "--report_to", "none", "--seed", "0", "--output_dir", str(out), *arguments,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:  # pytest.fail, unlike an assertion's repr, shows the whole text
        import pathlib, time
        pathlib.Path(f"/tmp/scale-fail-{time.time()}.log").write_text(result.stdout + "\n=====\n" + result.stderr)
        pytest.fail(f"{' '.join(command)}\nexit {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}\n"
                    f"--- stderr ---\n{result.stderr[-12000:]}", pytrace=False)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry for entry in history if "loss" in entry} | {
        "others": [entry for entry in history if "loss" not in entry]}


@pytest.fixture(scope="module")
def one_process(workspace):
    """The reference: one process, one batch of all 10 words per step (the words' order does not matter, so it
    serves both sources)."""
    return train(workspace, "one-process", "parquet")


def assert_same_numbers(logs, reference, steps=(1, 2)):
    assert [step for step in logs if step != "others"] == [step for step in reference if step != "others"] == [1, 2]
    for step in steps:  # step 2 also checks that step 1 changed the weights alike
        for key in ("loss", "grad_norm"):
            assert logs[step][key] == pytest.approx(reference[step][key], abs=TOLERANCE), (step, key, logs, reference)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["parquet", "lmdb"])
def test_two_processes_give_the_loss_and_gradients_of_one(workspace, one_process, source):
    root, _ = workspace
    # The LMDB run also evaluates (an LMDB has no splits to choose) on two processes, after its last step.
    evaluation = ["--eval_datasets", str(root / "lmdb-eval"), "--eval_strategy", "steps", "--eval_steps", "2",
                  "--per_device_eval_batch_size", str(EVAL_BATCH)]
    logs = train(workspace, f"two-processes-{source}", source, *(evaluation if source == "lmdb" else []),
                 launcher=TWO_PROCESSES, batch_size=GLOBAL_BATCH // 2)
    print(f"{source}: two processes {[(logs[s]['loss'], logs[s]['grad_norm']) for s in (1, 2)]}, one "
          f"{[(one_process[s]['loss'], one_process[s]['grad_norm']) for s in (1, 2)]}")
    assert_same_numbers(logs, one_process, steps=(1, 2) if source == "parquet" else (1,))
    # The data counters (of the batches trained on) are summed over the processes. At step 2 the LMDB processes
    # both start a new epoch (the first one leaves its 11th record): otherwise the first would train on that record
    # while the second starts its next epoch, processes out of step (1 + 5 new words instead of 10).
    assert logs[1]["data/kept"] == one_process[1]["data/kept"] == GLOBAL_BATCH
    assert logs[2]["data/kept"] == one_process[2]["data/kept"] == 2 * GLOBAL_BATCH
    assert json.loads((root / f"two-processes-{source}" / "run_str_args.json").read_text())["world_size"] == 2
    if source == "lmdb":
        # Each of the 11 usable records scored once, though the processes' batches were padded to 2 x 8 and only the
        # second process skipped a record (a batch of 7 against one of 8, had the skip left the batch).
        evaluations = [entry for entry in logs["others"] if "eval_word_accuracy" in entry]
        final = json.loads((root / f"two-processes-{source}" / "eval_results.json").read_text())
        for metrics in (*evaluations, final):
            assert metrics["eval_num_samples"] == GLOBAL_BATCH + 1 and metrics["eval_loss"] > 0
            # Every record counted once: the second process's repeated records 0-3 are not counted again.
            assert metrics["eval_data/kept"] == GLOBAL_BATCH + 1 and metrics["eval_data/undecodable_image"] == 1
            assert sum(count for key, count in metrics.items()
                       if key.startswith("eval_data/") and key != "eval_data/removed_characters") == GLOBAL_BATCH + 2
        assert len(evaluations) == 1


@pytest.mark.slow
def test_gradient_accumulation_gives_the_loss_and_gradients_of_the_whole_batch(workspace, one_process):
    logs = train(workspace, "accumulation", "parquet", "--gradient_accumulation_steps", "2",
                 batch_size=GLOBAL_BATCH // 2)
    print(f"accumulation {[(logs[s]['loss'], logs[s]['grad_norm']) for s in (1, 2)]}")
    assert_same_numbers(logs, one_process)


@pytest.mark.slow
def test_bf16_trains_on_the_cpu(workspace, one_process):
    logs = train(workspace, "bf16", "parquet", "--bf16", "true", steps=3)
    losses = [logs[step]["loss"] for step in (1, 2, 3)]
    print(f"bf16 losses {losses}, float32 {one_process[1]['loss']}")
    assert all(0 < loss < 10 for loss in losses)
    # Autocast really ran in bf16: 8-bit mantissas change the loss (measured: by 7e-5; without autocast it would be
    # the float32 loss to the bit), and it is still the same loss.
    difference = abs(losses[0] - one_process[1]["loss"])
    assert 1e-6 < difference < 0.01 * one_process[1]["loss"], (losses[0], one_process[1]["loss"])


def test_what_would_silently_not_happen_is_refused():
    from training.run_str import STRTrainingArguments

    with pytest.raises(ValueError, match="--fp16 needs a GPU"):  # accelerate would train in float32 on the CPU
        STRTrainingArguments(output_dir="unused", fp16=True, use_cpu=True, report_to=[])
    with pytest.raises(ValueError, match="--torch_compile is not supported"):
        STRTrainingArguments(output_dir="unused", torch_compile_backend="inductor", report_to=[])
    args = STRTrainingArguments(output_dir="unused", use_cpu=True, report_to=[])
    assert args.accelerator_config.dispatch_batches is False and args.ddp_find_unused_parameters is False
    assert args.dataloader_num_workers == 0 and not args.dataloader_pin_memory  # CPU: the cores and memory stay


def test_every_trainable_parameter_gets_a_gradient(caption_tokenizer):
    """Why DDP runs without find_unused_parameters: also with the text tower fully frozen (projection included)."""
    from conftest import make_model
    from modeling_clip4str import CLIP4STRProcessor

    words = ["a", "cat", "neighborhood"]
    for frozen in (-1, 1, 2):  # nothing, one layer, the whole 2-layer text tower
        model = make_model(caption_tokenizer, num_frozen_text_layers=frozen).train()
        processor = CLIP4STRProcessor.from_config(model.config)
        model(**processor(images=[word_image(word) for word in words], text=words)).loss.backward()
        trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
        assert trainable and [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
        assert any(name.startswith("text_") for name in trainable) == (frozen < 2)


def small_png(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    return png_bytes_of(Image.fromarray(pixels))


def test_each_process_reads_its_own_part_with_the_weights_and_counts_of_the_whole(tmp_path):
    from training.data import build_train_dataset

    def letters(index):
        return "".join("abcdefghij"[int(digit)] for digit in f"{index:03d}")

    # Records "xaab"... are unique; 2 of the first source's images do not decode.
    first = [(b"not an image" if i in (5, 12) else small_png(i), "x" + letters(i)) for i in range(40)]
    write_lmdb(tmp_path / "first", first)
    write_lmdb(tmp_path / "second", [(small_png(100 + i), "y" + letters(i)) for i in range(40)])
    options = dict(charset="abcdefghijxy", max_label_length=12, shuffle_buffer_size=0, seed=0)

    alone = build_train_dataset([str(tmp_path / "first")], **options)
    parts = [alone.split_by_node(rank, 2) for rank in (0, 1)]
    texts = [[example["text"] for example in part] for part in parts]
    assert set(texts[0]).isdisjoint(texts[1]) and len(texts[0]) + len(texts[1]) == 38  # each record once
    # The parts share the filter: its counts add up both processes' reading, each skip once.
    assert alone.stats["kept"] == 38 and alone.stats["undecodable_image"] == 2

    mixed = build_train_dataset([str(tmp_path / "first"), str(tmp_path / "second")], weights=[3, 1], **options)
    for rank in (0, 1):
        head = [example["text"][0] for example, _ in zip(mixed.split_by_node(rank, 2), range(40))]
        assert 24 <= head.count("x") <= 36, head  # sampled 3:1 in each process (measured: 30 of 40 in both)


def test_the_trainer_divides_by_the_targets_the_model_itself_counts(caption_tokenizer, tmp_path):
    """Labels are padded with [P], not -100: the Trainer's count must be the loss's targets, not label positions."""
    import torch

    from conftest import make_model
    from modeling_clip4str import CLIP4STRProcessor
    from training.data import STRDataCollator
    from training.run_str import STRTrainingArguments
    from training.train.trainer import CLIP4STRTrainer

    model = make_model(caption_tokenizer, perm_num=2).train()  # left to right and its mirror: no random orders
    processor = CLIP4STRProcessor.from_config(model.config)
    collator = STRDataCollator(processor, max_label_length=model.config.max_label_length)
    batches = [collator([{"image": word_image(word), "text": word} for word in words])
               for words in (["cat", "neighborhood"], ["tree", "elephant", "sun"])]
    args = STRTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = CLIP4STRTrainer(model=model, args=args, processing_class=processor, data_collator=collator)
    samples, num_items = trainer.get_batch_samples(iter(batches), 2, torch.device("cpu"))
    # [E] and the characters, in both orders: 2 x (4 + 13) + 2 x (5 + 9 + 4)
    assert len(samples) == 2 and int(num_items) == 2 * (4 + 13) + 2 * (5 + 9 + 4)
    with torch.no_grad():
        summed = sum(trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items) for batch in batches)
        own = [model(**batch).loss for batch in batches]
    own_targets = [2 * (4 + 13), 2 * (5 + 9 + 4)]
    expected = sum(loss * targets for loss, targets in zip(own, own_targets)) / sum(own_targets)
    torch.testing.assert_close(summed, expected)  # the mean over every target of both batches
