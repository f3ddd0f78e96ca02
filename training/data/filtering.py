"""Skipping what cannot be used: decode each example's image, clean its label, count what is left out.

One broken sample must never stop a training run or an evaluation: an example whose image does not decode or whose
label the label rule drops is skipped and counted by reason (see [`~training.data.counts.SKIP_REASONS`]), never
raised. Three dataset views put [`STRExampleFilter`] between a source and a DataLoader:

- [`FilteredIterableDataset`]: the kept examples of a stream (training on streamed data; any number of workers).
- [`FilteredMapDataset`]: map-style training data; labels are checked up front so `len()` counts usable examples,
  and an index whose image does not decode returns the next usable example, so every batch is full.
- [`EvaluationDataset`]: every record of a map-style source once, in order, `None` for a skipped one; nothing is
  substituted, so no example is scored twice.

Each label is cleaned once: by the filter when the example is read, or, for [`FilteredMapDataset`], up front, after
which the filter is handed the cleaned label instead of cleaning it again.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping

import datasets
import datasets.distributed
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from modeling_clip4str import load_image, to_rgb_image
from modeling_clip4str.labels_clip4str import CleanedLabel, LabelCleaner

from .counts import CONSUMED_COUNTS_KEY, DataCounts, count_vector
from .packed import PackedStrings

logger = logging.getLogger(__name__)

# Image failures logged with their cause per process (all are counted).
_MAX_REPORTED_ERRORS = 5
# Failures to read a record of a map-style source that only skip it (anything else is a bug and raises).
_RECORD_ERRORS = (KeyError, OSError, ValueError, UnicodeDecodeError)

PLACEHOLDER_KEY = "skipped_record"
"""Marks the item of a record an [`EvaluationDataset`] skipped, when it gives placeholders instead of `None`."""

RECORD_ID_KEY = "record_id"
"""Names the record an [`EvaluationDataset`] item came from (without placeholders): its key number in an LMDB
database, else its index in the source."""


def record_id(source, i: int) -> int:
    """The id of item `i` of a map-style source: the LMDB key number when the source (or the source a
    `torch.utils.data.Subset` takes from) knows it, else `i`."""
    if isinstance(source, torch.utils.data.Subset):
        return record_id(source.dataset, source.indices[i])
    database_index = getattr(source, "database_index", None)
    return int(database_index(i)) if callable(database_index) else int(i)


def decode_image(value) -> Image.Image:
    """An example's image (encoded bytes, a `{"bytes", "path"}` dict, a path, a PIL image or an array) as a fully
    decoded RGB PIL image.

    Raises:
        FileNotFoundError: no image (`None`, or a path that does not exist).
        ValueError: the data is not a decodable image.
    """
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is not None:
            value = data
        elif path and "://" in str(path) and not os.path.exists(path):
            # A file of a streamed Hub repository (e.g. an imagefolder): datasets knows how to fetch it.
            value = datasets.Image().decode_example({"path": path, "bytes": None})
        elif path:
            value = path
        else:
            raise FileNotFoundError("The example has an empty image ({'bytes': None, 'path': None}).")
    if value is None:
        raise FileNotFoundError("The example has no image.")
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, Image.Image):
        try:
            value.load()
        except Exception as error:  # a lazily opened, truncated file
            raise ValueError(f"Could not decode image: {error}") from error
        return to_rgb_image(value)
    if isinstance(value, (bytes, bytearray, str, os.PathLike)):
        return to_rgb_image(load_image(value))
    return to_rgb_image(value)


class STRExampleFilter:
    r"""
    Decodes an example's image to an RGB PIL image and cleans its label, or skips the example; counts either way.

    `example_filter(example)` returns the example (other keys kept) with `image` decoded and `text` cleaned, or
    `None`. Examples are mappings with `"image"` and `"text"`, or `(image, text)` pairs. The label is checked first
    (it is cheaper than decoding). `counts` ([`DataCounts`]) holds `"kept"`, the skip reasons and the characters the
    charset filter removed, summed over the main process and DataLoader workers.

    Args:
        label_cleaner ([`LabelCleaner`], *optional*): the label rule; without it labels only need to be non-empty
            strings.
    """

    def __init__(self, label_cleaner: LabelCleaner | None = None):
        self.label_cleaner = label_cleaner
        self.counts = DataCounts()
        self._reported = 0

    def clean_label(self, label) -> CleanedLabel:
        if self.label_cleaner is not None:
            return self.label_cleaner(label)
        if not isinstance(label, str):
            return CleanedLabel(None, "not_a_string", 0)
        return CleanedLabel(label or None, "kept" if label else "empty_after_filtering", 0)

    def __call__(self, example, cleaned_label: CleanedLabel | None = None) -> dict | None:
        """Filter one example; `cleaned_label` is its label already cleaned by [`clean_label`] (not cleaned again)."""
        kept, counts = self.check(example, cleaned_label)
        self.counts.add(counts)
        return kept

    def check(self, example, cleaned_label: CleanedLabel | None = None) -> tuple[dict | None, dict[str, int]]:
        """Filter one example without counting it in `counts`: the kept example (or `None`) and what it counts for,
        e.g. `{"kept": 1, "removed_characters": 2}` or `{"undecodable_image": 1}`."""
        if isinstance(example, (tuple, list)) and len(example) == 2:
            example = {"image": example[0], "text": example[1]}
        elif not isinstance(example, Mapping):
            raise TypeError(
                f"Examples must be dicts with 'image' and 'text' or (image, text) pairs, got {type(example).__name__}."
            )
        label = cleaned_label if cleaned_label is not None else self.clean_label(example.get("text"))
        if label.text is None:
            return None, {label.reason: 1}
        try:
            image = decode_image(example.get("image"))
        except Exception as error:  # noqa: BLE001 - any failure to read one image must only skip that example
            self._report(error)
            return None, {"missing_image" if isinstance(error, FileNotFoundError) else "undecodable_image": 1}
        counts = {"kept": 1, "removed_characters": label.removed_characters}
        return {**example, "image": image, "text": label.text}, counts

    def _report(self, error: Exception):
        # The first few failures of each process are logged with their cause; after that they are only counted.
        self._reported += 1
        if self._reported <= _MAX_REPORTED_ERRORS:
            more = " (further ones are only counted)" if self._reported == _MAX_REPORTED_ERRORS else ""
            logger.warning(f"Skipping an example whose image cannot be read: {type(error).__name__}: {error}{more}")

    def apply(self, dataset, transform: Callable | None = None) -> FilteredIterableDataset | FilteredMapDataset:
        """Wrap training data: streams (`datasets.IterableDataset`, torch `IterableDataset`, generators) give a
        [`FilteredIterableDataset`]; map-style data (`datasets.Dataset`, torch `Dataset`, lists) a
        [`FilteredMapDataset`]. `transform` (e.g. augmentation) is applied to the image of every kept example."""
        if isinstance(dataset, (datasets.IterableDataset, torch.utils.data.IterableDataset)):
            return FilteredIterableDataset(dataset, self, transform)
        if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
            return FilteredMapDataset(dataset, self, transform)
        if isinstance(dataset, Iterable):
            return FilteredIterableDataset(dataset, self, transform)
        raise TypeError(f"Cannot filter a {type(dataset).__name__}: expected a dataset or an iterable of examples.")


class _FilteredView:
    """What the dataset views share: `stats` and `reset_stats()` from their filter's counts, and the transform."""

    def __init__(self, source, example_filter: STRExampleFilter, transform: Callable | None = None):
        self.source = source
        self.example_filter = example_filter
        self.transform = transform

    @property
    def stats(self) -> collections.Counter:
        """Examples kept, skipped by reason, and characters removed from labels, over all processes so far."""
        return self.example_filter.counts.totals()

    def reset_stats(self) -> None:
        self.example_filter.counts.reset()

    def _filtered_and_counted(self, example, pending: collections.Counter, cleaned_label=None) -> dict | None:
        """Filter `example`, count it in `counts` and in `pending`; a kept example leaves with the `pending` counts
        (itself and the skips before it) under [`CONSUMED_COUNTS_KEY`], for the Trainer to count when it trains on
        it, and `pending` starts again."""
        kept, counts = self.example_filter.check(example, cleaned_label)
        self.example_filter.counts.add(counts)
        pending.update(counts)
        if kept is None:
            return None
        kept[CONSUMED_COUNTS_KEY] = count_vector(pending)
        pending.clear()
        return kept

    def _transformed(self, example: dict) -> dict:
        if self.transform is not None:
            example["image"] = self.transform(example["image"])
        return example


