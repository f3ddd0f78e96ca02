"""The arguments of `run_str.py`: the model to start from, the data, and the Trainer's arguments with CLIP4STR's own
training settings (`HfArgumentParser` turns each field into a `--flag`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from transformers import Seq2SeqTrainingArguments

from clip4str_onnx.onnx_clip4str import DESCRIPTION_FILE, is_exported_directory
from modeling_clip4str.labels_clip4str import ASCII_FOLD


def refuse_onnx_export(model_name_or_path: str) -> None:
    """Refuse, before anything is loaded, a directory that `python -m clip4str_onnx.export_onnx` wrote: its ONNX
    graphs can be run (`evaluate_str.py` reads them) but not trained, and it holds no PyTorch weights."""
    if os.path.isdir(model_name_or_path) and is_exported_directory(model_name_or_path):
        raise ValueError(
            f"--model_name_or_path {model_name_or_path} is an ONNX export (it has {DESCRIPTION_FILE}): ONNX graphs "
            "cannot be trained or fine-tuned, and the export holds no PyTorch weights. Pass the PyTorch model "
            "directory (or Hub id) it was exported from, the MODEL_DIR of `python -m clip4str_onnx.export_onnx "
            "MODEL_DIR OUT_DIR`, and export the fine-tuned model again afterwards."
        )

@dataclass
class ModelArguments:
    """Where the model comes from, and the CLIP4STR settings of a new one."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A CLIP4STR directory or Hub id to fine-tune (the PyTorch model: an ONNX export cannot be "
                          "trained)."},
    )
    clip_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A Hugging Face CLIP checkpoint to start a new CLIP4STR from, e.g. "
                          "openai/clip-vit-base-patch16."},
    )
    charset: str | None = field(
        default=None,
        metadata={"help": "Characters a new model reads, in id order (default: the 94 ASCII of the releases)."},
    )
    charset_file: str | None = field(
        default=None,
        metadata={"help": "Read --charset from this file (one line of UTF-8, e.g. written by "
                          "`python -m training.tools.build_charset`)."},
    )
    caption_charset: str | None = field(default=None, metadata={"help": "Characters kept in captions (default: 36)."})
    max_label_length: int | None = field(default=None, metadata={"help": "Longest word (default 25)."})
    decoder_num_heads: int | None = field(default=None, metadata={"help": "Decoder heads (default 8)."})
    decoder_num_layers: int | None = field(default=None, metadata={"help": "Decoder layers (default 1)."})
    decoder_dropout: float | None = field(default=None, metadata={"help": "Decoder dropout (default 0.1)."})
    num_frozen_text_layers: int | None = field(
        default=None,
        metadata={"help": "Frozen text-tower layers (with its embeddings); -1 freezes nothing (default 6)."},
    )
    perm_num: int | None = field(default=None, metadata={"help": "Permutations per batch (default 6)."})
    refine_iters: int | None = field(default=None, metadata={"help": "Refinement passes at evaluation (default 1)."})
    cross_loss_weight: float | None = field(default=None, metadata={"help": "Cross-modal loss weight (default 1)."})
    image_size: list[int] | None = field(
        default=None,
        metadata={"help": "Height and width of the images a new model reads, e.g. `32 128` for word images (one value: "
                          "square). Default: the vision tower's square image_size. Other sizes resize the tower's "
                          "position table to the new patch grid."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and datasets are cached."})
    revision: str = field(default="main", metadata={"help": "Model revision (branch, tag or commit)."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models and datasets."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow model code from the Hub."})

    def __post_init__(self):
        if self.model_name_or_path is not None:
            refuse_onnx_export(self.model_name_or_path)
        if self.charset_file is not None:
            if self.charset is not None:
                raise ValueError("Give --charset or --charset_file, not both.")
            from training.tools.build_charset import read_charset_file

            self.charset = read_charset_file(self.charset_file)

    def config_overrides(self) -> dict:
        names = ("charset", "caption_charset", "max_label_length", "decoder_num_heads", "decoder_num_layers",
                 "decoder_dropout", "num_frozen_text_layers", "perm_num", "refine_iters", "cross_loss_weight")
        overrides = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        if self.image_size:
            if len(self.image_size) not in (1, 2):
                raise ValueError(f"--image_size takes one or two values (height width), got {self.image_size}.")
            overrides["input_size"] = list(self.image_size) * (2 // len(self.image_size))
        return overrides


@dataclass
class DataArguments:
    """What to train and evaluate on."""

    train_datasets: list[str] = field(
        default_factory=list,
        metadata={"help": "Training sources: Hub dataset ids, parquet/arrow/imagefolder dirs, LMDB dirs or trees."},
    )
    train_weights: list[float] | None = field(
        default=None, metadata={"help": "Sampling weight of each training source (default: equal)."}
    )
    eval_datasets: list[str] = field(default_factory=list, metadata={"help": "Validation sources (same kinds)."})
    train_split: str = field(default="train", metadata={"help": "Split of Hub/local datasets used for training."})
    eval_split: str | None = field(
        default=None,
        metadata={"help": "Split of Hub/local datasets used for validation (default: each source's `validation` "
                          "split, else its `test` split)."},
    )
    image_column: str = field(default="image", metadata={"help": "Image column of the datasets."})
    text_column: str = field(default="text", metadata={"help": "Label column of the datasets."})
    streaming: bool = field(default=True, metadata={"help": "Stream training data instead of downloading it whole."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many samples."})
    augment: bool = field(default=True, metadata={"help": "RandAugment-style augmentation of training images."})
    remove_whitespace: bool = field(default=True, metadata={"help": "Remove whitespace from labels."})
    unicode_normalization: str | None = field(
        default=None,
        metadata={"help": f"Unicode normalisation of labels: {ASCII_FOLD} (fold to ASCII), NFC, NFKC, NFD, NFKD or "
                  "none (default: fold for ASCII charsets, NFC otherwise).",
                  "choices": [ASCII_FOLD, "NFC", "NFKC", "NFD", "NFKD", "none"]},
    )
    shuffle_buffer_size: int = field(default=10_000, metadata={"help": "Shuffle buffer of streamed training data."})
    language: list[str] = field(
        default_factory=list,
        metadata={"help": "ISO 639-1 code(s) of the language(s) of the training text, e.g. `vi`: stated in the "
                          "model card (its text and the Hub's `language` metadata)."},
    )
    eval_charset: str | None = field(
        default=None,
        metadata={"help": "Characters compared in validation (default, as evaluate_str: the 36-character benchmark "
                  "protocol, or the model's own charset when it is not ASCII)."},
    )


@dataclass
class STRTrainingArguments(Seq2SeqTrainingArguments):
    """`Seq2SeqTrainingArguments` with the released CLIP4STR recipe as defaults."""

    learning_rate: float = field(default=8.4e-5, metadata={"help": "Base learning rate of the CLIP towers."})
    decoder_lr_multiplier: float = field(default=19.0, metadata={"help": "Decoders learn this many times faster."})
    scale_lr_by_batch: bool = field(
        default=True, metadata={"help": "Multiply learning rates by total batch / 512, as the released recipe does."}
    )
    one_cycle: bool = field(default=True, metadata={"help": "One-cycle schedule (warm-up = warmup_ratio)."})
    weight_decay: float = field(
        default=0.2, metadata={"help": "AdamW weight decay (not on gains, biases, embeddings)."}
    )
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-6, metadata={"help": "AdamW epsilon."})
    max_grad_norm: float = field(default=20.0, metadata={"help": "Gradient clipping."})
    warmup_ratio: float = field(default=0.075, metadata={"help": "Share of steps spent warming up."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep raw columns for the collator."})
    predict_with_generate: bool = field(default=True, metadata={"help": "Evaluate with generate."})
    use_cpu: bool | None = field(
        default=None,
        metadata={"help": "Train on the CPU (default: when no GPU is present), also with several processes over gloo."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start afresh even if output_dir holds checkpoints (by default the newest complete one is "
                          "resumed)."},
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop when metric_for_best_model (default: word accuracy) has not improved for this many "
                          "evaluations. Needs --eval_datasets and an --eval_strategy."},
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "How much metric_for_best_model must improve to count as better."}
    )

    dataloader_num_workers: int | None = field(
        default=None,
        metadata={"help": "DataLoader worker processes per training process (default: with a GPU, this process's share "
                          "of the CPU cores, at most 8; on the CPU, 0, which leaves the cores to the model)."},
    )
    # Every trainable parameter gets a gradient at every step (frozen text layers have requires_grad False and are
    # not DDP's concern; a fully frozen text tower freezes its projection too), so DDP need not search the graph
    # for unused parameters after each backward pass.
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "DDP's find_unused_parameters (off: every trainable CLIP4STR parameter gets a gradient)."},
    )

    def __post_init__(self):
        # Decided before the Trainer sets up its processes: several CPU processes need the CPU (gloo) setup.
        if self.use_cpu is None:
            self.use_cpu = _no_accelerator()
        if self.dataloader_num_workers is None:
            self.dataloader_num_workers = 0 if self.use_cpu else _workers_per_process()
        if self.metric_for_best_model is None and (self.load_best_model_at_end or self.early_stopping_patience):
            # The model that reads best (the Trainer's default would be the lowest eval loss); higher is better.
            self.metric_for_best_model = "word_accuracy"
        super().__post_init__()  # with use_cpu, it also turns pinned memory off (it only helps copies to a GPU)
        if self.fp16 and self.use_cpu:
            # accelerate has no float16 autocast on the CPU: the run would silently train in float32.
            raise ValueError("--fp16 needs a GPU; on the CPU use --bf16 (bfloat16 autocast) or neither.")
        if self.torch_compile:
            # Measured on a tiny model (CPU): 3 steps took 400 s instead of 0.4 s, for the same losses.
            raise ValueError(
                "--torch_compile is not supported: the training loss has shapes that change with every batch (its "
                "longest word, its number of distinct captions) and reads captions in Python between the decoders, "
                "so the model recompiles at almost every step. Train without it."
            )
        # Each process reads its own part of a stream (CLIP4STRTrainer.get_train_dataloader) instead of the main
        # process reading every batch and dispatching slices of it.
        if self.accelerator_config.dispatch_batches is None:
            self.accelerator_config.dispatch_batches = False
        if self.dataloader_pin_memory:  # batches in pinned memory can be copied to the GPU while it computes
            self.accelerator_config.non_blocking = True


def _workers_per_process(most: int = 8) -> int:
    """DataLoader workers for one of the training processes of this machine: its share of the usable cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(most, cores // max(1, local_processes) - 1))


def _no_accelerator() -> bool:
    if os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes"):
        return True
    mps = getattr(torch.backends, "mps", None)
    return not (torch.cuda.is_available() or (mps is not None and mps.is_available()))


__all__ = ["DataArguments", "ModelArguments", "STRTrainingArguments", "refuse_onnx_export"]
