"""The Trainer pieces CLIP4STR needs: its optimiser groups, the one-cycle schedule, generate-based evaluation with a
deterministic loss, checkpoints a run can resume from, data counts of the steps trained, and the model card."""

from __future__ import annotations

import functools

import torch
from accelerate.data_loader import prepare_data_loader
from transformers import EvalPrediction, Seq2SeqTrainer
from transformers.trainer_pt_utils import nested_detach

from modeling_clip4str.loss_clip4str import num_loss_targets

from training.train.checkpoints import DataStateCallback, ResumableCheckpointsMixin
from training.data.collation import PLACEHOLDER_LABEL_ID
from training.data.counts import CONSUMED_COUNTS_KEY, COUNTED, as_counter
from training.data.filtering import EvaluationDataset

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


def _usable_rows(labels):
    """`[B]`: the rows of `labels` (`[B, L]`, a tensor or an array) that are not placeholders: a placeholder's label
    is `PLACEHOLDER_LABEL_ID` (< 0) at every position, a real one holds at least `[E]`."""
    return (labels >= 0).any(-1)


def _without_placeholder_rows(compute_metrics):
    """`compute_metrics` called on the rows of the usable records only (placeholder rows have labels all < 0)."""

    @functools.wraps(compute_metrics)
    def wrapped(prediction: EvalPrediction, **kwargs):
        labels = prediction.label_ids
        if labels is None or isinstance(labels, (tuple, list)):
            return compute_metrics(prediction, **kwargs)
        usable = _usable_rows(labels)

        def rows(value):
            return value[usable] if value is not None and not isinstance(value, (tuple, list)) else value

        kept = EvalPrediction(predictions=rows(prediction.predictions), label_ids=labels[usable],
                              inputs=rows(prediction.inputs), losses=prediction.losses)
        return compute_metrics(kept, **kwargs)

    return wrapped


