"""`training/run_str.py` end to end: short runs from each kind of source, overfitting, resuming (after a stop, a
kill during a save, a corrupt checkpoint, with more steps), corrupt data, early stopping, what a run leaves in its
folder (several processes: tests/test_scale.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import datasets
import pytest

from conftest import REPO, kill_when_file_appears, png_bytes_of, tiny_clip_directory, word_image, write_lmdb

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
    # Streamed parquet with two undecodable images and labels the charset filter trims ("!"), for the data counts.
    broken = [{"image": {"bytes": png_bytes_of(word_image(w)), "path": None}, "text": w} for w in WORDS * 4]
    broken[5]["image"]["bytes"] = b"not an image"
    broken[11]["image"]["bytes"] = b"\x89PNG\r\n\x1a\n truncated"
    broken[9]["text"] = broken[9]["text"] + "!"
    broken[14]["text"] = "!" + broken[14]["text"] + "!"
    (root / "parquet-broken" / "train").mkdir(parents=True)
    datasets.Dataset.from_list(broken).cast_column("image", datasets.Image()).to_parquet(
        str(root / "parquet-broken" / "train" / "part-0.parquet")
    )
    folder = root / "folder" / "train"
    folder.mkdir(parents=True)
    with open(folder / "metadata.jsonl", "w") as handle:
        for index, word in enumerate(WORDS):
            word_image(word).save(folder / f"{index}.png")
            handle.write(json.dumps({"file_name": f"{index}.png", "text": word}) + "\n")
    return root, clip


def run_str_command(workspace, *arguments, launcher=(sys.executable,), script=None, as_module=False):
    """The command line of a tiny run_str.py run (`script`: another file that runs run_str's `main`), and its env."""
    root, clip = workspace
    if script is None:
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
    return command, env


def run_str(workspace, *arguments, launcher=(sys.executable,), as_module=False, timeout=400, expect_success=True):
    command, env = run_str_command(workspace, *arguments, launcher=launcher, as_module=as_module)
    result = subprocess.run(command, cwd=workspace[0], env=env, capture_output=True, text=True, timeout=timeout)
    if expect_success:
        assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    return result


def trainer_state(directory):
    return json.loads((directory / "trainer_state.json").read_text())


@pytest.mark.slow
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


@pytest.mark.slow
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


SECRET = "hf_not_a_real_token_0123456789"
# 4 steps of 4 examples from streamed parquet with broken records (in file order), a checkpoint every 2 steps.
RESUMABLE = ["--train_datasets", "parquet-broken", "--shuffle_buffer_size", "0", "--save_steps", "2", "--augment",
             "false", "--max_steps", "4"]


def losses_and_counts(state) -> dict[int, dict]:
    """{step: the loss and data/* counts logged at that step}."""
    return {
        entry["step"]: {key: value for key, value in entry.items() if key == "loss" or key.startswith("data/")}
        for entry in state["log_history"] if "loss" in entry
    }


@pytest.fixture(scope="module")
def uninterrupted(workspace):
    """The run every resumed run is compared with (also with tensorboard, a Hub token and an evaluation)."""
    root, _ = workspace
    out = root / "out-uninterrupted"
    result = run_str(workspace, *RESUMABLE, "--output_dir", str(out), "--eval_datasets", "parquet",
                     "--report_to", "tensorboard", "--token", SECRET, "--language", "en")
    return out, trainer_state(out), result


def resumable_copy(uninterrupted, tmp_path):
    """A copy of the uninterrupted run's folder to stop, damage or extend."""
    out = tmp_path / "run"
    shutil.copytree(uninterrupted[0], out)
    return out


def truncate(path, by: int):
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - by)


