"""Resuming from the last complete checkpoint: finding it, atomic saves (also under SIGKILL), data counters across a
resume, and extending a finished one-cycle run. Real checkpoints come from tiny `Trainer` runs on CPU."""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainingArguments, default_data_collator
from transformers.trainer_utils import get_last_checkpoint

from conftest import kill_when_file_appears
from training.train.checkpoints import (
    BrokenCheckpointError,
    DataStateCallback,
    ResumableCheckpointsMixin,
    checkpoint_problems,
    find_resumable_checkpoint,
    stretch_one_cycle,
    verify_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]
NUM_EXAMPLES = 16


class TinyRegression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, inputs, labels=None):
        prediction = self.linear(inputs).squeeze(-1)
        return {"loss": torch.nn.functional.mse_loss(prediction, labels), "logits": prediction}


def examples() -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(NUM_EXAMPLES, 4, generator=generator)
    labels = inputs.sum(-1)
    return [{"inputs": x, "labels": y} for x, y in zip(inputs, labels)]


class StreamOfExamples(torch.utils.data.IterableDataset):
    """An iterable dataset (as streamed data is): the Trainer re-reads it to skip to a resumed step."""

    def __iter__(self):
        return iter(examples())


class OneCycleTrainer(ResumableCheckpointsMixin, Trainer):
    """The one-cycle schedule of training/train/trainer.py (one max_lr per group, no momentum cycling)."""

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            optimizer = optimizer if optimizer is not None else self.optimizer
            self.lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[group["lr"] for group in optimizer.param_groups],
                total_steps=max(1, num_training_steps), pct_start=0.5, cycle_momentum=False,
            )
        return self.lr_scheduler


class PlainOneCycleTrainer(Trainer):
    create_scheduler = OneCycleTrainer.create_scheduler


class SlowSaveProcessor:
    """A processing class whose `save_pretrained` (called by the Trainer between the weights and the optimizer)
    announces itself in `signal_file` and then hangs, for the save of `checkpoint-<slow_step>` only."""

    def __init__(self, signal_file: str, slow_step: int):
        self.signal_file = signal_file
        self.slow_step = slow_step

    def save_pretrained(self, directory, **kwargs):
        if os.path.basename(os.path.normpath(directory)) == f"checkpoint-{self.slow_step}":
            Path(self.signal_file).write_text(str(directory))
            time.sleep(600)


def training_arguments(output_dir, **overrides) -> TrainingArguments:
    values = dict(
        output_dir=str(output_dir), max_steps=4, save_steps=2, per_device_train_batch_size=2, learning_rate=0.05,
        logging_steps=1, report_to="none", use_cpu=True, disable_tqdm=True, seed=0, dataloader_num_workers=0,
    )
    values.update(overrides)
    return TrainingArguments(**values)


def tiny_trainer(output_dir, trainer_class=OneCycleTrainer, train_dataset=None, **overrides):
    torch.manual_seed(0)
    return trainer_class(
        model=TinyRegression(),
        args=training_arguments(output_dir, **overrides),
        train_dataset=train_dataset if train_dataset is not None else examples(),
        data_collator=default_data_collator,
    )


def losses(trainer) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}


