"""The Trainer pieces CLIP4STR needs: its optimiser groups, the one-cycle schedule, generate-based evaluation."""

from __future__ import annotations

import os

import torch
from transformers import Seq2SeqTrainer
from transformers.trainer_pt_utils import nested_detach

from training.data.counts import as_counter

# Parameters the reference never decays: gains, biases and other vectors, and the decoders' token embeddings and
# position queries.
_NO_DECAY_NAME_PARTS = ("bias", "logit_scale", "pos_queries", "token_embedding")
_DECODER_PREFIXES = ("visual_decoder.", "cross_decoder.")


def is_decoder_parameter(name: str) -> bool:
    return name.startswith(_DECODER_PREFIXES)


def skips_weight_decay(name: str, parameter: torch.nn.Parameter) -> bool:
    if parameter.ndim < 2:
        return True
    if is_decoder_parameter(name):
        return any(part in name for part in _NO_DECAY_NAME_PARTS)
    return "logit_scale" in name


def clip4str_parameter_groups(model, learning_rate: float, weight_decay: float, decoder_lr_multiplier: float):
    """Four AdamW groups as in the released recipe: CLIP towers and decoders, each with and without weight decay;
    the decoders learn `decoder_lr_multiplier` times faster. Frozen parameters are left out."""
    groups = {
        ("towers", True): [],
        ("towers", False): [],
        ("decoders", True): [],
        ("decoders", False): [],
    }
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part = "decoders" if is_decoder_parameter(name) else "towers"
        groups[(part, not skips_weight_decay(name, parameter))].append(parameter)
    result = []
    for (part, decays), parameters in groups.items():
        if not parameters:
            continue
        lr = learning_rate * (decoder_lr_multiplier if part == "decoders" else 1.0)
        result.append({"params": parameters, "lr": lr, "weight_decay": weight_decay if decays else 0.0,
                       "name": f"{part}{'' if decays else '_no_decay'}"})
    return result


def scaled_learning_rate(args) -> float:
    """`args.learning_rate` x total batch / 512 when `args.scale_lr_by_batch` (the released recipe's rule), else as
    given."""
    if not getattr(args, "scale_lr_by_batch", False):
        return args.learning_rate
    total_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    return args.learning_rate * total_batch / 512


def _data_counts(dataloader):
    """The [`~training.data.DataCounts`] of a DataLoader's filtered dataset, if it has one."""
    dataset = getattr(dataloader, "dataset", None)
    dataset = getattr(dataset, "dataset", dataset)  # accelerate wraps streams in an IterableDatasetShard
    return getattr(getattr(dataset, "example_filter", None), "counts", None)


class CLIP4STRTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` with CLIP4STR's optimiser and schedule, and evaluation by `generate`.

    Predictions are the generated ids (`[P]` after `[E]`); `compute_metrics` receives them with the label ids. One
    data collator serves training and evaluation. What the filtered datasets of `training.data` count (kept examples,
    skips by reason, characters removed from labels) reaches the logs: the training counts in every training log
    entry as `data/<key>`, an evaluation's own counts in its metrics as `eval_data/<key>`.
    """

    def __init__(self, *args, data_sources=None, base_model=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_sources = list(data_sources or [])
        self.base_model = base_model

    def create_model_card(self, *args, tags=None, **kwargs):
        """README.md for the Hub: what was trained on what, with which settings, and the last evaluation."""
        if not self.is_world_process_zero():
            return
        from training.model_card import render_model_card

        eval_metrics = {}
        for entry in self.state.log_history:
            eval_metrics.update({key: value for key, value in entry.items() if key.startswith("eval_")})
        card = render_model_card(
            self.accelerator.unwrap_model(self.model), self.args, self.data_sources, eval_metrics or None,
            base_model=self.base_model, tags=list(tags or []),
        )
        with open(os.path.join(self.args.output_dir, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(card)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            args = self.args
            model = model if model is not None else self.model
            groups = clip4str_parameter_groups(
                model, scaled_learning_rate(args), args.weight_decay, args.decoder_lr_multiplier
            )
            self.optimizer = torch.optim.AdamW(
                groups, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon
            )
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and getattr(self.args, "one_cycle", False):
            optimizer = optimizer if optimizer is not None else self.optimizer
            self.lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[group["lr"] for group in optimizer.param_groups],
                total_steps=max(1, num_training_steps),
                pct_start=self.args.warmup_ratio if self.args.warmup_ratio else 0.075,
                cycle_momentum=False,
            )
            self._created_lr_scheduler = True
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)

    def log(self, logs: dict, *args, **kwargs) -> None:
        """Adds the training data counts (kept examples, undecodable images, dropped labels, removed characters) to
        every training log entry, so they reach the console, the trackers and `trainer_state.json`."""
        stats = getattr(self.train_dataset, "stats", None)
        if stats and "loss" in logs:
            logs = {**logs, **{f"data/{key}": count for key, count in sorted(stats.items())}}
        super().log(logs, *args, **kwargs)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        """The Trainer's loop, with the evaluation dataset's counts of this pass (summed over processes) added to
        the metrics as `<prefix>_data/<key>`."""
        counts = _data_counts(dataloader)
        if counts is not None:
            counts.reset()
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if counts is not None:
            totals = self.accelerator.reduce(counts.column_totals().to(self.args.device), reduction="sum")
            for key, count in sorted(as_counter(totals.cpu()).items()):
                output.metrics[f"{metric_key_prefix}_data/{key}"] = count
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        """Generated ids as predictions (no loss: the training loss samples random orders and would be noise).

        A batch whose records were all skipped is empty: it predicts nothing (empty tensors, so that every process
        still takes part in gathering the predictions)."""
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        if prediction_loss_only:
            return None, None, None
        if len(inputs["pixel_values"]) == 0:
            return None, labels.new_empty(0, 1), labels
        unwrapped = self.accelerator.unwrap_model(model)
        with torch.no_grad():
            sequences = unwrapped.generate(pixel_values=inputs["pixel_values"])
        return None, nested_detach(sequences), labels