class FilteredIterableDataset(_FilteredView, torch.utils.data.IterableDataset):
    r"""
    The kept examples of a stream. Every batch is full: skipped examples are replaced by the next ones of the stream.

    In DataLoader workers, a `datasets.IterableDataset` source splits its shards between the workers itself; any
    other source is split round-robin, example by example. With several training processes, [`split_by_node`] gives
    each process its own part of a `datasets.IterableDataset` source (which its workers then split again).

    Args:
        source: a `datasets.IterableDataset`, a torch `IterableDataset` or any re-iterable of examples.
        example_filter ([`STRExampleFilter`]).
        transform (`Callable[[PIL.Image], PIL.Image]`, *optional*): applied to each kept image (e.g. augmentation).
    """

    def __iter__(self) -> Iterator[dict]:
        stream = iter(self.source)
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.num_workers > 1 and not isinstance(self.source, datasets.IterableDataset):
            stream = itertools.islice(stream, worker.id, None, worker.num_workers)
        pending = collections.Counter()
        for example in stream:
            kept = self._filtered_and_counted(example, pending)
            if kept is not None:
                yield self._transformed(kept)

    def set_epoch(self, epoch: int):
        """Forwarded to the source (a `datasets.IterableDataset` reshuffles with it)."""
        if hasattr(self.source, "set_epoch"):
            self.source.set_epoch(epoch)

    @property
    def n_shards(self) -> int | None:
        return getattr(self.source, "n_shards", None)

    @property
    def can_split_by_node(self) -> bool:
        """Whether [`split_by_node`] can give each training process its own part (a `datasets.IterableDataset`
        source)."""
        return isinstance(self.source, datasets.IterableDataset)

    def split_by_node(self, rank: int, world_size: int) -> FilteredIterableDataset:
        """The part of the stream that process `rank` of `world_size` reads, sharing this view's filter (and counts)
        and transform: `datasets.distributed.split_dataset_by_node` on the source. Every process reads only its own
        shards when the source has a multiple of `world_size` of them (interleaved sources: each source's shards, so
        the sampling weights hold in every process); otherwise every process reads every record and keeps one in
        `world_size` (only the kept ones are decoded)."""
        if not self.can_split_by_node:
            raise TypeError(
                f"Only a datasets.IterableDataset source can be split between processes, not a "
                f"{type(self.source).__name__}; load the stream with `datasets` (e.g. build_train_dataset)."
            )
        if world_size > 1 and self.source.n_shards % world_size:
            logger.warning(
                f"The training stream has {self.source.n_shards} shard(s), not a multiple of the {world_size} "
                "processes: each process reads every record and keeps one in "
                f"{world_size}. Split the sources into a multiple of {world_size} files or parquet row groups."
            )
        part = datasets.distributed.split_dataset_by_node(self.source, rank=rank, world_size=world_size)
        return FilteredIterableDataset(part, self.example_filter, self.transform)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r})"