def learning_rates(trainer) -> dict[int, float]:
    return {entry["step"]: entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 4-step run with checkpoints at steps 2 and 4: (output_dir, trainer)."""
    output_dir = tmp_path_factory.mktemp("finished") / "run"
    trainer = tiny_trainer(output_dir)
    trainer.train()
    return output_dir, trainer


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A copy of the finished run's output directory, free to damage."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run[0], copy)
    return copy


def truncate(path: Path, by: int) -> int:
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size - by)
    return size


def test_complete_checkpoints_are_found(finished_run):
    output_dir, _ = finished_run
    assert sorted(p.name for p in output_dir.iterdir() if p.name.startswith(("checkpoint", "_"))) == [
        "checkpoint-2", "checkpoint-4",
    ]
    for name in ("checkpoint-2", "checkpoint-4"):
        assert checkpoint_problems(str(output_dir / name)) == []
    search = find_resumable_checkpoint(str(output_dir))
    assert search.checkpoint == str(output_dir / "checkpoint-4")
    assert search.skipped == [] and search.unfinished_saves == []


def test_truncated_weights_are_named_and_the_previous_checkpoint_is_chosen(run_copy):
    weights = run_copy / "checkpoint-4" / "model.safetensors"
    size = truncate(weights, by=10)
    # The Trainer's own choice would be the broken folder.
    assert get_last_checkpoint(str(run_copy)) == str(run_copy / "checkpoint-4")

    search = find_resumable_checkpoint(str(run_copy))
    assert search.checkpoint == str(run_copy / "checkpoint-2")
    assert [str(skipped) for skipped in search.skipped] == [
        f"checkpoint-4: model.safetensors is truncated (header says {size} bytes, file has {size - 10})"
    ]
    assert search.messages()[0].startswith("Not resuming from checkpoint-4: model.safetensors is truncated")


def test_an_explicit_broken_checkpoint_is_refused_naming_the_file(run_copy):
    truncate(run_copy / "checkpoint-4" / "optimizer.pt", by=100)
    with pytest.raises(BrokenCheckpointError, match=r"checkpoint-4: optimizer\.pt is truncated"):
        verify_checkpoint(str(run_copy / "checkpoint-4"))
    trainer = tiny_trainer(run_copy)
    with pytest.raises(BrokenCheckpointError, match=r"optimizer\.pt is truncated") as raised:
        trainer.train(resume_from_checkpoint=str(run_copy / "checkpoint-4"))
    assert "--resume_from_checkpoint" in str(raised.value)
    assert trainer.state.global_step == 0  # refused before anything was loaded


def test_a_checkpoint_without_trainer_state_is_skipped_and_the_run_resumes_before_it(run_copy, finished_run):
    (run_copy / "checkpoint-4" / "trainer_state.json").unlink()
    search = find_resumable_checkpoint(str(run_copy))
    assert search.checkpoint == str(run_copy / "checkpoint-2")
    assert str(search.skipped[0]).startswith("checkpoint-4: trainer_state.json is missing")

    trainer = tiny_trainer(run_copy)
    trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 4
    uninterrupted = losses(finished_run[1])
    assert losses(trainer) == pytest.approx(uninterrupted, rel=1e-5)  # steps 1-2 restored, 3-4 trained again
    # The new save of step 4 replaced the broken folder.
    assert checkpoint_problems(str(run_copy / "checkpoint-4")) == []
    assert not [p for p in run_copy.iterdir() if p.name.startswith("_")]


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda c: (c / "scheduler.pt").unlink(), "scheduler.pt is missing"),
        (lambda c: (c / "optimizer.pt").unlink(), "optimizer.pt is missing"),
        (lambda c: (c / "rng_state.pth").unlink(), "rng_state.pth is missing"),
        (lambda c: truncate(c / "rng_state.pth", by=1), "rng_state.pth is truncated"),
        (lambda c: (c / "model.safetensors").unlink(), "no model weights"),
        (lambda c: truncate(c / "trainer_state.json", by=20), "trainer_state.json cannot be read"),
        (
            lambda c: (c / "trainer_state.json").write_text(json.dumps({"global_step": 3})),
            "trainer_state.json says global_step 3, the folder name says 4",
        ),
    ],
)
def test_each_missing_or_damaged_file_is_named(run_copy, damage, expected):
    checkpoint = run_copy / "checkpoint-4"
    damage(checkpoint)
    problems = checkpoint_problems(str(checkpoint))
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    assert find_resumable_checkpoint(str(run_copy)).checkpoint == str(run_copy / "checkpoint-2")


def test_save_only_model_checkpoints_need_no_optimizer(run_copy):
    checkpoint = run_copy / "checkpoint-4"
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (checkpoint / name).unlink()
    assert checkpoint_problems(str(checkpoint), require_training_state=False) == []
    assert len(checkpoint_problems(str(checkpoint))) == 3


def test_sharded_weights_check_the_index_and_every_shard(tmp_path):
    from huggingface_hub import save_torch_state_dict

    checkpoint = tmp_path / "checkpoint-7"
    state_dict = {f"layer{i}.weight": torch.randn(64, 64) for i in range(4)}
    checkpoint.mkdir()
    save_torch_state_dict(state_dict, checkpoint, max_shard_size=20_000)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 7}))
    shards = sorted(p.name for p in checkpoint.glob("model-*.safetensors"))
    assert len(shards) >= 3 and (checkpoint / "model.safetensors.index.json").exists()
    assert checkpoint_problems(str(checkpoint), require_training_state=False) == []

    (checkpoint / shards[1]).unlink()
    size = truncate(checkpoint / shards[2], by=4)
    assert checkpoint_problems(str(checkpoint), require_training_state=False) == [
        f"{shards[1]} is missing (listed in model.safetensors.index.json)",
        f"{shards[2]} is truncated (header says {size} bytes, file has {size - 4})",
    ]


@pytest.mark.slow
def test_a_save_killed_midway_leaves_no_final_checkpoint_and_the_next_run_resumes(tmp_path, finished_run):
    output_dir, signal_file, log = tmp_path / "run", tmp_path / "saving", tmp_path / "log.txt"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, __file__, str(output_dir), str(signal_file)], cwd=REPO, env=env,
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    def saving_half_way():
        saving_into = Path(signal_file.read_text())
        assert saving_into == output_dir / "_incomplete-checkpoint-4" / "checkpoint-4"
        assert (saving_into / "model.safetensors").exists()  # half-way: weights written, optimizer not yet
        assert not (saving_into / "optimizer.pt").exists()

    kill_when_file_appears(process, signal_file, log, 240, "the save of checkpoint-4", before_kill=saving_half_way)

    assert not (output_dir / "checkpoint-4").exists()
    assert get_last_checkpoint(str(output_dir)) == str(output_dir / "checkpoint-2")  # even the Trainer's own pick
    search = find_resumable_checkpoint(str(output_dir))
    assert search.checkpoint == str(output_dir / "checkpoint-2")
    assert search.unfinished_saves == [str(output_dir / "_incomplete-checkpoint-4")]

    trainer = tiny_trainer(output_dir)
    trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 4
    assert losses(trainer) == pytest.approx(losses(finished_run[1]), rel=1e-5)
    assert sorted(p.name for p in output_dir.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert checkpoint_problems(str(output_dir / "checkpoint-4")) == []


def test_best_model_tracking_and_rotation_see_the_final_folders(tmp_path):
    scores = iter([0.1, 0.9, 0.2, 0.3, 0.4, 0.5])  # the second evaluation (step 2) is the best
    output_dir = tmp_path / "run"
    torch.manual_seed(0)
    trainer = OneCycleTrainer(
        model=TinyRegression(),
        args=training_arguments(
            output_dir, max_steps=6, save_steps=1, eval_strategy="steps", eval_steps=1, save_total_limit=2,
            load_best_model_at_end=True, metric_for_best_model="score", greater_is_better=True,
        ),
        train_dataset=examples(),
        eval_dataset=examples()[:4],
        data_collator=default_data_collator,
        compute_metrics=lambda prediction: {"score": next(scores)},
    )
    trainer.train()
    assert trainer.state.best_model_checkpoint == str(output_dir / "checkpoint-2")
    assert sorted(p.name for p in output_dir.iterdir() if p.is_dir()) == ["checkpoint-2", "checkpoint-6"]
    for name in ("checkpoint-2", "checkpoint-6"):
        state = json.loads((output_dir / name / "trainer_state.json").read_text())
        assert state["best_model_checkpoint"] == str(output_dir / "checkpoint-2")
    from safetensors.torch import load_file

    best_weights = load_file(output_dir / "checkpoint-2" / "model.safetensors")
    torch.testing.assert_close(trainer.model.state_dict(), best_weights)  # load_best_model_at_end found it


class ConsumptionCountingTrainer(OneCycleTrainer):
    """Counts the examples and batches it trains on, at the training step (as `CLIP4STRTrainer` counts its data),
    and carries the counts across resumes with a [`DataStateCallback`]."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.consumed = collections.Counter()
        self.data_state = DataStateCallback(read=lambda: self.consumed, restore=self._restore)
        self.add_callback(self.data_state)

    def _restore(self, counts):
        self.consumed = collections.Counter(counts)

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.consumed.update(kept=len(inputs["labels"]), batches=1)
        return super().training_step(model, inputs, num_items_in_batch)


@pytest.mark.parametrize("dataset", ["map-style", "iterable"])
def test_data_counters_continue_across_a_resume(tmp_path, dataset):
    def make_dataset():
        return examples() if dataset == "map-style" else StreamOfExamples()

    output_dir = tmp_path / "run"
    first = tiny_trainer(output_dir, trainer_class=ConsumptionCountingTrainer, train_dataset=make_dataset())
    first.train()
    assert first.consumed == {"kept": 8, "batches": 4}
    saved = json.loads((output_dir / "checkpoint-2" / "data_state.json").read_text())
    assert saved["counters"] == {"batches": 2, "kept": 4} and saved["global_step"] == 2

    shutil.rmtree(output_dir / "checkpoint-4")  # as if the run had stopped after step 2
    second = tiny_trainer(output_dir, trainer_class=ConsumptionCountingTrainer, train_dataset=make_dataset())
    second.train(resume_from_checkpoint=True)
    # The saved counts plus batches 3 and 4: the same as without the stop, also for the stream, whose batches 1-2 the
    # Trainer re-reads (without training on them) to reach step 2.
    assert second.consumed == {"kept": 8, "batches": 4}
    assert second.data_state.resumed_from == {
        "checkpoint": "checkpoint-2", "global_step": 2, "epoch": saved["epoch"], "counters": {"batches": 2, "kept": 4},
    }
    resumed = json.loads((output_dir / "checkpoint-4" / "data_state.json").read_text())
    assert resumed["counters"] == {"batches": 4, "kept": 8}
    assert resumed["resumes"] == [{"checkpoint": "checkpoint-2", "global_step": 2}]


def one_cycle(total_steps: int, max_lr=(0.1, 0.5)):
    parameters = [torch.nn.Parameter(torch.zeros(1)) for _ in max_lr]
    optimizer = torch.optim.AdamW([{"params": [p], "name": f"g{i}"} for i, p in enumerate(parameters)])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=list(max_lr), total_steps=total_steps, pct_start=0.075, cycle_momentum=False
    )
    return optimizer, scheduler


