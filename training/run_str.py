#!/usr/bin/env python
"""Train or fine-tune CLIP4STR with the Hugging Face Trainer.

One process:
    python -m training.run_str --clip_model_name_or_path openai/clip-vit-base-patch16 \
        --train_datasets DATA/train/real --eval_datasets DATA/val --output_dir out/clip4str-b16 ...
Several GPUs or machines (DDP, FSDP or DeepSpeed, as `accelerate config` says):
    accelerate launch training/run_str.py ...      (or: accelerate launch -m training.run_str ...)
All arguments can also come from one JSON or YAML file: `python -m training.run_str args.yaml`.
The package must be installed (`pip install -e .`) for the `python training/run_str.py` form.

Start from a CLIP (`--clip_model_name_or_path`, fresh decoders) or from a CLIP4STR (`--model_name_or_path`,
fine-tuning). Training data: Hub datasets (streamed), local parquet / arrow / imagefolder directories, and LMDB
directories or trees of them, interleaved with `--train_weights`.

Rerunning with the same `--output_dir` resumes from its newest complete checkpoint (incomplete or damaged ones are
named and skipped; if none is complete the run stops and says what to do); with a larger `--max_steps` a finished run
continues. To reach the resumed step, the Trainer re-reads a streamed training set from its start (downloading,
decoding, filtering and collating those batches without training on them); map-style data (`--streaming false`)
skips them without reading. `--ignore_data_skip` restarts the stream instead (those examples are trained on again).
At the end of a training run the output folder gets a model card (README.md) with what was evaluated.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import datasets
import torch
import transformers
from transformers import EarlyStoppingCallback, HfArgumentParser, set_seed

from modeling_clip4str import CHARSET_36, CHARSET_94, CLIP4STRForSceneTextRecognition, CLIP4STRProcessor
from training.data import STRDataCollator, build_eval_dataset, build_train_dataset
from training.data.sources import source_split_names
from training.evaluation.loading import load_model_and_processor
from training.evaluation.protocol import compute_str_metrics, evaluation_charset, scorable_pairs

# STRTrainingArguments is also imported here because runs saved before it moved pickled it into training_args.bin as
# `training.run_str.STRTrainingArguments` (the Trainer writes that file; resuming never reads it, `torch.load` does).
from training.train.arguments import DataArguments, ModelArguments, STRTrainingArguments
from training.train.checkpoints import NoCompleteCheckpointError, find_resumable_checkpoint
from training.train.trainer import CLIP4STRTrainer

logger = logging.getLogger("run_str")


def parse_arguments():
    parser = HfArgumentParser((ModelArguments, DataArguments, STRTrainingArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(sys.argv[1]))
    if len(sys.argv) == 2 and sys.argv[1].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(os.path.abspath(sys.argv[1]))
    return parser.parse_args_into_dataclasses()


def _check_fine_tuning_overrides(config, overrides: dict):
    """Apply the settings that may change when fine-tuning; refuse those that change the weights' shapes."""
    for name, value in overrides.items():
        if name == "input_size":
            if tuple(value) != config.image_input_size:
                raise ValueError(
                    f"--image_size cannot change when fine-tuning: the model and its processor read "
                    f"{config.image_input_size} images."
                )
            continue
        if name in ("charset", "max_label_length", "decoder_num_heads", "decoder_num_layers"):
            if getattr(config, name) != value:
                raise ValueError(f"--{name} cannot change when fine-tuning (the weights depend on it).")
        setattr(config, name, value)


def model_and_processor(model_args: ModelArguments):
    """The CLIP4STR to fine-tune (`--model_name_or_path`) or a new one from a CLIP (`--clip_model_name_or_path`)."""
    hub = {"cache_dir": model_args.cache_dir, "revision": model_args.revision, "token": model_args.token}
    if bool(model_args.model_name_or_path) == bool(model_args.clip_model_name_or_path):
        raise ValueError(
            "Give exactly one of --model_name_or_path (fine-tune) or --clip_model_name_or_path (new model)."
        )
    if model_args.model_name_or_path:
        model, processor = load_model_and_processor(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code, **hub
        )
        _check_fine_tuning_overrides(model.config, model_args.config_overrides())
        model.freeze_text_layers(model.config.num_frozen_text_layers)
        # Trained (and evaluated during training) here, with its processor: evaluate_str's default then reads it the
        # same way, even when it started as a converted checkpoint scored like the reference's test.py.
        model.config.benchmark_protocol = "pipeline"
        return model, processor
    overrides = model_args.config_overrides()
    overrides.setdefault("charset", CHARSET_94)
    overrides.setdefault("caption_charset", CHARSET_36)
    model = CLIP4STRForSceneTextRecognition.from_clip(model_args.clip_model_name_or_path, **overrides, **hub)
    return model, CLIP4STRProcessor.from_config(model.config)