@pytest.mark.slow
def test_what_a_run_leaves_in_its_folder(uninterrupted):
    out, state, _ = uninterrupted
    logged = losses_and_counts(state)
    assert sorted(logged) == [1, 2, 3, 4]
    for step, entry in logged.items():
        # What was trained on by that step (4 examples a step), not what DataLoader workers had read ahead.
        assert entry["data/kept"] == 4 * step
    # The first 18 records fill the 4 batches: the two broken images are skipped, three "!" removed from labels.
    assert logged[2]["data/undecodable_image"] == 1 and "data/removed_characters" not in logged[2]
    assert logged[4]["data/undecodable_image"] == 2 and logged[4]["data/removed_characters"] == 3
    metrics = json.loads((out / "eval_results.json").read_text())
    assert metrics["eval_loss"] > 0 and metrics["eval_num_samples"] == 2 * len(WORDS)  # the validation split
    assert list(out.glob("runs/*/events.out.tfevents.*"))  # --report_to tensorboard wrote its event file

    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert card.data.model_name == out.name
    assert card.data.language in ("en", ["en"]) and "- **Language**: en." in card.text  # from --language
    assert [(entry.dataset_name, entry.metric_type) for entry in card.data.eval_results] == [
        (f"parquet (validation) ({2 * len(WORDS)})", "accuracy"), (f"parquet (validation) ({2 * len(WORDS)})", "1-ned"),
    ]
    assert "32x32 (height x width)" in card.text and CHARSET in card.text
    assert "`parquet-broken` (local data)" in card.text

    assert "token" not in json.loads((out / "run_str_args.json").read_text())["model"]
    for path in out.rglob("*"):  # --token is written nowhere
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_a_corrupt_last_checkpoint_is_named_and_the_run_resumes_before_it(workspace, uninterrupted, tmp_path):
    out = resumable_copy(uninterrupted, tmp_path)
    # As if the run had stopped while checkpoint-4 was being written by a Trainer without atomic saves.
    truncate(out / "checkpoint-4" / "model.safetensors", by=100)
    (out / "trainer_state.json").unlink()
    result = run_str(workspace, *RESUMABLE, "--output_dir", str(out))
    assert "Not resuming from checkpoint-4: model.safetensors is truncated" in result.stdout + result.stderr
    assert f"Resuming from {out / 'checkpoint-2'}" in result.stdout + result.stderr
    state = trainer_state(out)
    assert state["global_step"] == 4
    # Steps 1-2 restored, 3-4 trained again on the same data with the same orders: the same losses, and the data
    # counts (restored at step 2, then counted as steps 3-4 train) are those of the uninterrupted run.
    resumed, expected = losses_and_counts(state), losses_and_counts(uninterrupted[1])
    assert resumed.keys() == expected.keys()
    for step in expected:
        assert resumed[step].pop("loss") == pytest.approx(expected[step].pop("loss"), rel=1e-4)
        assert resumed[step] == expected[step]
    assert json.loads((out / "checkpoint-4" / "data_state.json").read_text())["resumes"] == [
        {"checkpoint": "checkpoint-2", "global_step": 2}
    ]


# Runs run_str.py with the processor's save (between the weights and the optimizer) hanging for one checkpoint.
HANGING_SAVE = """
import os, sys, time
from pathlib import Path

from modeling_clip4str import CLIP4STRProcessor

signal_file, hanging_checkpoint = sys.argv.pop(1), sys.argv.pop(1)
save_pretrained = CLIP4STRProcessor.save_pretrained


def hanging_save(self, directory, *args, **kwargs):
    if os.path.basename(os.path.normpath(directory)) == hanging_checkpoint:
        Path(signal_file).write_text(str(directory))
        time.sleep(600)
    return save_pretrained(self, directory, *args, **kwargs)


CLIP4STRProcessor.save_pretrained = hanging_save
from training.run_str import main

main()
"""


def _assert_exists(path):
    assert path.exists(), f"{path} is missing"