class CLIP4STRTrainer(ResumableCheckpointsMixin, Seq2SeqTrainer):
    """`Seq2SeqTrainer` with CLIP4STR's optimiser and schedule, evaluation by `generate`, and resumable checkpoints.

    Predictions are the generated ids (`[P]` after `[E]`); `compute_metrics` receives them with the label ids, and
    `eval_loss` is the model's loss in eval mode (its permutation orders are then drawn from a fixed seed, so the loss
    is the same at every evaluation). One data collator serves training and evaluation.

    What the filtered datasets of `training.data` count (kept examples, skips by reason, characters removed from
    labels) reaches the logs: in every training log entry as `data/<key>`, the counts of the batches trained on so
    far, summed over processes (not those DataLoader workers prepared ahead, nor those re-read to reach a resumed
    step), carried across resumes in each checkpoint's `data_state.json`; an evaluation's own counts in its metrics
    as `eval_data/<key>`.

    Checkpoints are saved atomically and a resume picks the newest complete one (see
    [`~training.train.checkpoints.ResumableCheckpointsMixin`]).

    Args:
        train_sources (`list[str]`, *optional*): the training data as given, for the model card.
        base_model (`str`, *optional*): the CLIP or CLIP4STR the run started from, for the model card.
        eval_protocol (`str`, *optional*): how evaluation compares texts, e.g. "36-char", for the model card.
        language (`str` or `list[str]`, *optional*): ISO code(s) of the training text's language(s), for the model
            card (also the card `push_to_hub` writes).

    `eval_results` (`{dataset name: metrics}`) is what the model card reports as evaluated; the caller sets it after
    its final evaluation.
    """

    def __init__(self, *args, train_sources=None, base_model=None, eval_protocol=None, language=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_sources = list(train_sources or [])
        self.base_model = base_model
        self.eval_protocol = eval_protocol
        self.language = language
        self.eval_results: dict[str, dict] = {}
        self._consumed_counts: torch.Tensor | None = None
        self.data_state = DataStateCallback(read=self.consumed_data_counts, restore=self._restore_consumed_counts)
        self.add_callback(self.data_state)

    def create_model_card(self, language=None, license=None, tags=None, model_name=None, **kwargs):
        """README.md in the output folder (as `push_to_hub` uploads it): what was trained from what, on what, with
        which settings, and `eval_results`. Named after the Hub id (`model_name`, the id's last part that
        `push_to_hub` passes, gives way to it), else the output folder."""
        if not self.is_world_process_zero():
            return
        from training.evaluation.model_card import write_model_card

        write_model_card(
            self.args.output_dir, self.accelerator.unwrap_model(self.model), self.args,
            train_sources=self.train_sources, eval_results=self.eval_results or None, base_model=self.base_model,
            hub_model_id=getattr(self, "hub_model_id", None), tags=[tags] if isinstance(tags, str) else tags or (),
            language=language or self.language, eval_protocol=self.eval_protocol, trained_steps=self.state.global_step or None,
            license=license or "apache-2.0",
        )

    # Set by `get_train_dataloader` when each process reads its own part of the training stream.
    _reads_own_stream = False

    def get_train_dataloader(self):
        """With several processes, a stream that can be split (a [`~training.data.FilteredIterableDataset`] over a
        `datasets.IterableDataset`) is read in parts: each process its own shards (`split_by_node`), which its
        DataLoader workers split again, so no process reads or decodes what another one trains on. Map-style data
        keeps the Trainer's distributed sampler; other streams are left to accelerate."""
        dataset = self.train_dataset
        parallel_groups = self.get_tp_size() * self.get_cp_size() * self.get_sp_size()
        if (self.accelerator.num_processes == 1 or self.accelerator.dispatch_batches or parallel_groups > 1
                or not getattr(dataset, "can_split_by_node", False)):
            return super().get_train_dataloader()
        part = dataset.split_by_node(self.accelerator.process_index, self.accelerator.num_processes)
        args = self.args
        loader = torch.utils.data.DataLoader(
            part,
            batch_size=self._train_batch_size,
            collate_fn=self._get_collator_with_removed_columns(self.data_collator, description="Training"),
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            multiprocessing_context=args.dataloader_multiprocessing_context,
            prefetch_factor=args.dataloader_prefetch_factor,
            in_order=args.dataloader_in_order,
        )
        # `accelerator.prepare` would wrap the part in an `IterableDatasetShard` (or dispatch it): every process
        # would read the whole part and keep one batch in N. The part is already this process's alone, so it is
        # prepared as the loader of a single process (device placement only).
        self._reads_own_stream = True
        accelerator = self.accelerator
        return prepare_data_loader(
            loader,
            accelerator.device,
            num_processes=1,
            process_index=0,
            put_on_device=accelerator.device_placement,
            rng_types=accelerator.rng_types.copy(),
            dispatch_batches=False,
            non_blocking=accelerator.non_blocking,
            use_stateful_dataloader=accelerator.use_stateful_dataloader,
        )

    def get_batch_samples(self, epoch_iterator, num_batches: int, device):
        """The batches of one optimizer step, and the loss targets they hold over all processes.

        When each process reads its own part of a stream, the parts end at different steps (shards of different
        sizes, different skips): every process then takes as many batches as the process that has the fewest, and
        when one has none the epoch ends for all, so that no process waits alone in a collective operation."""
        batch_samples = []
        for _ in range(num_batches):
            try:
                batch_samples.append(next(epoch_iterator))
            except StopIteration:
                break
        if self._reads_own_stream:
            available = torch.tensor(len(batch_samples), device=device)
            del batch_samples[int(self.accelerator.gather(available.reshape(1)).min()):]
        if not batch_samples:
            self.control.should_epoch_stop = True
        return batch_samples, self._get_num_items_in_batch(batch_samples, device)

    def _get_num_items_in_batch(self, batch_samples: list, device):
        """The number of targets the loss of these batches averages over ([`num_loss_targets`]: labels are padded
        with `[P]`, not -100, and each of the K orders learns every character), summed over processes when
        `average_tokens_across_devices`. The model divides its summed loss by it; the Trainer multiplies the loss by
        the number of processes (DDP averages gradients) and does not divide it by the accumulation steps, so the
        loss and gradients of a step do not depend on how its batch is split between processes and steps."""
        if not batch_samples or "labels" not in batch_samples[0] or not self.model_accepts_loss_kwargs:
            return super()._get_num_items_in_batch(batch_samples, device)
        config = self.accelerator.unwrap_model(self.model).config
        count = torch.tensor(sum(num_loss_targets(batch["labels"], config) for batch in batch_samples), device=device)
        if self.args.average_tokens_across_devices:
            if self.args.world_size > 1:
                count = self.accelerator.gather(count.reshape(1)).sum()
        elif self.args.n_gpu > 1:
            count = count // self.args.n_gpu  # nn.DataParallel without averaging: the base Trainer's approximation
        if self.args.n_gpu > 1:
            count = count.unsqueeze(0).expand(self.args.n_gpu, -1)  # one row per nn.DataParallel replica
        return count

    def sum_over_processes(self, column_totals: torch.Tensor) -> torch.Tensor:
        """A count vector (e.g. `DataCounts.column_totals()`) summed over the training processes, on the CPU."""
        if self.accelerator.num_processes == 1:
            return column_totals
        return self.accelerator.reduce(column_totals.to(self.args.device), reduction="sum").cpu()

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            args = self.args
            model = model if model is not None else self.model
            groups = clip4str_parameter_groups(
                model, scaled_learning_rate(args), args.weight_decay, args.decoder_lr_multiplier
            )
            # The optimizer `--optim` names (by default transformers' fused AdamW, one kernel over all tensors:
            # 1.7 ms a step instead of 9.5 ms for the demo's model on one CPU thread), with the groups' own learning
            # rates and weight decays in place of the single ones.
            optimizer_class, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(args, model)
            self.optimizer = optimizer_class(groups, **optimizer_kwargs)
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

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Counts what the batch's examples count for (see [`~training.data.counts.CONSUMED_COUNTS_KEY`]) as it is
        trained on, then trains on it."""
        consumed = inputs.pop(CONSUMED_COUNTS_KEY, None)
        if consumed is not None:
            self._consumed_counts_tensor().add_(consumed.sum(dim=0).to(self._consumed_counts.device))
        return super().training_step(model, inputs, num_items_in_batch)

    def _consumed_counts_tensor(self) -> torch.Tensor:
        """`[len(COUNTED)]` counts of the batches this process trained on, on its device (no sync per step)."""
        if self._consumed_counts is None:
            self._consumed_counts = torch.zeros(len(COUNTED), dtype=torch.int64, device=self.args.device)
        return self._consumed_counts

    def consumed_data_counts(self):
        """The data counts of the batches trained on so far, summed over processes, as a `Counter` of the non-zero
        ones. Every process must call it (it gathers)."""
        return as_counter(self.sum_over_processes(self._consumed_counts_tensor()))

    def _restore_consumed_counts(self, counts: dict[str, int]) -> None:
        """Start from the counts of a resumed checkpoint (summed over its processes): the first process holds them,
        so that the sum over processes stays right whatever their number now."""
        values = [int(counts.get(key, 0)) if self.accelerator.process_index == 0 else 0 for key in COUNTED]
        self._consumed_counts = torch.tensor(values, dtype=torch.int64, device=self.args.device)

    def log(self, logs: dict, *args, **kwargs) -> None:
        """Adds the data counts of the batches trained on (kept examples, undecodable images, dropped labels, removed
        characters; summed over processes) to every training log entry, so they reach the console, the trackers and
        `trainer_state.json`."""
        if "loss" in logs and getattr(self.train_dataset, "stats", None) is not None:
            counts = self.consumed_data_counts()  # every process logs a training entry: the sum is collective
            logs = {**logs, **{f"data/{key}": count for key, count in sorted(counts.items())}}
        super().log(logs, *args, **kwargs)

    # Set by `evaluation_loop` for the pass under way: per-row sums of the gathered rows (see `_tally_rows`).
    _eval_tally: dict | None = None

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        """The Trainer's loop, reading an [`~training.data.EvaluationDataset`] one row per record (skipped records as
        placeholder rows, see [`~training.data.STRDataCollator`]): every process gathers batches of the same size,
        and the distributed sampler's repeated records, which `gather_for_metrics` trims by position, are trimmed
        right. `compute_metrics` sees the usable records only; the returned predictions keep one row per record
        (placeholders: -100).

        `<prefix>_loss` is the mean of the batches' losses weighted by their usable records (repeated records left
        out), so that a batch without a usable record has no weight; `<prefix>_data/<key>` are the counts of the
        records of this pass (kept, skipped by reason, removed characters), each record once."""
        dataset = getattr(dataloader, "dataset", None)
        if isinstance(dataset, EvaluationDataset):
            dataset.placeholders = True  # before the DataLoader (and its workers) reads it
        # Seq2SeqTrainer's evaluate and predict gather with `gather`, which keeps the records the distributed sampler
        # repeats to give every process full batches (10 records on 2 processes, batches of 8: 16 scored);
        # `gather_for_metrics` leaves them out.
        self.gather_function = functools.partial(
            self.accelerator.gather_for_metrics, use_gather_object=self.args.eval_use_gather_object
        )
        self._eval_tally = {"loss": torch.zeros(2, dtype=torch.float64), "counts": None}
        compute_metrics = self.compute_metrics
        if compute_metrics is not None:
            self.compute_metrics = _without_placeholder_rows(compute_metrics)
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                             metric_key_prefix)
        finally:
            self.compute_metrics = compute_metrics
        tally, self._eval_tally = self._eval_tally, None
        loss_sum, usable = tally["loss"].tolist()
        if usable:
            output.metrics[f"{metric_key_prefix}_loss"] = loss_sum / usable
        if tally["counts"] is not None:
            for key, count in sorted(as_counter(tally["counts"]).items()):
                output.metrics[f"{metric_key_prefix}_data/{key}"] = count
        return output

    def _tally_rows(self, loss: torch.Tensor | None, usable: torch.BoolTensor, counts: torch.Tensor | None):
        """Adds a batch's rows, gathered from every process without the sampler's repeated records, to this pass's
        tally: each usable row brings its batch's loss (`loss`, the mean over the batch's usable rows), and each row
        what its record counts for (`counts`, `[B, len(COUNTED)]`)."""
        if self._eval_tally is None:
            return
        if loss is not None:
            rows = torch.stack([torch.where(usable, loss.float(), 0.0), usable.float()], dim=1)
            self._eval_tally["loss"] += self.accelerator.gather_for_metrics(rows).sum(dim=0).double().cpu()
        if counts is not None:
            total = self.accelerator.gather_for_metrics(counts).sum(dim=0).cpu()
            previous = self._eval_tally["counts"]
            self._eval_tally["counts"] = total if previous is None else previous + total

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        """The loss (the model is in eval mode, where its permutation orders come from a fixed seed: the same loss at
        every evaluation) and the generated ids as predictions, of the usable rows.

        Placeholder rows (a skipped record) and a batch without usable rows take part in every gathering like the
        others: their predictions are -100, and they add nothing to the loss (see `evaluation_loop`). A batch of
        only `None` items (an `EvaluationDataset` without placeholders) is empty."""
        inputs = self._prepare_inputs(inputs)
        counts = inputs.pop(CONSUMED_COUNTS_KEY, None)
        labels = inputs.get("labels")
        pixel_values = inputs["pixel_values"]
        usable = _usable_rows(labels) if labels is not None else torch.ones(len(pixel_values), dtype=torch.bool,
                                                                              device=pixel_values.device)
        loss = None
        with torch.no_grad():
            if labels is not None:
                loss = pixel_values.new_zeros(())
                if usable.any():
                    with self.compute_loss_context_manager():
                        loss = model(pixel_values=pixel_values[usable], labels=labels[usable]).loss.detach()
            self._tally_rows(loss, usable, counts)
            if prediction_loss_only:
                return None, None, None
            predictions = torch.full((len(pixel_values), 1), PLACEHOLDER_LABEL_ID, device=pixel_values.device,
                                     dtype=torch.long)
            if usable.any():
                # `--generation_max_length` / `--generation_num_beams` reach `generate`, which honours a length cap
                # and refuses beam search by name rather than ignoring it.
                if not gen_kwargs and hasattr(self, "_gen_kwargs"):
                    gen_kwargs = self._gen_kwargs.copy()
                generated = self.accelerator.unwrap_model(model).generate(pixel_values=pixel_values[usable],
                                                                          **gen_kwargs)
                predictions = predictions.new_full((len(pixel_values), generated.shape[1]), PLACEHOLDER_LABEL_ID)
                predictions[usable] = generated
        return None, nested_detach(predictions), labels