class FilteredMapDataset(_FilteredView, torch.utils.data.Dataset):
    r"""
    Map-style view of the usable examples of a map-style source, for training.

    If the source is a `datasets.Dataset` with a `text` column, labels are cleaned up front from that column (cheap)
    and kept, so `len()` counts only examples with a usable label and the filter does not clean them again;
    `label_drop_counts` tells what was dropped (logged, not in `stats`). Images are decoded on access: an index whose
    image does not decode returns the next usable example instead (wrapping around), so the DataLoader still gets
    full batches (the substitute example appears twice in that epoch); the skip is counted in `stats`.

    Args:
        source: a `datasets.Dataset`, a torch map-style `Dataset` or a list of examples.
        example_filter ([`STRExampleFilter`]).
        transform (`Callable[[PIL.Image], PIL.Image]`, *optional*): applied to each kept image (e.g. augmentation).
    """

    def __init__(self, source, example_filter: STRExampleFilter, transform: Callable | None = None):
        super().__init__(source, example_filter, transform)
        self.label_drop_counts: collections.Counter = collections.Counter()
        self._indices = self._labels = self._removed = None
        if isinstance(source, datasets.Dataset) and "text" in source.column_names:
            self._clean_labels_up_front(source["text"])

    def _clean_labels_up_front(self, texts):
        indices, labels, removed = [], [], []
        for index, label in enumerate(tqdm(texts, desc="Cleaning labels", disable=len(texts) < 100_000)):
            cleaned = self.example_filter.clean_label(label)
            if cleaned.text is None:
                self.label_drop_counts[cleaned.reason] += 1
                continue
            indices.append(index)
            labels.append(cleaned.text)
            removed.append(cleaned.removed_characters)
        self._indices = np.asarray(indices, dtype=np.int64)
        self._labels = PackedStrings(labels)
        self._removed = np.asarray(removed, dtype=np.int32)
        if self.label_drop_counts:
            logger.info(
                f"Dropped {sum(self.label_drop_counts.values())} of {len(texts)} examples for their labels: "
                f"{dict(self.label_drop_counts)}."
            )

    def __len__(self) -> int:
        return len(self._indices) if self._indices is not None else len(self.source)

    def _filtered(self, position: int, pending: collections.Counter) -> dict | None:
        if self._indices is None:
            return self._filtered_and_counted(self.source[position], pending)
        label = CleanedLabel(self._labels[position], "kept", int(self._removed[position]))
        return self._filtered_and_counted(self.source[int(self._indices[position])], pending, cleaned_label=label)

    def __getitem__(self, i) -> dict:
        length = len(self)
        if length == 0:
            raise IndexError("The filtered dataset is empty: every example was dropped.")
        if i < 0:
            i += length
        if not 0 <= i < length:
            raise IndexError(f"Index {i} is out of range ({length} examples).")
        pending = collections.Counter()
        for step in range(length):
            kept = self._filtered((i + step) % length, pending)
            if kept is not None:
                return self._transformed(kept)
        raise RuntimeError(f"No usable example in the whole dataset; counts: {dict(self.stats)}.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r}, examples={len(self)})"


class EvaluationDataset(_FilteredView, torch.utils.data.Dataset):
    r"""
    Every record of a map-style source once, in order, for evaluation: item `i` is record `i` filtered, or `None`
    when it was skipped (counted in `stats`, with `"unreadable_record"` for a record that could not be read at all).
    [`~training.data.STRDataCollator`] leaves the `None` items out of the batch.

    With `placeholders` (the Trainer sets it), every item is a dict carrying what its record counts for under
    [`CONSUMED_COUNTS_KEY`], and a skipped record is `{PLACEHOLDER_KEY: True, CONSUMED_COUNTS_KEY: ...}`, which the
    collator turns into a placeholder row: batches then keep one row per record, so that batches of several
    processes have the same size and the distributed sampler's repeated records can be trimmed by position.

    Args:
        source: a `datasets.Dataset`, an [`~training.data.LmdbDataset`], a torch map-style `Dataset` or a list of
            examples (mappings or `(image, text)` pairs).
        example_filter ([`STRExampleFilter`]).
        placeholders (`bool`, defaults to `False`): skipped records as placeholders instead of `None`.
    """

    transform = None

    def __init__(self, source, example_filter: STRExampleFilter, placeholders: bool = False):
        self.source = source
        self.example_filter = example_filter
        self.placeholders = placeholders

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict | None:
        kept, counts = self._checked(i)
        self.example_filter.counts.add(counts)
        if not self.placeholders:
            if kept is not None:
                kept[RECORD_ID_KEY] = record_id(self.source, i)
            return kept
        if kept is None:
            return {PLACEHOLDER_KEY: True, CONSUMED_COUNTS_KEY: count_vector(counts)}
        kept[CONSUMED_COUNTS_KEY] = count_vector(counts)
        return kept

    def _checked(self, i: int) -> tuple[dict | None, dict[str, int]]:
        try:
            record = self.source[i]
        except _RECORD_ERRORS as error:  # a broken record, not a bug
            logger.debug(f"Unreadable record {i}: {error}")
            return None, {"unreadable_record": 1}
        return self.example_filter.check(record)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r}, records={len(self)})"


__all__ = [
    "PLACEHOLDER_KEY",
    "RECORD_ID_KEY",
    "EvaluationDataset",
    "FilteredIterableDataset",
    "FilteredMapDataset",
    "STRExampleFilter",
    "decode_image",
    "record_id",
]