@pytest.mark.slow
def test_a_run_killed_while_saving_resumes_from_the_previous_checkpoint(workspace, uninterrupted, tmp_path):
    out, signal_file, script = tmp_path / "run", tmp_path / "saving", tmp_path / "hanging_save.py"
    script.write_text(HANGING_SAVE)
    command, env = run_str_command(workspace, *RESUMABLE, "--output_dir", str(out),
                                   script=[str(script), str(signal_file), "checkpoint-4"])
    with open(tmp_path / "log.txt", "wb") as log:
        process = subprocess.Popen(command, cwd=workspace[0], env=env, stdout=log, stderr=subprocess.STDOUT)
    kill_when_file_appears(
        process, signal_file, tmp_path / "log.txt", 300, "the save of checkpoint-4",
        before_kill=lambda: _assert_exists(out / "_incomplete-checkpoint-4" / "checkpoint-4" / "model.safetensors"),
    )
    assert sorted(path.name for path in out.iterdir() if path.name.startswith(("_", "checkpoint"))) == [
        "_incomplete-checkpoint-4", "checkpoint-2",
    ]

    result = run_str(workspace, *RESUMABLE, "--output_dir", str(out))
    output = result.stdout + result.stderr
    assert "Ignoring _incomplete-checkpoint-4: a save that never finished." in output
    assert f"Resuming from {out / 'checkpoint-2'}" in output
    assert sorted(path.name for path in out.iterdir() if path.name.startswith(("_", "checkpoint"))) == [
        "checkpoint-2", "checkpoint-4",
    ]
    resumed, expected = losses_and_counts(trainer_state(out)), losses_and_counts(uninterrupted[1])
    assert [resumed[step]["loss"] for step in (3, 4)] == pytest.approx([expected[step]["loss"] for step in (3, 4)],
                                                                       rel=1e-4)
    assert resumed[4]["data/kept"] == 16


@pytest.mark.slow
def test_a_finished_run_extended_with_more_steps_continues(workspace, uninterrupted, tmp_path):
    out = resumable_copy(uninterrupted, tmp_path)
    arguments = [*RESUMABLE[:-1], "6", "--output_dir", str(out)]  # --max_steps 6 instead of 4
    result = run_str(workspace, *arguments)
    output = result.stdout + result.stderr
    assert f"Resuming from {out / 'checkpoint-4'}" in output
    assert "Continuing the one-cycle schedule stretched from 4 to 6 steps" in output  # what happens to the lr
    logged = losses_and_counts(trainer_state(out))
    assert sorted(logged) == [1, 2, 3, 4, 5, 6]
    assert logged[6]["data/kept"] == 24


@pytest.mark.slow
def test_a_folder_whose_checkpoints_are_all_broken_is_not_silently_restarted(uninterrupted, tmp_path):
    from training.train.checkpoints import NoCompleteCheckpointError
    from training.run_str import STRTrainingArguments, resume_point

    out = resumable_copy(uninterrupted, tmp_path)
    truncate(out / "checkpoint-4" / "optimizer.pt", by=100)
    (out / "checkpoint-2" / "scheduler.pt").unlink()
    args = STRTrainingArguments(output_dir=str(out), use_cpu=True, report_to=[])
    with pytest.raises(NoCompleteCheckpointError) as raised:
        resume_point(args)
    message = str(raised.value)
    assert "every one is broken:\n  checkpoint-4: optimizer.pt is truncated" in message
    assert "\n  checkpoint-2: scheduler.pt is missing" in message and "--overwrite_output_dir" in message
    # Starting afresh is a choice the user makes.
    args = STRTrainingArguments(output_dir=str(out), use_cpu=True, report_to=[], overwrite_output_dir=True)
    assert resume_point(args) is None


@pytest.mark.slow
def test_early_stopping_on_word_accuracy(workspace):
    root, _ = workspace
    out = root / "out-early-stopping"
    run_str(workspace, "--train_datasets", str(root / "parquet"), "--eval_datasets", str(root / "parquet"),
            "--output_dir", str(out), "--max_steps", "12", "--augment", "false", "--save_strategy", "no",
            "--eval_strategy", "steps", "--eval_steps", "1", "--max_eval_samples", "4",
            "--early_stopping_patience", "1")
    state = trainer_state(out)
    evaluated = [entry["eval_word_accuracy"] for entry in state["log_history"] if "eval_word_accuracy" in entry]
    # Stopped at the first evaluation whose word accuracy was no better than the best before it.
    assert state["global_step"] < 12 and state["global_step"] == len(evaluated)
    assert evaluated[-1] <= max(evaluated[:-1])
    assert state["best_metric"] == max(evaluated)


