"""Checkpoints a run can rely on when it resumes.

`Trainer` writes `checkpoint-N/` file by file, in place (weights, optimizer, scheduler, RNG states, and
`trainer_state.json` last), and `get_last_checkpoint` returns the highest `N` without looking inside. A run killed while
saving therefore leaves a `checkpoint-N` that the next run picks and then fails on (or, without `optimizer.pt` or
`scheduler.pt`, silently resumes with a fresh optimizer). This module

- tells a complete checkpoint from a broken one by reading it cheaply but truly ([`checkpoint_problems`],
  [`find_resumable_checkpoint`], [`verify_checkpoint`]);
- saves checkpoints atomically ([`ResumableCheckpointsMixin`]): everything is written under a temporary sibling folder
  that is renamed to `checkpoint-N` only once every process has finished writing;
- keeps what the Trainer's own checkpoint leaves out: counters such as the data counts of the batches trained on
  ([`DataStateCallback`]), and a one-cycle schedule whose run was extended to more steps ([`stretch_one_cycle`]).

    class MyTrainer(ResumableCheckpointsMixin, Seq2SeqTrainer): ...

    trainer = MyTrainer(..., callbacks=[DataStateCallback(read=counts_so_far, restore=set_counts)])
    trainer.train(resume_from_checkpoint=True)  # the newest complete checkpoint; broken ones are named and skipped
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback
from transformers.trainer import OPTIMIZER_NAME, SCALER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from transformers.utils import (
    ADAPTER_SAFE_WEIGHTS_NAME,
    ADAPTER_WEIGHTS_NAME,
    CONFIG_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
)

logger = logging.getLogger(__name__)

# A save in progress lives in `<output_dir>/_incomplete-checkpoint-N/checkpoint-N` until it is complete; a final folder
# about to be replaced by a new save of the same step is parked as `_replaced-checkpoint-N`. The leading "_" keeps
# both out of `get_last_checkpoint`, `sort_checkpoints` and the Trainer's Hub uploads (which ignore "_*").
STAGING_PREFIX = "_incomplete-"
REPLACED_PREFIX = "_replaced-"
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_LEFTOVER_NAME = re.compile(rf"^({re.escape(STAGING_PREFIX)}|{re.escape(REPLACED_PREFIX)}){PREFIX_CHECKPOINT_DIR}-\d+$")
DATA_STATE_NAME = "data_state.json"

# Bytes per element of the safetensors dtypes whose size is a whole number of bytes.
_SAFETENSORS_ITEM_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
# The safetensors format refuses headers larger than this; a larger length means the first 8 bytes are garbage.
_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024


# --------------------------------------------------------------------------------------------------------------------
# Reading a checkpoint folder
# --------------------------------------------------------------------------------------------------------------------


class BrokenCheckpointError(ValueError):
    """An explicitly requested checkpoint cannot be resumed from; the message names the files at fault."""

    def __init__(self, checkpoint: str, problems: list[str]):
        self.checkpoint = checkpoint
        self.problems = problems
        super().__init__(
            f"Cannot resume from {checkpoint}: {'; '.join(problems)}. Point --resume_from_checkpoint at another "
            "checkpoint, or leave it out to resume from the newest complete checkpoint of the output directory."
        )


class NoCompleteCheckpointError(ValueError):
    """A resume from an output directory none of whose checkpoints is complete; the message lists each with why."""

    def __init__(self, output_dir: str, skipped: list[SkippedCheckpoint]):
        self.output_dir = output_dir
        self.skipped = skipped
        if not skipped:
            super().__init__(f"No checkpoint to resume from in {output_dir}.")
            return
        listed = "".join(f"\n  {checkpoint}" for checkpoint in skipped)
        super().__init__(
            f"No complete checkpoint to resume from in {output_dir}; every one is broken:{listed}\n"
            "Not starting afresh on its own, which would throw the run away. To start afresh in this folder anyway, "
            "rerun with --overwrite_output_dir (new checkpoints replace the broken ones of the same step); to resume "
            "from a checkpoint kept elsewhere, give --resume_from_checkpoint PATH; or choose another --output_dir."
        )


def checkpoint_step(name: str) -> int | None:
    """N of a folder named `checkpoint-N`, else None."""
    match = _CHECKPOINT_NAME.match(os.path.basename(os.path.normpath(name)))
    return int(match.group(1)) if match else None


def checkpoint_problems(checkpoint_dir: str, *, require_training_state: bool = True) -> list[str]:
    """Everything that would make a resume from `checkpoint_dir` fail, or silently restart part of the training
    state; an empty list for a complete checkpoint.

    Reads only headers, zip directories and small JSON files: `trainer_state.json` must parse and (for a folder named
    `checkpoint-N`) hold `global_step` N; the weights (`model.safetensors`, or an index and every shard it lists, or
    their `.bin` / adapter equivalents) must be whole; with `require_training_state` (off for `save_only_model` runs)
    `optimizer.pt`, `scheduler.pt` and the RNG state(s) must be there and whole.
    DeepSpeed and FSDP folders are recognised; their engine-specific files are not inspected.
    """
    if not os.path.isdir(checkpoint_dir):
        return [f"{checkpoint_dir} is not a folder"]
    engine_layout = _engine_layout(checkpoint_dir)
    problems = _trainer_state_problems(checkpoint_dir)
    problems += _weights_problems(checkpoint_dir, engine_layout)
    if require_training_state:
        if engine_layout != "deepspeed":  # DeepSpeed keeps optimizer and scheduler inside global_stepN/
            problems += _optimizer_problems(checkpoint_dir, engine_layout)
        problems += _rng_problems(checkpoint_dir)
    for name in (CONFIG_NAME, DATA_STATE_NAME):  # read on resume when present
        if os.path.isfile(os.path.join(checkpoint_dir, name)):
            problems += _json_problems(checkpoint_dir, name)
    if os.path.isfile(os.path.join(checkpoint_dir, SCALER_NAME)):
        problems += _torch_file_problems(checkpoint_dir, SCALER_NAME)
    return problems


def verify_checkpoint(checkpoint_dir: str, *, require_training_state: bool = True) -> None:
    """Raise [`BrokenCheckpointError`] naming each broken or missing file if `checkpoint_dir` is not complete."""
    problems = checkpoint_problems(checkpoint_dir, require_training_state=require_training_state)
    if problems:
        raise BrokenCheckpointError(checkpoint_dir, problems)


@dataclass
class SkippedCheckpoint:
    """A checkpoint newer than the one chosen, and why it was not."""

    path: str
    problems: list[str]

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path))

    def __str__(self) -> str:
        return f"{self.name}: {'; '.join(self.problems)}"


@dataclass
class CheckpointSearch:
    """The outcome of [`find_resumable_checkpoint`]."""

    checkpoint: str | None
    """The newest complete checkpoint, or None."""
    skipped: list[SkippedCheckpoint] = field(default_factory=list)
    """Newer checkpoints that are not complete, newest first."""
    unfinished_saves: list[str] = field(default_factory=list)
    """Temporary folders of saves that never finished (ignored; [`remove_unfinished_saves`] deletes them)."""

    def messages(self) -> list[str]:
        """One line per skipped checkpoint and unfinished save, for the log."""
        lines = [f"Not resuming from {skipped}." for skipped in self.skipped]
        lines += [f"Ignoring {os.path.basename(path)}: a save that never finished." for path in self.unfinished_saves]
        return lines


def find_resumable_checkpoint(output_dir: str, *, require_training_state: bool = True) -> CheckpointSearch:
    """The newest `checkpoint-N` of `output_dir` that [`checkpoint_problems`] finds complete, with every newer one it
    skipped and why. Only checkpoints from the newest down to the first complete one are read."""
    if not os.path.isdir(output_dir):
        return CheckpointSearch(None)
    steps = {}
    unfinished = []
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if not os.path.isdir(path):
            continue
        if _LEFTOVER_NAME.match(name):
            unfinished.append(path)
        elif (step := checkpoint_step(name)) is not None:
            steps[path] = step
    search = CheckpointSearch(None, unfinished_saves=sorted(unfinished))
    for path in sorted(steps, key=steps.get, reverse=True):
        problems = checkpoint_problems(path, require_training_state=require_training_state)
        if not problems:
            search.checkpoint = path
            break
        search.skipped.append(SkippedCheckpoint(path, problems))
    return search


def remove_unfinished_saves(output_dir: str) -> list[str]:
    """Delete the temporary folders of saves that never finished; returns their paths."""
    if not os.path.isdir(output_dir):
        return []
    removed = []
    for name in sorted(os.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        if _LEFTOVER_NAME.match(name) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _engine_layout(checkpoint_dir: str) -> str | None:
    """The engine whose own checkpoint files the folder holds ("deepspeed" or "fsdp"), else None."""
    for name in os.listdir(checkpoint_dir):
        if name.startswith("global_step") and os.path.isdir(os.path.join(checkpoint_dir, name)):
            return "deepspeed"
        if name.startswith("pytorch_model_fsdp"):
            return "fsdp"
    return None


def _trainer_state_problems(checkpoint_dir: str) -> list[str]:
    path = os.path.join(checkpoint_dir, TRAINER_STATE_NAME)
    if not os.path.isfile(path):
        return [f"{TRAINER_STATE_NAME} is missing (the Trainer writes it last: an interrupted save?)"]
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return [f"{TRAINER_STATE_NAME} cannot be read ({error}): an interrupted save?"]
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return [f"{TRAINER_STATE_NAME} holds no global_step"]
    step = checkpoint_step(checkpoint_dir)
    if step is not None and state["global_step"] != step:
        return [f"{TRAINER_STATE_NAME} says global_step {state['global_step']}, the folder name says {step}"]
    return []


def _weights_problems(checkpoint_dir: str, engine_layout: str | None) -> list[str]:
    def exists(name):
        return os.path.isfile(os.path.join(checkpoint_dir, name))

    if exists(SAFE_WEIGHTS_INDEX_NAME):
        return _sharded_problems(checkpoint_dir, SAFE_WEIGHTS_INDEX_NAME, _safetensors_problems)
    if exists(SAFE_WEIGHTS_NAME):
        return _safetensors_problems(checkpoint_dir, SAFE_WEIGHTS_NAME)
    if exists(WEIGHTS_INDEX_NAME):
        return _sharded_problems(checkpoint_dir, WEIGHTS_INDEX_NAME, _torch_file_problems)
    if exists(WEIGHTS_NAME):
        return _torch_file_problems(checkpoint_dir, WEIGHTS_NAME)
    if exists(ADAPTER_SAFE_WEIGHTS_NAME):
        return _safetensors_problems(checkpoint_dir, ADAPTER_SAFE_WEIGHTS_NAME)
    if exists(ADAPTER_WEIGHTS_NAME):
        return _torch_file_problems(checkpoint_dir, ADAPTER_WEIGHTS_NAME)
    if engine_layout is not None:
        return []
    return [f"no model weights ({SAFE_WEIGHTS_NAME} or {SAFE_WEIGHTS_INDEX_NAME} is missing)"]


def _sharded_problems(checkpoint_dir: str, index_name: str, shard_problems) -> list[str]:
    try:
        with open(os.path.join(checkpoint_dir, index_name), encoding="utf-8") as handle:
            weight_map = json.load(handle)["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        return [f"{index_name} cannot be read ({error})"]
    if not shards:
        return [f"{index_name} lists no shards"]
    problems = []
    for shard in shards:
        if not os.path.isfile(os.path.join(checkpoint_dir, shard)):
            problems.append(f"{shard} is missing (listed in {index_name})")
        else:
            problems += shard_problems(checkpoint_dir, shard)
    return problems


def _safetensors_problems(checkpoint_dir: str, name: str) -> list[str]:
    """A safetensors file is 8 bytes of header length, a JSON header giving each tensor's byte range, then the data;
    the file must end exactly where the last range ends."""
    path = os.path.join(checkpoint_dir, name)
    size = os.path.getsize(path)
    if size < 8:
        return [f"{name} is truncated ({size} bytes, not even the 8-byte header length)"]
    with open(path, "rb") as handle:
        (header_length,) = struct.unpack("<Q", handle.read(8))
        if header_length > _SAFETENSORS_MAX_HEADER:
            return [f"{name} is not a safetensors file (it declares a {header_length}-byte header)"]
        if 8 + header_length > size:
            return [f"{name} is truncated (its header alone needs {8 + header_length} bytes, file has {size})"]
        raw_header = handle.read(header_length)
    try:
        header = json.loads(raw_header)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return [f"{name} has an unreadable header ({error})"]
    if not isinstance(header, dict):
        return [f"{name} has an unreadable header (not a JSON object)"]
    data_end = 0
    for tensor_name, entry in header.items():
        if tensor_name == "__metadata__":
            continue
        try:
            begin, end = (int(offset) for offset in entry["data_offsets"])
            shape = [int(dim) for dim in entry["shape"]]
            dtype = entry["dtype"]
        except (KeyError, TypeError, ValueError):
            return [f"{name} has an unreadable header entry for {tensor_name!r}"]
        item_size = _SAFETENSORS_ITEM_SIZES.get(dtype)
        if end < begin or (item_size is not None and end - begin != math.prod(shape) * item_size):
            return [f"{name} has inconsistent byte offsets for {tensor_name!r}"]
        data_end = max(data_end, end)
    expected = 8 + header_length + data_end
    if size < expected:
        return [f"{name} is truncated (header says {expected} bytes, file has {size})"]
    if size > expected:
        return [f"{name} has {size - expected} bytes beyond what its header describes (header says {expected})"]
    return []


def _torch_file_problems(checkpoint_dir: str, name: str) -> list[str]:
    """`torch.save` writes a zip archive whose directory comes last: a file cut short has no directory."""
    path = os.path.join(checkpoint_dir, name)
    size = os.path.getsize(path)
    if size == 0:
        return [f"{name} is empty"]
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic[:1] == b"\x80":
        return []  # the legacy (pre-zip) pickle format: it has no directory to check
    if magic != b"PK":
        return [f"{name} is not a torch.save file"]
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        return [f"{name} is truncated or damaged ({size} bytes; {error})"]
    if any(entry.header_offset + entry.compress_size > size for entry in entries):
        return [f"{name} is truncated (its directory points past its {size} bytes)"]
    return []


def _json_problems(checkpoint_dir: str, name: str) -> list[str]:
    try:
        with open(os.path.join(checkpoint_dir, name), encoding="utf-8") as handle:
            json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return [f"{name} cannot be read ({error})"]
    return []


def _optimizer_problems(checkpoint_dir: str, engine_layout: str | None) -> list[str]:
    """The Trainer restores optimizer and scheduler only when both files exist, and otherwise says nothing."""
    problems = []
    optimizer_present = os.path.isfile(os.path.join(checkpoint_dir, OPTIMIZER_NAME))
    if optimizer_present:
        problems += _torch_file_problems(checkpoint_dir, OPTIMIZER_NAME)
    elif engine_layout != "fsdp" or not any("optimizer" in name for name in os.listdir(checkpoint_dir)):
        problems.append(f"{OPTIMIZER_NAME} is missing (the Trainer would silently start a fresh optimizer)")
    if os.path.isfile(os.path.join(checkpoint_dir, SCHEDULER_NAME)):
        problems += _torch_file_problems(checkpoint_dir, SCHEDULER_NAME)
    else:
        problems.append(
            f"{SCHEDULER_NAME} is missing (the Trainer would silently restart the optimizer and the schedule)"
        )
    return problems


def _rng_problems(checkpoint_dir: str) -> list[str]:
    """Every process saves its RNG state: `rng_state.pth` in a one-process run, `rng_state_<rank>.pth` otherwise.
    The number of processes may change between runs (the Trainer then logs and goes on), so ranks are only required
    to have no gaps; a missing last rank of an interrupted non-atomic save goes unnoticed."""
    names = set(os.listdir(checkpoint_dir))
    ranks = sorted(int(match.group(1)) for name in names if (match := re.fullmatch(r"rng_state_(\d+)\.pth", name)))
    if "rng_state.pth" in names:
        expected = ["rng_state.pth"]
    elif ranks:
        expected = [f"rng_state_{rank}.pth" for rank in range(ranks[-1] + 1)]
    else:
        return ["rng_state.pth is missing (the Trainer saves it before trainer_state.json: an interrupted save?)"]
    problems = []
    for name in expected:
        if name not in names:
            problems.append(f"{name} is missing (a process did not finish saving)")
        else:
            problems += _torch_file_problems(checkpoint_dir, name)
    return problems


# --------------------------------------------------------------------------------------------------------------------
# Atomic saves and checked resumes
# --------------------------------------------------------------------------------------------------------------------


class CheckpointStateCallback(TrainerCallback):
    """A callback that keeps its own file in every checkpoint: [`AtomicCheckpointsMixin`] calls `prepare_save` on
    every process, then `save_to` on the saving process while the checkpoint is still being written (so the file is
    part of the atomic save); [`CheckedResumeMixin`] calls `load_from` when a run resumes, before training starts."""

    def prepare_save(self, state) -> None:
        """Called on every process before `save_to`: gather here what is spread over processes."""

    def save_to(self, checkpoint_dir: str, state) -> None:
        raise NotImplementedError

    def load_from(self, checkpoint_dir: str) -> None:
        raise NotImplementedError


class AtomicCheckpointsMixin:
    """Mix into a `Trainer` subclass (before it): checkpoints appear complete or not at all.

    `_save_checkpoint` lets the Trainer write into `<output_dir>/_incomplete-checkpoint-N/checkpoint-N`, adds the
    files of [`CheckpointStateCallback`]s, waits for every process, and the saving process(es) rename the folder to
    `<output_dir>/checkpoint-N`. A process killed mid-save leaves only the `_incomplete-` folder, which resumes ignore.
    Best-model tracking, `save_total_limit` rotation and Hub pushes (`hub_strategy="checkpoint"`) act on the final
    folder.
    """

    _staging_root: str | None = None
    _push_after_publish: bool = False

    def _get_output_dir(self, trial):
        run_dir = super()._get_output_dir(trial)
        return self._staging_root if self._staging_root is not None else run_dir

    def _push_from_checkpoint(self, checkpoint_folder):
        if self._staging_root is not None:  # the upload runs in the background: start it once the folder is final
            self._push_after_publish = True
            return
        super()._push_from_checkpoint(checkpoint_folder)

    def _save_checkpoint(self, model, trial):
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_root = os.path.join(run_dir, STAGING_PREFIX + name)
        staged, final = os.path.join(staging_root, name), os.path.join(run_dir, name)
        self._staging_root, self._push_after_publish = staging_root, False
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        # The Trainer recorded a new best checkpoint under the folder it wrote to; point it at the final name.
        best = self.state.best_model_checkpoint
        best_moved = best is not None and _same_path(best, staged)
        if best_moved:
            self.state.best_model_checkpoint = final
        state_callbacks = checkpoint_state_callbacks(self)
        for callback in state_callbacks:
            callback.prepare_save(self.state)
        if self.args.should_save:
            if best_moved:
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
            for callback in state_callbacks:
                callback.save_to(staged, self.state)
        self.accelerator.wait_for_everyone()  # every process has written its files (e.g. its RNG state)
        if self.args.should_save:
            publish_checkpoint(staged, final)
        self.accelerator.wait_for_everyone()  # nobody looks for checkpoint-N before it exists
        if self.args.should_save:
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        if self._push_after_publish:
            self._push_after_publish = False
            super()._push_from_checkpoint(final)


class CheckedResumeMixin:
    """Mix into a `Trainer` subclass (before it): resume only from complete checkpoints, with the full run state.

    - `train(resume_from_checkpoint=True)` resumes from the newest complete checkpoint and logs each newer one it
      skipped with the reason; an explicit path that is not complete raises [`BrokenCheckpointError`] naming the
      file. The saving process deletes temporary folders of saves that never finished.
    - A restored `OneCycleLR` is stretched to the run's `max_steps` ([`stretch_one_cycle`]), so a finished run can
      be extended by rerunning it with a larger `--max_steps`.
    - [`CheckpointStateCallback`]s (e.g. [`DataStateCallback`]) read their files back before training starts.
    """

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        resume_from_checkpoint = self._checked_resume_point(resume_from_checkpoint)
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint, trial=trial, ignore_keys_for_eval=ignore_keys_for_eval,
            **kwargs,
        )

    def _checked_resume_point(self, resume_from_checkpoint) -> str | None:
        output_dir = self.args.output_dir
        if self.args.should_save:
            for path in remove_unfinished_saves(output_dir):
                logger.warning(f"Deleted {path}: a checkpoint save that never finished.")
        if resume_from_checkpoint is None or resume_from_checkpoint is False:
            return None
        require_training_state = not self.args.save_only_model
        if resume_from_checkpoint is True:
            search = find_resumable_checkpoint(output_dir, require_training_state=require_training_state)
            for line in search.messages():
                logger.warning(line)
            if search.checkpoint is None:
                raise NoCompleteCheckpointError(output_dir, search.skipped)
            resume_from_checkpoint = search.checkpoint
        else:
            verify_checkpoint(resume_from_checkpoint, require_training_state=require_training_state)
        for callback in checkpoint_state_callbacks(self):
            callback.load_from(resume_from_checkpoint)
        return resume_from_checkpoint

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        scheduler = getattr(self.lr_scheduler, "scheduler", self.lr_scheduler)  # accelerate may wrap it
        if checkpoint is not None and isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
            message = stretch_one_cycle(scheduler, self.state.max_steps)
            if message:
                logger.warning(message)


class ResumableCheckpointsMixin(CheckedResumeMixin, AtomicCheckpointsMixin):
    """Both: `class CLIP4STRTrainer(ResumableCheckpointsMixin, Seq2SeqTrainer)`."""


def checkpoint_state_callbacks(trainer) -> list[CheckpointStateCallback]:
    """The trainer's callbacks that keep a file in each checkpoint."""
    callbacks = trainer.callback_handler.callbacks
    return [callback for callback in callbacks if isinstance(callback, CheckpointStateCallback)]