def main():
    model_args, data_args, training_args = parse_arguments()
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    # This script's own messages (what it loads, where it resumes) are worth seeing on the main process.
    logger.setLevel(logging.INFO if training_args.should_log else level)
    logging.getLogger("training").setLevel(logging.INFO if training_args.should_log else level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    if not data_args.train_datasets and not data_args.eval_datasets:
        raise ValueError("Give --train_datasets (to train) and/or --eval_datasets (to evaluate).")
    if data_args.train_datasets and training_args.max_steps <= 0 and data_args.streaming:
        raise ValueError("Streamed training data has no length: give --max_steps.")
    _check_evaluation_options(data_args, training_args)
    _check_report_to(training_args)
    set_seed(training_args.seed)
    resume_from = resume_point(training_args) if data_args.train_datasets else None

    model, processor = model_and_processor(model_args)
    config = model.config
    logger.info(
        f"CLIP4STR: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.1f}M trained; "
        f"{len(config.charset)} characters, max {config.max_label_length}."
    )

    # Private Hub datasets need the token too (never written anywhere: see run_str_args.json below).
    hub = {key: value for key, value in (("token", model_args.token), ("cache_dir", model_args.cache_dir)) if value}
    label_and_column_options = ("remove_whitespace", "unicode_normalization", "image_column", "text_column")
    data_options = dict(charset=config.charset, max_label_length=config.max_label_length, **hub,
                        **{name: getattr(data_args, name) for name in label_and_column_options})
    train_dataset = None
    if data_args.train_datasets:
        transform = None
        if data_args.augment:
            from training.train.augment import RandAugmentSTR

            transform = RandAugmentSTR(num_ops=3, magnitude=5)
        train_dataset = build_train_dataset(
            data_args.train_datasets,
            weights=data_args.train_weights,
            split=data_args.train_split,
            streaming=data_args.streaming,
            seed=training_args.seed,
            shuffle_buffer_size=data_args.shuffle_buffer_size,
            transform=transform,
            **data_options,
        )
    eval_dataset = None
    if data_args.eval_datasets:
        eval_splits = [eval_split_of(source, data_args.eval_split, **hub) for source in data_args.eval_datasets]
        eval_dataset = build_eval_dataset(
            data_args.eval_datasets, split=[split or "validation" for split in eval_splits],
            max_samples=data_args.max_eval_samples, **data_options,
        )

    eval_charset, _ = evaluation_charset(config.charset, data_args.eval_charset)
    compute_metrics = str_metrics_function(processor, eval_charset)

    trainer = CLIP4STRTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=STRDataCollator(processor, max_label_length=config.max_label_length),
        processing_class=processor,
        compute_metrics=compute_metrics if eval_dataset is not None else None,
        callbacks=_early_stopping(training_args),
        train_sources=data_args.train_datasets,
        base_model=model_args.model_name_or_path or model_args.clip_model_name_or_path,
        eval_protocol="36-char" if eval_charset == CHARSET_36 else f"{len(eval_charset)}-char",
        language=data_args.language or None,
    )

    if train_dataset is not None:
        result = trainer.train(resume_from_checkpoint=resume_from)
        trainer.save_model()
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
    if eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        trainer.eval_results = {evaluated_name(data_args.eval_datasets, eval_splits): metrics}
    if training_args.should_save:
        with open(os.path.join(training_args.output_dir, "run_str_args.json"), "w") as handle:
            json.dump(run_record(model_args, data_args, training_args), handle, indent=2, default=str)
    if train_dataset is not None:
        trainer.create_model_card()  # the main process writes README.md; push_to_hub rewrites the same card
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="CLIP4STR trained with training/run_str.py")
    # Leave together and take the process group down before the interpreter exits: a process that exits with it
    # still up can abort at exit ("terminate called without an active exception", seen with gloo on 2 processes).
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


