"""Batching: a list of filtered examples to the inputs of CLIP4STR."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from PIL import Image

from .counts import CONSUMED_COUNTS_KEY
from .filtering import PLACEHOLDER_KEY, RECORD_ID_KEY, decode_image

# Label id of every position of a placeholder row (the Trainer's "ignore" value): a real label always holds [E].
PLACEHOLDER_LABEL_ID = -100


class STRDataCollator:
    r"""
    Turns a list of examples (`{"image", "text"}`, as the filtered datasets give them) into CLIP4STR inputs: the
    processor resizes and normalises the images; labels become character ids + `[E]`, padded with `[P]` to one width,
    `max_label_length + 1`, whatever the batch's longest word: batches of different processes then join (accelerate's
    dispatching, the gathering of evaluation labels), and the model trims the padding to the batch's longest word.

    `None` items (records an [`~training.data.EvaluationDataset`] skipped, counted there) are left out; a batch of
    only `None` items gives empty tensors. Placeholder items (`{PLACEHOLDER_KEY: True, ...}`, a skipped record of an
    `EvaluationDataset` with `placeholders`) keep their row: a blank image (zeros), a label of
    `PLACEHOLDER_LABEL_ID` (-100) at every position (text `None` without `encode_labels`), and their counts. The
    same collator serves training and evaluation: augmentation is the training dataset's transform, applied before
    this.

    Args:
        processor ([`CLIP4STRProcessor`]): image processor + character tokenizer.
        max_label_length (`int`, defaults to 25): longer labels raise (the filter drops them before). `None`: any
            length, labels padded to the batch's longest word.
        encode_labels (`bool`, defaults to `True`): `False` returns the label texts as `texts` instead of `labels`
            (to score them under a comparison charset other than the model's).

    Returns (when called):
        `dict` with `pixel_values` (`torch.FloatTensor [B, 3, H, W]`) and `labels` (`torch.LongTensor [B, L + 1]`,
        L = `max_label_length`) or `texts` (`list[str]`, with `record_ids` when every example names its record, as
        an [`~training.data.EvaluationDataset`]'s do); for examples of the training datasets also `data_counts`
        (`torch.LongTensor [B, len(COUNTED)]`, see [`~training.data.counts.CONSUMED_COUNTS_KEY`]).
    """

    def __init__(self, processor, max_label_length: int | None = 25, encode_labels: bool = True):
        self.processor = processor
        self.max_label_length = max_label_length
        self.encode_labels = encode_labels

    def __call__(self, examples: list[dict | None]) -> dict:
        if not examples:
            raise ValueError("STRDataCollator got an empty batch: there is nothing to collate.")
        images, texts, consumed_counts, usable, record_ids = [], [], [], [], []
        for position, example in enumerate(examples):
            if example is None:
                continue
            if isinstance(example, Mapping) and example.get(PLACEHOLDER_KEY):
                usable.append(False)
                consumed_counts.append(example[CONSUMED_COUNTS_KEY])
                continue
            if not isinstance(example, Mapping) or "image" not in example or "text" not in example:
                found = f"keys {sorted(example)}" if isinstance(example, Mapping) else type(example).__name__
                raise ValueError(f"Example {position} of the batch is not a dict with 'image' and 'text' ({found}).")
            if not isinstance(example["text"], str):
                kind = type(example["text"]).__name__
                raise ValueError(f"Example {position} of the batch has a label of type {kind}.")
            images.append(self._image(example["image"], position))
            texts.append(example["text"])
            record_ids.append(example.get(RECORD_ID_KEY))
            usable.append(True)
            if CONSUMED_COUNTS_KEY in example:
                consumed_counts.append(example[CONSUMED_COUNTS_KEY])
        if not usable:
            return self._empty_batch()
        batch = self._empty_batch()
        if images:
            batch["pixel_values"] = self.processor(images=images)["pixel_values"]
            if self.encode_labels:
                labels = self.processor(text=texts, max_label_length=self.max_label_length)["labels"]
                batch["labels"] = self._padded(labels)
            else:
                batch["texts"] = texts
                if None not in record_ids:
                    batch["record_ids"] = record_ids
        if not all(usable):
            batch = self._with_placeholder_rows(batch, torch.tensor(usable))
        if consumed_counts:  # what each example counts for, added up by the Trainer when it uses the batch
            batch[CONSUMED_COUNTS_KEY] = torch.stack(consumed_counts)
        return batch

    def _with_placeholder_rows(self, batch: dict, usable: torch.BoolTensor) -> dict:
        """The batch of the usable examples with placeholder rows where `usable` (`[B]`) is `False`."""
        pixel_values = batch["pixel_values"].new_zeros(len(usable), *batch["pixel_values"].shape[1:])
        pixel_values[usable] = batch["pixel_values"]
        result = {"pixel_values": pixel_values}
        if self.encode_labels:
            labels = batch["labels"].new_full((len(usable), batch["labels"].shape[1]), PLACEHOLDER_LABEL_ID)
            labels[usable] = batch["labels"]
            result["labels"] = labels
        else:
            texts = iter(batch["texts"])
            result["texts"] = [next(texts) if is_usable else None for is_usable in usable.tolist()]
        return result

    def _padded(self, labels: torch.LongTensor) -> torch.LongTensor:
        """`[B, W]` -> `[B, max_label_length + 1]`, padded with `[P]`."""
        if self.max_label_length is None:
            return labels
        return torch.nn.functional.pad(
            labels, (0, self.max_label_length + 1 - labels.shape[1]), value=self.processor.tokenizer.pad_token_id
        )

    @staticmethod
    def _image(image, position: int) -> Image.Image:
        if isinstance(image, Image.Image):
            return image
        try:
            return decode_image(image)
        except (FileNotFoundError, ValueError, TypeError, OSError) as error:
            raise ValueError(
                f"Example {position} of the batch has an unreadable image ({error}); read the data through "
                "STRExampleFilter (e.g. build_train_dataset) so that such examples are skipped."
            ) from error

    def _empty_batch(self) -> dict:
        size = self.processor.image_processor.size
        batch = {"pixel_values": torch.empty(0, 3, size["height"], size["width"])}
        if self.encode_labels:
            batch["labels"] = torch.empty(0, 1 if self.max_label_length is None else self.max_label_length + 1,
                                          dtype=torch.long)
        else:
            batch["texts"] = []
        return batch


__all__ = ["PLACEHOLDER_LABEL_ID", "STRDataCollator"]