def publish_checkpoint(staged: str, final: str) -> None:
    """Make the fully written folder `staged` appear as `final` in one rename (after flushing it to disk), replacing
    an existing `final`, and remove the temporary folder around `staged`."""
    _flush_tree(staged)
    parent = os.path.dirname(final)
    replaced = None
    if os.path.exists(final):
        replaced = os.path.join(parent, REPLACED_PREFIX + os.path.basename(final))
        shutil.rmtree(replaced, ignore_errors=True)
        os.rename(final, replaced)
    os.rename(staged, final)
    _flush_directory(parent)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    staging_root = os.path.dirname(staged)
    if staging_root != parent and os.path.basename(staging_root).startswith(STAGING_PREFIX):
        shutil.rmtree(staging_root, ignore_errors=True)


def _flush_tree(folder: str) -> None:
    """fsync every file, so that a machine crash right after the rename cannot leave the new name on empty files."""
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                descriptor = os.open(os.path.join(root, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(descriptor)
            except OSError:
                pass  # some filesystems (and Windows, for read-only handles) cannot fsync; the rename still holds
            finally:
                os.close(descriptor)


def _flush_directory(folder: str) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _same_path(first: str, second: str) -> bool:
    return os.path.normpath(os.path.abspath(first)) == os.path.normpath(os.path.abspath(second))


# --------------------------------------------------------------------------------------------------------------------
# Run state the Trainer does not keep
# --------------------------------------------------------------------------------------------------------------------


class DataStateCallback(CheckpointStateCallback):
    """Carries counters (e.g. the data counts of the batches trained on: kept examples, undecodable images, dropped
    labels) across a resume, in `data_state.json` of every checkpoint. Needs a Trainer with
    [`ResumableCheckpointsMixin`].

    `read()` returns the counters to save; it is called on every process before a save (it may gather across
    processes, e.g. sum them). `restore(counts)` must replace the live counters by `counts` on each process; it is
    called at `on_train_begin` of a resumed run.

    The counters must count what training *consumed*, at the training step (as `CLIP4STRTrainer` does): counters
    kept where examples are read would also hold the batches DataLoader workers prepared ahead of the save, and count
    again those the Trainer re-reads to reach the resumed step of a stream.

    `resumed_from` describes the checkpoint the run resumed from (`checkpoint`, `global_step`, `epoch`, `counters`),
    and `data_state.json` keeps the list of all earlier resumes of the run (`resumes`).
    """

    def __init__(self, read: Callable[[], Mapping[str, int]], restore: Callable[[dict[str, int]], None]):
        self.read = read
        self.restore = restore
        self.resumed_from: dict | None = None
        self._resumes: list[dict] = []
        self._pending: dict[str, int] | None = None
        self._to_save: dict[str, int] = {}

    def prepare_save(self, state) -> None:
        self._to_save = {str(key): int(value) for key, value in sorted(dict(self.read()).items())}

    def save_to(self, checkpoint_dir: str, state) -> None:
        record = {
            "global_step": state.global_step,
            "epoch": state.epoch,
            "counters": self._to_save,
            "resumes": self._resumes,
        }
        with open(os.path.join(checkpoint_dir, DATA_STATE_NAME), "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)

    def load_from(self, checkpoint_dir: str) -> None:
        path = os.path.join(checkpoint_dir, DATA_STATE_NAME)
        name = os.path.basename(os.path.normpath(checkpoint_dir))
        if not os.path.isfile(path):
            logger.warning(f"{name} has no {DATA_STATE_NAME} (saved before it was kept): data counters restart at 0.")
            self._pending, self.resumed_from = {}, None
            return
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        self._pending = {key: int(value) for key, value in record.get("counters", {}).items()}
        self.resumed_from = {
            "checkpoint": name,
            "global_step": record.get("global_step"),
            "epoch": record.get("epoch"),
            "counters": dict(self._pending),
        }
        self._resumes = [*record.get("resumes", []), {"checkpoint": name, "global_step": record.get("global_step")}]

    def on_train_begin(self, args, state, control, **kwargs):
        if self._pending is None:
            return
        counts, self._pending = self._pending, None
        self.restore(dict(counts))
        logger.info(f"Data counters restored at step {state.global_step}: {counts}")


def stretch_one_cycle(scheduler: torch.optim.lr_scheduler.OneCycleLR, total_steps: int) -> str | None:
    """Give a (restored) `OneCycleLR` the length `total_steps` and continue at its current step.

    Policy: the schedule becomes the one a run planned for `total_steps` from the start would follow (the same
    warm-up fraction, peak and floor learning rates, and annealing), and training continues on it at the step it
    reached. Extending a finished 20-step run to 40 steps thus continues at the middle of the 40-step cycle: the
    learning rate jumps from the floor back to the value that schedule has at step 20, then anneals to the floor at
    step 40. Without this, torch raises "Tried to step 21 times. The specified number of total steps is 20".

    Returns a one-line message saying what happens to the learning rate, or None when the length is unchanged.
    Relies on `OneCycleLR`'s phase table (`_schedule_phases`), as built by its constructor.
    """
    old_total, step = scheduler.total_steps, scheduler.last_epoch
    if total_steps == old_total:
        return None
    if total_steps < step:
        return (
            f"The one-cycle schedule is left at {old_total} steps: the run is already at step {step}, past the "
            f"requested {total_steps}."
        )
    phases = scheduler._schedule_phases
    warmup_fraction = (phases[0]["end_step"] + 1) / old_total
    ends = [float(warmup_fraction * total_steps) - 1]
    if len(phases) == 3:  # three_phase=True: warm-up, symmetric cool-down, annihilation
        ends.append(float(2 * warmup_fraction * total_steps) - 2)
    ends.append(total_steps - 1)
    groups = scheduler.optimizer.param_groups
    before = float(scheduler.get_last_lr()[0])
    scheduler.total_steps = total_steps
    for phase, end in zip(phases, ends):
        phase["end_step"] = end
    # Recompute the learning rates of the current step on the new schedule (step() advances `last_epoch` by one).
    scheduler.last_epoch = step - 1
    scheduler.step()
    after = float(scheduler.get_last_lr()[0])
    group_name = groups[0].get("name", "0")
    others = "; the other groups change in the same proportion" if len(groups) > 1 else ""
    return (
        f"Continuing the one-cycle schedule stretched from {old_total} to {total_steps} steps (as planned for "
        f"{total_steps} steps from the start: warm-up over the first {warmup_fraction:.1%}, same peak and floor): lr "
        f"at step {step} goes from {before:.3g} to {after:.3g} (group {group_name!r}){others}."
    )


__all__ = [
    "BrokenCheckpointError",
    "CheckpointSearch",
    "NoCompleteCheckpointError",
    "CheckpointStateCallback",
    "DATA_STATE_NAME",
    "DataStateCallback",
    "AtomicCheckpointsMixin",
    "CheckedResumeMixin",
    "ResumableCheckpointsMixin",
    "SkippedCheckpoint",
    "checkpoint_problems",
    "checkpoint_state_callbacks",
    "checkpoint_step",
    "find_resumable_checkpoint",
    "publish_checkpoint",
    "remove_unfinished_saves",
    "stretch_one_cycle",
    "verify_checkpoint",
]