def test_the_evaluation_split_falls_back_to_test_and_else_names_the_splits(tmp_path):
    from training.run_str import eval_split_of

    table = datasets.Dataset.from_list([{"image": None, "text": "a"}])
    for split in ("train", "test"):
        (tmp_path / "with-test" / split).mkdir(parents=True)
        table.to_parquet(str(tmp_path / "with-test" / split / "part-0.parquet"))
    (tmp_path / "train-only").mkdir()
    table.to_parquet(str(tmp_path / "train-only" / "part-0.parquet"))
    assert eval_split_of(str(tmp_path / "with-test"), None) == "test"
    assert eval_split_of(str(tmp_path / "with-test"), "train") == "train"
    with pytest.raises(ValueError, match=r"neither a validation nor a test split; its splits are \['train'\]"):
        eval_split_of(str(tmp_path / "train-only"), None)
    write_lmdb(tmp_path / "lmdb", [(None, "a")])
    assert eval_split_of(str(tmp_path / "lmdb"), None) is None  # LMDB has no splits


def test_load_best_model_at_end_chooses_by_word_accuracy():
    from training.run_str import STRTrainingArguments

    args = STRTrainingArguments(output_dir="unused", load_best_model_at_end=True, eval_strategy="steps",
                                save_steps=2, eval_steps=2, use_cpu=True, report_to=[])
    assert args.metric_for_best_model == "word_accuracy" and args.greater_is_better
    args = STRTrainingArguments(output_dir="unused", load_best_model_at_end=True, eval_strategy="steps",
                                save_steps=2, eval_steps=2, use_cpu=True, report_to=[], metric_for_best_model="loss")
    assert args.metric_for_best_model == "loss" and not args.greater_is_better


@pytest.mark.slow
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


def _assert_refused_as_onnx_export(directory, monkeypatch):
    """`--model_name_or_path` of an ONNX export is refused when the arguments are read (before any loading), naming
    what to pass instead; in code, `ModelArguments` refuses it likewise."""
    from training.run_str import ModelArguments, parse_arguments

    expected = (r"is an ONNX export \(it has clip4str_onnx\.json\): ONNX graphs cannot be trained.*Pass the PyTorch "
                r"model directory \(or Hub id\) it was exported from, the MODEL_DIR of `python -m "
                r"clip4str_onnx\.export_onnx MODEL_DIR OUT_DIR`")
    monkeypatch.setattr(sys, "argv", ["run_str.py", "--model_name_or_path", str(directory), "--train_datasets",
                                      "unused", "--max_steps", "1", "--output_dir", str(directory / "out")])
    with pytest.raises(ValueError, match=expected) as raised:
        parse_arguments()
    assert str(directory) in str(raised.value)
    with pytest.raises(ValueError, match=expected):
        ModelArguments(model_name_or_path=str(directory))


def test_an_onnx_export_is_refused_with_what_to_pass_instead(tmp_path, monkeypatch):
    """A directory that looks like an export (its description file, a config.json, no weights)."""
    from clip4str_onnx.onnx_clip4str import DESCRIPTION_FILE

    export = tmp_path / "model-onnx"
    export.mkdir()
    (export / DESCRIPTION_FILE).write_text(json.dumps({"format_version": 1, "graphs": {}}))
    (export / "config.json").write_text(json.dumps({"model_type": "clip4str"}))
    _assert_refused_as_onnx_export(export, monkeypatch)
    # Other directories (the PyTorch model beside it) and Hub ids pass on to loading.
    from training.run_str import ModelArguments

    (tmp_path / "model").mkdir()
    for source in (str(tmp_path / "model"), "someone/clip4str-b16"):
        assert ModelArguments(model_name_or_path=source).model_name_or_path == source


def test_a_real_onnx_export_is_refused(caption_tokenizer, tmp_path, monkeypatch):
    """What `export_onnx` writes for a tiny model is recognised (before the fix: AttributeError, 'CLIP4STROnnxModel'
    object has no attribute 'freeze_text_layers', after loading the graphs)."""
    pytest.importorskip("onnx", reason="the ONNX export needs `onnx` (pip install 'clip4str-hf[onnx]')")
    pytest.importorskip("onnxruntime", reason="the ONNX export needs `onnxruntime` (pip install 'clip4str-hf[onnx]')")
    import torch

    from conftest import make_model, make_processor
    from clip4str_onnx.export_onnx import export

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: a second thread only waits for a core on a shared machine
    try:
        model = make_model(caption_tokenizer)
        export(model, make_processor(model.config), tmp_path / "model-onnx", log=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    _assert_refused_as_onnx_export(tmp_path / "model-onnx", monkeypatch)