def resume_point(training_args) -> str | None:
    """The checkpoint a training run resumes from: `--resume_from_checkpoint` as given (refused if incomplete), else,
    unless `--overwrite_output_dir`, the newest complete checkpoint of `--output_dir`. Newer broken ones are named
    and skipped; an output folder whose checkpoints are all broken raises rather than silently starting afresh."""
    output_dir = training_args.output_dir
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    search = find_resumable_checkpoint(output_dir, require_training_state=not training_args.save_only_model)
    if training_args.overwrite_output_dir:
        if search.checkpoint is not None or search.skipped:
            logger.info(f"--overwrite_output_dir: starting afresh; new checkpoints replace those of {output_dir}.")
        return None
    if training_args.should_log:
        for line in search.messages():
            logger.warning(line)
    if search.checkpoint is None:
        if search.skipped:
            raise NoCompleteCheckpointError(output_dir, search.skipped)
        return None
    logger.info(f"Resuming from {search.checkpoint}, the newest complete checkpoint of {output_dir}.")
    return search.checkpoint


def eval_split_of(source: str, requested: str | None, **load_kwargs) -> str | None:
    """The split of `source` to evaluate on: `requested` if given, else `validation`, else `test`; `None` for a
    source without splits (LMDB, a single file)."""
    if requested:
        return requested
    splits = source_split_names(source, **load_kwargs)
    if splits is None:
        return None
    for split in ("validation", "test"):
        if split in splits:
            if split != "validation":
                logger.info(f"{source} has no validation split: evaluating on its {split} split.")
            return split
    raise ValueError(
        f"{source} has neither a validation nor a test split; its splits are {splits}. Choose one with --eval_split."
    )


def evaluated_name(sources: list[str], splits: list[str | None]) -> str:
    """How the model card names what was evaluated, e.g. "IIIT5k (test) + SVT (test)"."""
    names = []
    for source, split in zip(sources, splits):
        name = source if not os.path.exists(source) else os.path.basename(os.path.normpath(source))
        names.append(f"{name} ({split})" if split else name)
    return " + ".join(names)


def run_record(model_args, data_args, training_args) -> dict:
    """What run_str_args.json keeps of the arguments: all but secrets (the Hub token)."""
    model = {key: value for key, value in vars(model_args).items() if key != "token"}
    return {"model": model, "data": vars(data_args), "world_size": training_args.world_size}


def _check_evaluation_options(data_args, training_args) -> None:
    """Options that choose a model by its evaluations need evaluations."""
    wanted = [name for name in ("load_best_model_at_end", "early_stopping_patience") if getattr(training_args, name)]
    if wanted and (not data_args.eval_datasets or training_args.eval_strategy == "no"):
        raise ValueError(
            f"--{' and --'.join(wanted)} compares evaluations during training: give --eval_datasets and "
            "--eval_strategy steps (with --eval_steps) or epoch."
        )


def _check_report_to(training_args) -> None:
    if "tensorboard" in (training_args.report_to or []):
        from transformers.integrations import is_tensorboard_available

        if not is_tensorboard_available():
            raise ImportError(
                "--report_to tensorboard needs the tensorboard package: pip install tensorboard (it comes with "
                "pip install -e '.[training]')."
            )


def _early_stopping(training_args) -> list:
    if not training_args.early_stopping_patience:
        return []
    return [EarlyStoppingCallback(training_args.early_stopping_patience, training_args.early_stopping_threshold)]


def str_metrics_function(processor, charset: str):
    """The Trainer's `compute_metrics`: word accuracy, 1 - NED and the number of scored samples of the generated ids
    against the label ids, under the comparison `charset` (labels with no character left under it are not scored, as
    in `evaluate_str`)."""

    def compute_metrics(prediction) -> dict:
        predictions, references = scorable_pairs(_decode(processor, prediction.predictions),
                                                 _decode(processor, prediction.label_ids), charset)
        if not references:
            return {"word_accuracy": 0.0, "one_minus_ned": 0.0, "num_samples": 0}
        metrics = compute_str_metrics(predictions, references, charset=charset)
        return {"word_accuracy": metrics["accuracy"], "one_minus_ned": metrics["one_minus_ned"],
                "num_samples": metrics["num_samples"]}

    return compute_metrics


def _decode(processor, ids) -> list[str]:
    """Texts of id rows padded with -100 (Trainer's padding across batches) or [P]."""
    ids = torch.as_tensor(ids)
    ids = ids.masked_fill(ids < 0, processor.tokenizer.pad_token_id)
    return processor.batch_decode(ids)


if __name__ == "__main__":
    main()