def advance(optimizer, scheduler, steps: int) -> list[tuple[float, ...]]:
    """The learning rates of every group after each of `steps` steps."""
    rates = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        rates.append(tuple(scheduler.get_last_lr()))
    return rates


def flat(rates) -> list[float]:
    return [rate for step in rates for rate in step]


def test_stretching_a_restored_one_cycle_follows_the_longer_schedule():
    optimizer, scheduler = one_cycle(20)
    advance(optimizer, scheduler, 20)
    saved_optimizer, saved_scheduler = optimizer.state_dict(), scheduler.state_dict()

    def restored_for(total_steps):
        """What a rerun with a new max_steps does: a new schedule, then the checkpoint's states on top."""
        optimizer, scheduler = one_cycle(total_steps)
        optimizer.load_state_dict(saved_optimizer)
        scheduler.load_state_dict(saved_scheduler)
        return optimizer, scheduler

    optimizer, restored = restored_for(40)
    with pytest.raises(ValueError, match="Tried to step 21 times. The specified number of total steps is 20"):
        advance(optimizer, restored, 1)

    optimizer, restored = restored_for(40)
    before = restored.get_last_lr()[0]
    message = stretch_one_cycle(restored, 40)
    planned_optimizer, planned = one_cycle(40)
    planned_rates = advance(planned_optimizer, planned, 40)
    assert restored.get_last_lr() == pytest.approx(list(planned_rates[19]))  # step 20 of 40, both groups
    assert flat(advance(optimizer, restored, 20)) == pytest.approx(flat(planned_rates[20:]))
    assert message == (
        "Continuing the one-cycle schedule stretched from 20 to 40 steps (as planned for 40 steps from the start: "
        f"warm-up over the first 7.5%, same peak and floor): lr at step 20 goes from {before:.3g} to "
        f"{planned_rates[19][0]:.3g} (group 'g0'); the other groups change in the same proportion."
    )
    assert stretch_one_cycle(restored, 40) is None


