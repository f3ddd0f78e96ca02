"""LMDB databases in the STR community format: finding them, opening them once per process, reading them.

A database holds `b"num-samples"`, `b"image-%09d"` (encoded image bytes) and `b"label-%09d"` (UTF-8 text), numbered
from 1. [`lmdb_source`] turns a tree of them into a `datasets` dataset, cut into shards for DataLoader workers.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
import os
import threading
from pathlib import Path

import datasets
import lmdb
import numpy as np
import torch
from tqdm.auto import tqdm

from .packed import PackedStrings

logger = logging.getLogger(__name__)

# LMDB streams are cut into shards (contiguous index ranges) so DataLoader workers and shuffling can split them.
_TARGET_SHARDS = 64
_MAX_SAMPLES_PER_SHARD = 20_000


def find_lmdb_dirs(root) -> list[Path]:
    """Every directory at or below `root` that holds a `data.mdb` file, sorted (symbolic links are followed).

    Raises:
        FileNotFoundError: `root` does not exist or holds no LMDB database.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"LMDB root {root} does not exist.")
    if root.is_file():
        # Accept the path of a data.mdb file itself.
        if root.name == "data.mdb":
            return [root.parent]
        raise FileNotFoundError(f"{root} is a file, not a directory holding LMDB databases (data.mdb).")
    found, seen = [], set()
    for directory, subdirectories, files in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:  # a link cycle, or two links to the same data: read it once
            subdirectories[:] = []
            continue
        seen.add(real)
        subdirectories.sort()
        if "data.mdb" in files:
            found.append(Path(directory))
    if not found:
        raise FileNotFoundError(f"No LMDB database (a directory holding data.mdb) at or below {root}.")
    return sorted(found)


class _Environments:
    """The read-only environment of each database for this process, opened on first use.

    lmdb refuses to open the same files twice in one process, so every dataset over a database shares one
    environment. Opening is serialised by a lock: `datasets` reads the shards of a shuffled stream from several
    threads at once, and two threads opening the same database together would otherwise both try (the second one
    then fails with "... is already open in this process").
    """

    def __init__(self):
        self._open: dict[str, tuple[int, lmdb.Environment]] = {}
        self._lock = threading.Lock()
        # A worker forked while another thread held the lock would inherit it locked.
        os.register_at_fork(after_in_child=self._renew_lock)

    def _renew_lock(self):
        self._lock = threading.Lock()

    def get(self, root: Path) -> lmdb.Environment:
        key, pid = os.path.realpath(root), os.getpid()
        with self._lock:
            entry = self._open.get(key)
            if entry is not None and entry[0] == pid:
                return entry[1]
            try:
                env = _open_read_only(root)
            except lmdb.Error:
                if entry is None:
                    raise
                # A forked child (e.g. a DataLoader worker) of a process that had it open: lmdb refuses a second
                # open here, and the inherited read-only mapping can be read safely (no lock table is involved).
                env = entry[1]
            self._open[key] = (pid, env)
            return env

    def is_open_here(self, root: Path) -> bool:
        entry = self._open.get(os.path.realpath(root))
        return entry is not None and entry[0] == os.getpid()

    def close(self, root: Path) -> None:
        """Close this process's environment of `root`, if it opened one."""
        key = os.path.realpath(root)
        with self._lock:
            entry = self._open.get(key)
            if entry is not None and entry[0] == os.getpid():
                del self._open[key]
                entry[1].close()


def _open_read_only(root: Path) -> lmdb.Environment:
    # Without the lock file (the data may sit on a read-only disk) or readahead (reads are random).
    return lmdb.open(str(root), readonly=True, lock=False, readahead=False, meminit=False, max_readers=1,
                     create=False, subdir=True)


_ENVIRONMENTS = _Environments()


