"""`training/run_str.py` end to end: short runs from each kind of source, overfitting, resuming, corrupt data,
two processes with `accelerate launch`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import datasets
import pytest

from conftest import REPO, png_bytes_of, tiny_clip_directory, word_image, write_lmdb

WORDS = ["cat", "dog", "sun", "tree", "bird", "fish", "moon", "star"]
CHARSET = "abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_str")
    clip, _ = tiny_clip_directory(root / "clip")
    records = [{"image": {"bytes": png_bytes_of(word_image(w)), "path": None}, "text": w} for w in WORDS * 2]
    table = datasets.Dataset.from_list(records).cast_column("image", datasets.Image())
    for split in ("train", "validation"):
        (root / "parquet" / split).mkdir(parents=True)
        table.to_parquet(str(root / "parquet" / split / "part-0.parquet"))
    write_lmdb(root / "lmdb" / "real" / "part1", [(png_bytes_of(word_image(w)), w) for w in WORDS])
    write_lmdb(root / "lmdb" / "real" / "part2", [(png_bytes_of(word_image(w)), w.upper()) for w in WORDS])
    folder = root / "folder" / "train"
    folder.mkdir(parents=True)
    with open(folder / "metadata.jsonl", "w") as handle:
        for index, word in enumerate(WORDS):
            word_image(word).save(folder / f"{index}.png")
            handle.write(json.dumps({"file_name": f"{index}.png", "text": word}) + "\n")
    return root, clip


def run_str(workspace, *arguments, launcher=(sys.executable,), as_module=False, timeout=400):
    root, clip = workspace
    script = ["-m", "training.run_str"] if as_module else [str(REPO / "training" / "run_str.py")]
    command = [
        *launcher, *script,
        "--clip_model_name_or_path", str(clip), "--charset", CHARSET, "--max_label_length", "8",
        "--decoder_num_heads", "4", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
        "--learning_rate", "1e-3", "--scale_lr_by_batch", "false", "--dataloader_num_workers", "0",
        "--logging_steps", "1", "--seed", "0", *arguments,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    return result


def trainer_state(directory):
    return json.loads((directory / "trainer_state.json").read_text())


@pytest.mark.parametrize("source", ["parquet", "lmdb", "folder"])
def test_few_steps_from_each_kind_of_source(workspace, source):
    root, _ = workspace
    out = root / f"out-{source}"
    # The folder run also reads wide images (16x64) with the 32x32 tower, its position table resized.
    wide = ["--image_size", "16", "64"] if source == "folder" else []
    # The LMDB run starts the script as a module (`python -m training.run_str`), the others by its path.
    run_str(workspace, "--train_datasets", str(root / source), "--output_dir", str(out), "--max_steps", "3",
            "--augment", "true" if source == "parquet" else "false", *wide, as_module=source == "lmdb")
    state = trainer_state(out)
    assert state["global_step"] == 3
    assert any("loss" in entry for entry in state["log_history"])
    from transformers import AutoModel, AutoProcessor

    import modeling_clip4str  # noqa: F401

    model = AutoModel.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert model.config.charset == CHARSET
    inputs = processor(images=[word_image("cat")])
    assert inputs["pixel_values"].shape[-2:] == ((16, 64) if wide else (32, 32))
    assert model.config.image_input_size == tuple(inputs["pixel_values"].shape[-2:])
    ids = model.generate(**inputs)
    assert isinstance(processor.batch_decode(ids)[0], str)


def test_loss_falls_when_overfitting_one_batch(workspace):
    root, _ = workspace
    out = root / "out-overfit"
    run_str(workspace, "--train_datasets", str(root / "lmdb" / "real" / "part1"), "--output_dir", str(out),
            "--max_steps", "40", "--per_device_train_batch_size", "8", "--augment", "false",
            "--shuffle_buffer_size", "0", "--learning_rate", "3e-3", "--decoder_lr_multiplier", "1",
            "--decoder_dropout", "0.0",
            "--save_strategy", "no")
    losses = [entry["loss"] for entry in trainer_state(out)["log_history"] if "loss" in entry]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses


def test_stopped_run_resumes_at_the_same_step(workspace):
    import shutil

    root, _ = workspace
    out = root / "out-resume"
    common = ["--train_datasets", str(root / "parquet"), "--output_dir", str(out), "--save_steps", "2",
              "--augment", "false", "--max_steps", "4"]
    run_str(workspace, *common)
    uninterrupted = {e["step"]: e["loss"] for e in trainer_state(out)["log_history"] if "loss" in e}
    # Make it look as if the run had stopped right after its first checkpoint.
    shutil.rmtree(out / "checkpoint-4")
    (out / "trainer_state.json").unlink()
    result = run_str(workspace, *common)
    state = trainer_state(out)
    assert state["global_step"] == 4
    assert "checkpoint-2" in result.stdout + result.stderr  # it said where it resumed from
    resumed = {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}
    assert sorted(resumed) == [1, 2, 3, 4]  # steps 1-2 restored from the checkpoint, 3-4 trained again
    for step in (3, 4):  # same data, same random orders: the same losses as without the stop
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-4)


def test_corrupt_image_is_skipped_and_counted(workspace):
    root, _ = workspace
    samples = [(png_bytes_of(word_image(w)), w) for w in WORDS]
    samples[3] = (b"\x89PNG\r\n\x1a\n truncated", "tree")
    samples[5] = (samples[5][0], "fish!")  # "!" is not in the charset: removed, and counted
    write_lmdb(root / "corrupt", samples)
    out = root / "out-corrupt"
    run_str(workspace, "--train_datasets", str(root / "corrupt"), "--output_dir", str(out), "--max_steps", "4",
            "--augment", "false", "--save_strategy", "no", "--shuffle_buffer_size", "0",
            "--eval_datasets", str(root / "corrupt"), "--dataloader_num_workers", "2")
    history = trainer_state(out)["log_history"]
    skipped = max(entry.get("data/undecodable_image", 0) for entry in history)
    assert skipped >= 1
    assert max(entry.get("data/removed_characters", 0) for entry in history) >= 1
    assert trainer_state(out)["global_step"] == 4
    # Evaluation reads every record once, in worker processes: the corrupt one is counted, not replaced by another.
    metrics = json.loads((out / "eval_results.json").read_text())
    assert metrics["eval_data/undecodable_image"] == 1 and metrics["eval_data/kept"] == len(WORDS) - 1
    assert metrics["eval_data/removed_characters"] == 1
    assert metrics["eval_num_samples"] == len(WORDS) - 1


def test_two_processes_with_accelerate_launch(workspace):
    root, _ = workspace
    out = root / "out-ddp"
    # accelerate's torchrun launcher (`--multi_gpu`) also serves CPU processes; run_str.py picks gloo on the CPU.
    launcher = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")
    run_str(workspace, "--train_datasets", str(root / "parquet"), "--eval_datasets", str(root / "parquet"),
            "--output_dir", str(out), "--max_steps", "2", "--augment", "false", "--save_strategy", "no",
            "--eval_strategy", "steps", "--eval_steps", "2", launcher=launcher)
    assert json.loads((out / "run_str_args.json").read_text())["world_size"] == 2
    state = trainer_state(out)
    assert state["global_step"] == 2
    assert any("eval_word_accuracy" in entry for entry in state["log_history"])