def test_a_finished_one_cycle_run_can_be_extended(tmp_path):
    # Without the stretch, the Trainer fails on the first step past the old total.
    plain_dir = tmp_path / "plain"
    tiny_trainer(plain_dir, trainer_class=PlainOneCycleTrainer).train()
    with pytest.raises(ValueError, match="Tried to step 5 times. The specified number of total steps is 4"):
        tiny_trainer(plain_dir, trainer_class=PlainOneCycleTrainer, max_steps=8).train(resume_from_checkpoint=True)

    output_dir = tmp_path / "run"
    tiny_trainer(output_dir).train()
    extended = tiny_trainer(output_dir, max_steps=8)
    extended.train(resume_from_checkpoint=True)
    assert extended.state.global_step == 8
    planned = tiny_trainer(tmp_path / "planned", max_steps=8)
    planned.train()
    planned_rates, extended_rates = learning_rates(planned), learning_rates(extended)
    steps = range(5, 9)
    assert [extended_rates[step] for step in steps] == pytest.approx([planned_rates[step] for step in steps])


def _train_until_killed(output_dir: str, signal_file: str) -> None:
    """The subprocess of the SIGKILL test: a 4-step run whose save of checkpoint-4 hangs half-way."""
    torch.manual_seed(0)
    trainer = OneCycleTrainer(
        model=TinyRegression(),
        args=training_arguments(output_dir),
        train_dataset=examples(),
        data_collator=default_data_collator,
        processing_class=SlowSaveProcessor(signal_file, slow_step=4),
    )
    trainer.train()


if __name__ == "__main__":
    _train_until_killed(sys.argv[1], sys.argv[2])