class LmdbDataset(torch.utils.data.Dataset):
    r"""
    One LMDB database, read as stored: items are `{"image": bytes or None, "text": str}` (`None` when the image key
    is missing).

    All labels are read when the dataset is created (compactly, so worker processes stay small and start quickly);
    records without a label, or whose label is not UTF-8, are left out, so `len()` counts the labelled records.
    `counts` says what happened to every record: `"kept"`, `"missing_label"`, `"undecodable_label"`,
    `"absent_record"` (announced by `num-samples`, but neither its label nor its image is in the database). Labels
    are not cleaned here: the example filter does that, once, for every kind of source.

    The environment is opened lazily, read-only, once per process and database, so the dataset can be handed to
    DataLoader workers: a spawned worker opens its own, a forked one opens its own unless it inherited an open one,
    which it then reads.

    Args:
        root (`str` or `Path`): the directory holding `data.mdb`.
        name (`str`, *optional*): a display name (callers use the path relative to the tree root); defaults to the
            directory name.
    """

    def __init__(self, root, name: str | None = None):
        self.root = Path(root).expanduser()
        if not (self.root / "data.mdb").is_file():
            raise FileNotFoundError(f"No LMDB database at {self.root} (data.mdb is missing).")
        self.name = name if name is not None else self.root.name
        self.counts: collections.Counter = collections.Counter()
        # Close the environment again if it was opened just for this: DataLoader workers forked later then open
        # their own, as LMDB prefers.
        opened_here = not _ENVIRONMENTS.is_open_here(self.root)
        try:
            self._read_labels()
        finally:
            if opened_here:
                _ENVIRONMENTS.close(self.root)
        stat = (self.root / "data.mdb").stat()
        # Identifies this content for `datasets` caching without hashing every label.
        self.fingerprint = hashlib.sha256(
            repr((str(self.root.resolve()), stat.st_size, stat.st_mtime_ns, self.num_samples_in_database)).encode()
        ).hexdigest()[:32]

    def _read_labels(self):
        labels, indices = [], []
        with self.env.begin() as txn:
            raw_count = txn.get(b"num-samples")
            if raw_count is None:
                raise ValueError(f"{self.root} is not an STR LMDB database: it has no 'num-samples' key.")
            try:
                self.num_samples_in_database = int(raw_count.decode().strip())
            except ValueError:
                raise ValueError(f"{self.root}: 'num-samples' is not an integer ({raw_count[:40]!r}).") from None
            numbers = range(1, self.num_samples_in_database + 1)
            for index in tqdm(numbers, desc=f"Reading labels of {self.name}", unit=" labels",
                              disable=len(numbers) < 100_000):
                raw = txn.get(b"label-%09d" % index)
                if raw is None:
                    # Neither label nor image: `num-samples` overstates what the database holds.
                    absent = txn.get(b"image-%09d" % index) is None
                    self.counts["absent_record" if absent else "missing_label"] += 1
                    continue
                try:
                    labels.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    self.counts["undecodable_label"] += 1
                    continue
                indices.append(index)
        self.counts["kept"] = len(labels)
        self._labels = PackedStrings(labels)
        self._indices = np.asarray(indices, dtype=np.int64)

    @property
    def env(self) -> lmdb.Environment:
        """This process's environment of the database (shared by every dataset over the same files)."""
        return _ENVIRONMENTS.get(self.root)

    def __len__(self) -> int:
        return len(self._indices)

    def label(self, i: int) -> str:
        """The label of item `i`, without reading the image."""
        return self._labels[i]

    def database_index(self, i: int) -> int:
        """The 1-based key number in the database of item `i`."""
        return int(self._indices[i])

    def __getitem__(self, i) -> dict:
        length = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"LmdbDataset indices must be integers, got {type(i).__name__}.")
        if i < 0:
            i += length
        if not 0 <= i < length:
            raise IndexError(f"Index {i} is out of range for {self.name} ({length} samples).")
        with self.env.begin() as txn:
            image = txn.get(b"image-%09d" % self._indices[i])
        return {"image": image, "text": self.label(i)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, name={self.name!r}, samples={len(self)})"


def _shard_ranges(length: int) -> list[tuple[int, int]]:
    """Contiguous `[start, stop)` ranges covering `length` items, enough of them for workers and shuffling."""
    if length == 0:
        return []
    count = max(math.ceil(length / _MAX_SAMPLES_PER_SHARD), min(length, _TARGET_SHARDS))
    bounds = [round(k * length / count) for k in range(count + 1)]
    return [(start, stop) for start, stop in zip(bounds, bounds[1:]) if stop > start]


def _generate_examples(shards):
    """`from_generator` body: yields `{"image": {"bytes", "path"}, "text"}` for each (dataset, start, stop) shard."""
    for dataset, start, stop in shards:
        for i in range(start, stop):
            item = dataset[i]
            image = None if item["image"] is None else {"bytes": item["image"], "path": None}
            yield {"image": image, "text": item["text"]}


def lmdb_source(root, features: datasets.Features, streaming: bool, cache_dir=None, keep_in_memory: bool = False):
    """Every database at or below `root` as one `datasets.IterableDataset` (`streaming`) or `datasets.Dataset`
    (copied into the `datasets` cache) with `features` (an undecoded image column and a text column)."""
    root = Path(root).expanduser()
    base = root.parent if root.is_file() else root
    databases = []
    for directory in find_lmdb_dirs(root):
        relative = directory.relative_to(base).as_posix() if directory != base else directory.name
        database = LmdbDataset(directory, name=relative)
        databases.append(database)
        dropped = {reason: n for reason, n in database.counts.items() if reason != "kept"}
        logger.info(
            f"LMDB {relative}: {len(database)} of {database.num_samples_in_database} records have a label"
            + (f"; left out: {dict(sorted(dropped.items()))}" if dropped else "")
        )
    shards = [(database, start, stop) for database in databases for start, stop in _shard_ranges(len(database))]
    if not shards:
        raise ValueError(f"No labelled record in the LMDB database(s) under {root}.")
    if streaming:
        return datasets.IterableDataset.from_generator(_generate_examples, features=features,
                                                       gen_kwargs={"shards": shards})
    total = sum(len(database) for database in databases)
    if total > 200_000:
        logger.warning(
            f"Copying {total} LMDB samples into the datasets cache (streaming=False); stream large training sets."
        )
    return datasets.Dataset.from_generator(
        _generate_examples,
        features=features,
        gen_kwargs={"shards": shards},
        cache_dir=cache_dir,
        keep_in_memory=keep_in_memory,
        fingerprint=hashlib.sha256("".join(d.fingerprint for d in databases).encode()).hexdigest()[:32],
    )


__all__ = ["LmdbDataset", "find_lmdb_dirs", "lmdb_source"]
