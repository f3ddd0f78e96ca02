"""What happens to examples on their way to a batch, counted across DataLoader worker processes.

Examples are skipped inside a dataset's iteration, which runs in DataLoader worker processes when
`num_workers > 0`, where plain counters of the main process cannot be updated. [`DataCounts`] is a small table in
shared memory with one row per process (the main process and each worker): a worker adds to its own row, and the
main process sums the rows. Counts include examples that workers prepared ahead of the training step (DataLoader
prefetching).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping

import torch

logger = logging.getLogger(__name__)

SKIP_REASONS = {
    "not_a_string": "no label",  # the label is not a `str` (None, a number, ...)
    "missing_label": "no label",  # an LMDB record without a label key
    "absent_record": "record absent",  # an LMDB record that num-samples announces but the database does not hold
    "undecodable_label": "label not UTF-8",  # an LMDB label that is not UTF-8
    "too_long": "label too long",  # longer than max_label_length before the charset filter
    "empty_after_filtering": "label empty under the protocol",  # no character of the label is in the charset
    "missing_image": "no image",  # None, or a path that does not exist
    "undecodable_image": "unreadable image",  # bytes PIL cannot fully decode (truncated, wrong format, ...)
    "unreadable_record": "unreadable record",  # reading the record itself failed
    "other": "other reason",  # reasons from custom code that this module does not know
}
"""Why an example is skipped, with the words tables use for it: the one list for training logs and evaluation."""

COUNTED = ("kept", *SKIP_REASONS, "removed_characters")
"""Columns of [`DataCounts`]: examples kept, skipped by reason, and characters the charset filter removed from
kept labels."""

# Rows of the table: the main process and up to this many DataLoader workers.
_MAX_WORKER_ROWS = 256

CONSUMED_COUNTS_KEY = "data_counts"
"""Key of the counts a training example carries to its batch: itself (`kept`, `removed_characters`) and the examples
skipped just before it, as a `[len(COUNTED)]` vector. The collator stacks them into `[B, len(COUNTED)]`, and the
Trainer adds up the batches it trains on, so that the logged `data/*` counts are those of the training steps done
(not of the batches DataLoader workers prepared ahead, nor of batches re-read to reach a resumed step)."""


def count_vector(counts: Mapping[str, int]) -> torch.Tensor:
    """`counts` as a `[len(COUNTED)]` int64 tensor in [`COUNTED`] order; keys outside it are counted as `"other"`."""
    values = [0] * len(COUNTED)
    for key, count in counts.items():
        values[COUNTED.index(key) if key in COUNTED else COUNTED.index("other")] += int(count)
    return torch.tensor(values, dtype=torch.int64)


class DataCounts:
    r"""
    Counters shared by the main process and its DataLoader workers (see the module docstring).

    `add({"kept": 1, "removed_characters": 2})` counts in the calling process's row; `totals()` sums all rows into a
    `collections.Counter` of the non-zero counts, e.g. `Counter({"kept": 1024, "undecodable_image": 3})`;
    `reset()` sets everything back to zero. Keys outside [`COUNTED`] are counted as `"other"`.
    """

    def __init__(self):
        # Row 0: the main process; row 1 + k: DataLoader worker k. share_memory_() makes worker updates visible here.
        self._table = torch.zeros(1 + _MAX_WORKER_ROWS, len(COUNTED), dtype=torch.int64).share_memory_()
        self._warned_rows = False

    def add(self, counts: Mapping[str, int]) -> None:
        if not counts:
            return
        self._table[self._row()] += count_vector(counts)

    def _row(self) -> int:
        worker = torch.utils.data.get_worker_info()
        if worker is None:
            return 0
        if worker.id >= _MAX_WORKER_ROWS and not self._warned_rows:
            logger.warning(f"More than {_MAX_WORKER_ROWS} DataLoader workers: some share a row of the data counts.")
            self._warned_rows = True
        return 1 + worker.id % _MAX_WORKER_ROWS

    def column_totals(self) -> torch.Tensor:
        """`[len(COUNTED)]` sums over all processes, e.g. to add up over distributed ranks."""
        return self._table.sum(dim=0)

    def totals(self) -> collections.Counter:
        return as_counter(self.column_totals())

    def reset(self) -> None:
        self._table.zero_()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.totals())})"


def as_counter(column_totals: torch.Tensor) -> collections.Counter:
    """The non-zero entries of a `[len(COUNTED)]` tensor of [`DataCounts.column_totals`] as a Counter."""
    return collections.Counter(
        {key: int(value) for key, value in zip(COUNTED, column_totals.tolist()) if value}
    )


__all__ = ["CONSUMED_COUNTS_KEY", "COUNTED", "SKIP_REASONS", "DataCounts", "as_counter", "count_vector"]
