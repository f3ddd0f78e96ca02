"""Training and evaluation data for CLIP4STR: sources, label clean-up, skipping of broken examples, batching.

The pieces, in the order data flows through them:

1. `load_str_dataset(source)` opens one source as a `datasets` dataset with an `image` column (kept *undecoded*:
   `{"bytes", "path"}`) and a `text` column. A source is a Hub dataset id, a local parquet / arrow file or folder, an
   imagefolder (labels in `metadata.jsonl` / `metadata.csv`), or an LMDB database / tree of databases in the STR
   community format (read by `LmdbDataset`, wrapped with `from_generator`).
2. `interleave_str_datasets` mixes several sources with sampling weights.
3. `STRExampleFilter` decodes every image and cleans every label (`LabelPreprocessor`, the reference's rules).
   Examples whose image does not decode or whose label is dropped are skipped and counted, never raised: see
   "How skip counts reach the training loop" below.
4. `STRDataCollator` augments (optionally) and turns a list of examples into `pixel_values` and `labels`.

`build_train_dataset` does 1-3 for a list of sources.

How skip counts reach the training loop
---------------------------------------
Examples are dropped inside the dataset's iteration, which runs in DataLoader worker processes when
`num_workers > 0`, where counters of the main process cannot be updated. So the counts travel *with the data*: the
filter attaches to each kept example a small dict, `example["skipped"]`, of the examples it skipped (by reason) since
the previous kept one; skips after the last kept example of a stream are added to that last example (the filter looks
one example ahead), so no count is lost at the end of an epoch. The collator adds these dicts (and the number of
examples it collated, as `"kept"`) into a small counter table in shared memory, one row per process (the main
process and each worker): the collator itself also runs in the workers, and the table is the only state that all
copies of the collator share. `collator.stats` (main process) sums the table into a `collections.Counter`, e.g.
`Counter({"kept": 1024, "undecodable_image": 3, "too_long": 1})`. The batches themselves only hold model inputs.
Counts include batches that workers prepared ahead of the training step (DataLoader prefetching).

Labels dropped *before* iteration are not in `stats`; they are logged: LMDB labels are filtered once when the
database is opened, as the reference does (so lengths are right), and map-style `datasets.Dataset` labels are
filtered column-wise before training starts.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import logging
import math
import os
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import datasets
import lmdb
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from modeling_clip4str import CHARSET_94, load_image, to_rgb_image

logger = logging.getLogger(__name__)

#: Reasons an example is skipped (plus "kept"), in the order `STRDataCollator.stats` stores them.
SKIP_REASONS = (
    "undecodable_image",  # the bytes are not an image PIL can fully decode (truncated, wrong format, ...)
    "missing_image",  # no image at all (None, or a path that does not exist)
    "too_long",  # label longer than max_label_length before charset filtering
    "empty_after_filtering",  # no character of the label is in the charset
    "not_a_string",  # the label is not a `str` (None, a number, ...)
    "other",  # reasons from custom filters that this module does not know
)
STAT_KEYS = ("kept",) + SKIP_REASONS
#: Key of the per-example dict of skip counts (see the module docstring).
SKIPPED_KEY = "skipped"

# Rows of the shared counter table: the main process and up to this many DataLoader workers.
_MAX_WORKER_ROWS = 256
# Features of every source after `load_str_dataset`, so that sources can be interleaved.
STR_FEATURES = datasets.Features({"image": datasets.Image(decode=False), "text": datasets.Value("string")})
# LMDB streams are cut into shards (contiguous index ranges) so DataLoader workers and shuffling can split them.
_LMDB_TARGET_SHARDS = 64
_LMDB_MAX_SAMPLES_PER_SHARD = 20_000
# Image failures logged with their cause per process (all are counted).
_MAX_REPORTED_ERRORS = 5
# Fewer shards than this in a streamed source limits DataLoader parallelism: warn.
_FEW_SHARDS = 8
# Keyword arguments of `datasets.load_dataset` that mean nothing for LMDB sources.
_HUB_ONLY_KWARGS = {"token", "revision", "trust_remote_code", "download_config", "download_mode", "storage_options",
                    "verification_mode", "name", "data_files", "data_dir", "num_proc", "features"}


# ----------------------------------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------------------------------
class LabelPreprocessor:
    r"""
    Cleans training and evaluation labels as the reference does, in this order:

    1. remove all whitespace (`remove_whitespace`, on by default);
    2. Unicode NFKD fold to ASCII (`normalize_unicode`; by default on only when the charset is pure ASCII, so that
       non-Latin charsets keep their characters);
    3. drop labels longer than `max_label_length` (before charset filtering: a long label stays dropped even if it
       would shrink);
    4. adapt to the charset: lower-case the label if the charset has no upper-case letters (it equals its
       `.lower()`), else upper-case it if it has no lower-case ones; then remove every character not in the charset;
    5. drop labels that end up empty.

    Args:
        charset (`str`): the characters the model reads.
        max_label_length (`int`, defaults to 25): longest label kept.
        remove_whitespace (`bool`, defaults to `True`).
        normalize_unicode (`bool`, *optional*): NFKD fold to ASCII; default: only if `charset` is ASCII.

    Calling it returns the cleaned label, or `None` for a dropped one. `counts` (a `collections.Counter`) records
    `"kept"` and the reasons for drops: `"too_long"`, `"empty_after_filtering"`, `"not_a_string"`.
    `process(label)` does the same without counting and also returns the reason.
    """

    def __init__(
        self,
        charset: str,
        max_label_length: int = 25,
        remove_whitespace: bool = True,
        normalize_unicode: bool | None = None,
    ):
        if not isinstance(charset, str) or not charset:
            raise ValueError("`charset` must be a non-empty string of the characters the model reads.")
        if isinstance(max_label_length, bool) or not isinstance(max_label_length, int) or max_label_length < 1:
            raise ValueError(f"`max_label_length` must be a positive integer, got {max_label_length!r}.")
        self.charset = charset
        self.max_label_length = max_label_length
        self.remove_whitespace = bool(remove_whitespace)
        self.normalize_unicode = charset.isascii() if normalize_unicode is None else bool(normalize_unicode)
        self.lowercase_only = charset == charset.lower()
        self.uppercase_only = not self.lowercase_only and charset == charset.upper()
        self._allowed = frozenset(charset)
        self.counts: collections.Counter = collections.Counter()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(charset={self.charset!r}, max_label_length={self.max_label_length}, "
            f"remove_whitespace={self.remove_whitespace}, normalize_unicode={self.normalize_unicode})"
        )

    def process(self, label) -> tuple[str | None, str]:
        """Clean one label without counting it.

        Returns:
            `(label, "kept")`, or `(None, reason)` with reason `"not_a_string"`, `"too_long"` or
            `"empty_after_filtering"`.
        """
        if not isinstance(label, str):
            return None, "not_a_string"
        if self.remove_whitespace:
            label = "".join(label.split())
        if self.normalize_unicode:
            label = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
        # Length is checked on the label as written, before unsupported characters are removed (reference order).
        if len(label) > self.max_label_length:
            return None, "too_long"
        if self.lowercase_only:
            label = label.lower()
        elif self.uppercase_only:
            label = label.upper()
        label = "".join(char for char in label if char in self._allowed)
        if not label:
            return None, "empty_after_filtering"
        return label, "kept"

    def __call__(self, label) -> str | None:
        cleaned, reason = self.process(label)
        self.counts[reason] += 1
        return cleaned

    def config(self) -> dict:
        """The settings, e.g. for fingerprints and logs."""
        return dict(
            charset=self.charset,
            max_label_length=self.max_label_length,
            remove_whitespace=self.remove_whitespace,
            normalize_unicode=self.normalize_unicode,
        )


# ----------------------------------------------------------------------------------------------------------------------
# LMDB
# ----------------------------------------------------------------------------------------------------------------------
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


def _open_lmdb(root: Path) -> lmdb.Environment:
    # Read-only, without the lock file (the data may sit on a read-only disk) or readahead (random access).
    return lmdb.open(str(root), readonly=True, lock=False, readahead=False, meminit=False, max_readers=1,
                     create=False, subdir=True)


# One environment per database and process: lmdb refuses to open the same database twice in a process.
_ENVIRONMENTS: dict[str, tuple[int, lmdb.Environment]] = {}


def _environment(root: Path) -> lmdb.Environment:
    """The read-only environment of `root` for this process, opened on first use."""
    key = os.path.realpath(root)
    pid = os.getpid()
    entry = _ENVIRONMENTS.get(key)
    if entry is not None and entry[0] == pid:
        return entry[1]
    try:
        env = _open_lmdb(root)
    except lmdb.Error:
        if entry is None:
            raise
        # A forked child (e.g. a DataLoader worker) of a process that had it open: lmdb refuses a second open here,
        # and the inherited read-only mapping can be read safely (lock=False: no shared lock table is involved).
        env = entry[1]
    _ENVIRONMENTS[key] = (pid, env)
    return env


def _close_environment(root: Path) -> None:
    """Close this process's environment of `root`, if it opened one."""
    entry = _ENVIRONMENTS.get(os.path.realpath(root))
    if entry is not None and entry[0] == os.getpid():
        del _ENVIRONMENTS[os.path.realpath(root)]
        entry[1].close()


def _is_open_here(root: Path) -> bool:
    entry = _ENVIRONMENTS.get(os.path.realpath(root))
    return entry is not None and entry[0] == os.getpid()


class LmdbDataset(torch.utils.data.Dataset):
    r"""
    One LMDB database in the STR community format: keys `b"num-samples"`, `b"image-%09d"` (encoded image bytes) and
    `b"label-%09d"` (UTF-8 text), numbered from 1.

    All labels are read once when the dataset is created; with a `label_preprocessor`, only samples whose label
    passes it are kept (with the cleaned label), as the reference does, so `len()` is the number of usable samples.
    `counts` records what happened to every sample: `"kept"`, the preprocessor's reasons, and `"missing_label"` /
    `"undecodable_label"` for broken entries. Labels are stored compactly (one UTF-8 buffer and offsets), which keeps
    worker processes small and quick to start.

    The environment is opened lazily, read-only (`lock=False`, `readahead=False`), once per process and database
    (lmdb allows no second open), so the dataset can be handed to DataLoader workers: a spawned worker opens its own,
    a forked one opens its own unless it inherited an open one, which it then reads.

    Args:
        root (`str` or `Path`): the directory holding `data.mdb`.
        label_preprocessor ([`LabelPreprocessor`], *optional*): without it labels are kept as stored.
        name (`str`, *optional*): a display name (callers use the path relative to the tree root); defaults to the
            directory name.

    Items are dicts `{"image": bytes or None, "text": str}` (`None` if the image key is missing).
    """

    def __init__(self, root, label_preprocessor: LabelPreprocessor | None = None, name: str | None = None):
        self.root = Path(root).expanduser()
        if not (self.root / "data.mdb").is_file():
            raise FileNotFoundError(f"No LMDB database at {self.root} (data.mdb is missing).")
        self.name = name if name is not None else self.root.name
        self.label_preprocessor = label_preprocessor
        self.counts: collections.Counter = collections.Counter()
        self._read_labels()

    def _read_labels(self):
        # Close the environment again if it was opened just for this: DataLoader workers forked later then open
        # their own, as LMDB prefers.
        opened_here = not _is_open_here(self.root)
        try:
            self._read_labels_from(_environment(self.root))
        finally:
            if opened_here:
                _close_environment(self.root)

    def _read_labels_from(self, env: lmdb.Environment):
        preprocessor = self.label_preprocessor
        encoded, indices = [], []
        with env.begin() as txn:
            raw_count = txn.get(b"num-samples")
            if raw_count is None:
                raise ValueError(f"{self.root} is not an STR LMDB database: it has no 'num-samples' key.")
            try:
                self.num_samples_in_database = int(raw_count.decode().strip())
            except ValueError:
                raise ValueError(f"{self.root}: 'num-samples' is not an integer ({raw_count[:40]!r}).") from None
            progress = tqdm(
                range(1, self.num_samples_in_database + 1),
                desc=f"Reading labels of {self.name}",
                unit=" labels",
                disable=self.num_samples_in_database < 100_000,
            )
            for index in progress:
                raw = txn.get(b"label-%09d" % index)
                if raw is None:
                    self.counts["missing_label"] += 1
                    continue
                try:
                    label = raw.decode("utf-8")
                except UnicodeDecodeError:
                    self.counts["undecodable_label"] += 1
                    continue
                if preprocessor is not None:
                    label, reason = preprocessor.process(label)
                    preprocessor.counts[reason] += 1
                    if label is None:
                        self.counts[reason] += 1
                        continue
                self.counts["kept"] += 1
                encoded.append(label.encode("utf-8"))
                indices.append(index)
        self._label_buffer = b"".join(encoded)
        self._label_offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        if encoded:
            np.cumsum([len(item) for item in encoded], out=self._label_offsets[1:])
        self._indices = np.asarray(indices, dtype=np.int64)
        stat = (self.root / "data.mdb").stat()
        # Identifies this content for `datasets` caching without hashing every label.
        self.fingerprint = hashlib.sha256(
            repr((str(self.root.resolve()), stat.st_size, stat.st_mtime_ns, self.num_samples_in_database,
                  preprocessor.config() if preprocessor is not None else None)).encode()
        ).hexdigest()[:32]

    @property
    def env(self) -> lmdb.Environment:
        """This process's environment of the database (shared by every dataset over the same files)."""
        return _environment(self.root)

    def __len__(self) -> int:
        return len(self._indices)

    def label(self, i: int) -> str:
        """The (cleaned) label of item `i`, without reading the image."""
        start, stop = self._label_offsets[i], self._label_offsets[i + 1]
        return self._label_buffer[start:stop].decode("utf-8")

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


def _lmdb_shard_ranges(length: int) -> list[tuple[int, int]]:
    """Contiguous `[start, stop)` ranges covering `length` items, enough of them for workers and shuffling."""
    if length == 0:
        return []
    count = max(math.ceil(length / _LMDB_MAX_SAMPLES_PER_SHARD), min(length, _LMDB_TARGET_SHARDS))
    bounds = [round(k * length / count) for k in range(count + 1)]
    return [(start, stop) for start, stop in zip(bounds, bounds[1:]) if stop > start]


def _generate_lmdb_examples(shards):
    """`from_generator` body: yields `{"image": {"bytes", "path"}, "text"}` for each (dataset, start, stop) shard."""
    for dataset, start, stop in shards:
        for i in range(start, stop):
            item = dataset[i]
            image = None if item["image"] is None else {"bytes": item["image"], "path": None}
            yield {"image": image, "text": item["text"]}


def _load_lmdb_source(root, streaming: bool, label_preprocessor: LabelPreprocessor | None, load_kwargs: dict):
    root = Path(root).expanduser()
    directories = find_lmdb_dirs(root)
    base = root.parent if root.is_file() else root
    lmdb_datasets = []
    for directory in directories:
        relative = directory.relative_to(base).as_posix() if directory != base else directory.name
        dataset = LmdbDataset(directory, label_preprocessor=label_preprocessor, name=relative)
        lmdb_datasets.append(dataset)
        dropped = {reason: n for reason, n in dataset.counts.items() if reason != "kept"}
        logger.info(
            f"LMDB {relative}: {len(dataset)} of {dataset.num_samples_in_database} samples kept"
            + (f"; dropped at load time: {dict(sorted(dropped.items()))}" if dropped else "")
        )
    shards = [(dataset, start, stop) for dataset in lmdb_datasets for start, stop in _lmdb_shard_ranges(len(dataset))]
    if not shards:
        raise ValueError(f"No usable sample in the LMDB database(s) under {root} (every label was dropped).")
    ignored = sorted(set(load_kwargs) & _HUB_ONLY_KWARGS)
    unknown = sorted(set(load_kwargs) - _HUB_ONLY_KWARGS - {"cache_dir", "keep_in_memory"})
    if unknown:
        raise TypeError(f"Unexpected arguments for an LMDB source: {', '.join(unknown)}.")
    if ignored:
        logger.debug(f"Arguments {ignored} do not apply to LMDB source {root}; ignored.")
    if streaming:
        dataset = datasets.IterableDataset.from_generator(
            _generate_lmdb_examples, features=STR_FEATURES, gen_kwargs={"shards": shards}
        )
    else:
        total = sum(len(d) for d in lmdb_datasets)
        if total > 200_000:
            logger.warning(
                f"Copying {total} LMDB samples into the datasets cache (streaming=False); stream large training sets."
            )
        fingerprint = hashlib.sha256("".join(d.fingerprint for d in lmdb_datasets).encode()).hexdigest()[:32]
        dataset = datasets.Dataset.from_generator(
            _generate_lmdb_examples,
            features=STR_FEATURES,
            gen_kwargs={"shards": shards},
            cache_dir=load_kwargs.get("cache_dir"),
            keep_in_memory=bool(load_kwargs.get("keep_in_memory", False)),
            fingerprint=fingerprint,
        )
    return dataset, lmdb_datasets


# ----------------------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------------------
def _scan_local_directory(root: Path) -> set[str]:
    """Which kinds of data files a directory tree holds: "lmdb", "parquet", "arrow", "imagefolder"."""
    kinds = set()
    for directory, subdirectories, files in os.walk(root, followlinks=True):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        for name in files:
            if name == "data.mdb":
                return {"lmdb"}  # LMDB wins: its folders may also hold other files
            lower = name.lower()
            if lower.endswith(".parquet"):
                kinds.add("parquet")
            elif lower.endswith(".arrow"):
                kinds.add("arrow")
            elif lower in ("metadata.jsonl", "metadata.csv", "metadata.parquet"):
                kinds.add("imagefolder")
    return kinds


def _is_saved_to_disk(path: Path) -> bool:
    """Whether `path` was written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _load_saved_to_disk(path: Path, split: str, streaming: bool, load_kwargs: dict):
    """`datasets.load_from_disk` (the reader of `save_to_disk` output), as one split, streamed if asked."""
    loaded = datasets.load_from_disk(str(path), keep_in_memory=load_kwargs.get("keep_in_memory"))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"{path} has no split {split!r}; its splits are {list(loaded)}.")
        loaded = loaded[split]
    if streaming:
        # Several shards, so DataLoader workers can share the work.
        loaded = loaded.to_iterable_dataset(num_shards=max(1, min(len(loaded), _LMDB_TARGET_SHARDS)))
    return loaded


def _looks_like_path(source: str) -> bool:
    return (
        source.startswith(("/", "./", "../", "~", "\\"))
        or os.path.splitdrive(source)[0] != ""
        or source.lower().endswith((".parquet", ".arrow", ".mdb"))
        or source.count("/") > 1
    )


def load_str_dataset(
    source: str,
    split: str = "train",
    streaming: bool = True,
    image_column: str = "image",
    text_column: str = "text",
    label_preprocessor: LabelPreprocessor | None = None,
    **load_kwargs,
) -> datasets.IterableDataset | datasets.Dataset:
    r"""
    Open one scene-text source as a `datasets` dataset with exactly the columns `image` and `text`.

    `source` may be:

    - a Hub dataset id: `datasets.load_dataset(source, split=split, streaming=streaming, **load_kwargs)`;
    - a local `.parquet` / `.arrow` file, or a directory of them (splits follow the `datasets` file-name rules, e.g.
      `train-00000-of-00004.parquet`; files without a split name are all `train`);
    - an imagefolder directory: images plus `metadata.jsonl` / `metadata.csv` (`file_name` and the text column),
      read with the `imagefolder` builder;
    - an LMDB directory or a tree of them (`data.mdb` files, STR community format), read with [`LmdbDataset`]
      and wrapped with `IterableDataset.from_generator` / `Dataset.from_generator`. `split` does not apply.
      `label_preprocessor` filters LMDB labels at load time, as the reference does; it is ignored for other
      sources, whose labels are cleaned by [`STRExampleFilter`].

    Local and Hub sources go through `datasets.load_dataset` alike.

    Args:
        source (`str`): see above.
        split (`str`, defaults to `"train"`): split of Hub / local datasets.
        streaming (`bool`, defaults to `True`): return an `IterableDataset` (nothing is downloaded or copied up
            front); `False` returns a map-style `Dataset` (cached by `datasets`).
        image_column, text_column (`str`): source columns renamed to `image` and `text`.
        label_preprocessor ([`LabelPreprocessor`], *optional*): see above.
        load_kwargs: passed to `datasets.load_dataset` (e.g. `cache_dir`, `token`, `revision`, `name`).

    Returns:
        `datasets.IterableDataset` or `datasets.Dataset` with features `image: Image(decode=False)` (dicts
        `{"bytes", "path"}`, decoded later where failures can be counted) and `text: string`. Other columns are
        removed so that sources can be interleaved.

    Raises:
        FileNotFoundError: a path that does not exist, or a directory without any readable data.
        ValueError: a missing image or text column (the message lists the columns there are).
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"`source` must be a string or path, got {type(source).__name__}.")
    source_text = os.fspath(source)
    path = Path(source_text).expanduser()
    if path.exists():
        if path.is_file():
            lower = path.name.lower()
            if lower == "data.mdb":
                dataset, _ = _load_lmdb_source(path, streaming, label_preprocessor, load_kwargs)
                return dataset
            builder = "parquet" if lower.endswith(".parquet") else "arrow" if lower.endswith(".arrow") else None
            if builder is None:
                raise ValueError(
                    f"Cannot read {path}: expected a .parquet or .arrow file, or a directory (parquet, arrow, "
                    "imagefolder or LMDB)."
                )
            dataset = datasets.load_dataset(
                builder, data_files={split: str(path)}, split=split, streaming=streaming, **load_kwargs
            )
        else:
            kinds = _scan_local_directory(path)
            if "lmdb" in kinds:
                dataset, _ = _load_lmdb_source(path, streaming, label_preprocessor, load_kwargs)
                return dataset
            if "parquet" in kinds:
                builder = "parquet"
            elif "arrow" in kinds:
                builder = "arrow"
            elif "imagefolder" in kinds:
                builder = "imagefolder"
            else:
                raise FileNotFoundError(
                    f"No training data found in {path}: expected LMDB databases (data.mdb), .parquet or .arrow "
                    "files, or an imagefolder with metadata.jsonl / metadata.csv."
                )
            if builder == "arrow" and _is_saved_to_disk(path):
                dataset = _load_saved_to_disk(path, split, streaming, load_kwargs)
            else:
                # The directory goes through the same `load_dataset` path as a Hub repository (module inference,
                # split names from file and folder names, README configs).
                dataset = datasets.load_dataset(str(path), split=split, streaming=streaming, **load_kwargs)
    elif _looks_like_path(source_text):
        raise FileNotFoundError(f"Dataset path {source_text} does not exist.")
    else:
        dataset = datasets.load_dataset(source_text, split=split, streaming=streaming, **load_kwargs)
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise ValueError(f"{source_text} gave several splits ({list(dataset)}); pass `split=`.")
    return _standardize_columns(dataset, image_column, text_column, source_text)


def _standardize_columns(dataset, image_column: str, text_column: str, source: str):
    """Rename to `image` / `text`, drop other columns, keep images undecoded."""
    columns = dataset.column_names
    if columns is not None:
        missing = [column for column in (image_column, text_column) if column not in columns]
        if missing:
            raise ValueError(
                f"{source} has no column(s) {missing}; its columns are {columns}. Pass `image_column=` / "
                "`text_column=`."
            )
        if image_column == text_column:
            raise ValueError(f"`image_column` and `text_column` are both {image_column!r}.")
        dataset = dataset.select_columns([image_column, text_column])
    renames = {old: new for old, new in ((image_column, "image"), (text_column, "text")) if old != new}
    if renames:
        dataset = dataset.rename_columns(renames)
    features = dataset.features
    if features is not None:
        image_feature = features["image"]
        if isinstance(image_feature, datasets.Image):
            if image_feature.decode:
                dataset = dataset.cast_column("image", datasets.Image(decode=False))
        elif isinstance(image_feature, datasets.Value) and image_feature.dtype in ("binary", "large_binary"):
            dataset = dataset.cast_column("image", datasets.Image(decode=False))
        else:
            logger.warning(
                f"The image column of {source} has type {image_feature}; it is passed on as is and decoded later."
            )
        text_feature = features["text"]
        if isinstance(text_feature, datasets.Value) and text_feature.dtype == "large_string":
            dataset = dataset.cast_column("text", datasets.Value("string"))
    return dataset


def _reshard(dataset):
    """Split a stream's shards further where `datasets` can (parquet: one shard per row group)."""
    if not isinstance(dataset, datasets.IterableDataset) or not hasattr(dataset, "reshard"):
        return dataset
    try:
        return dataset.reshard()
    except (NotImplementedError, ValueError, TypeError) as error:
        logger.debug(f"Could not reshard {dataset}: {error}")
        return dataset


def interleave_str_datasets(datasets_list, weights: Sequence[float] | None = None, seed: int = 0):
    """Mix sources with `datasets.interleave_datasets`: sampling probabilities are `weights` normalised to sum to 1
    (equal by default), and the mix ends once every source has been exhausted at least once (`"all_exhausted"`:
    smaller sources are repeated).

    Args:
        datasets_list (`list`): datasets of one kind (all `Dataset` or all `IterableDataset`) with the same features,
            as `load_str_dataset` returns them.
        weights (`list[float]`, *optional*): one non-negative weight per dataset. Datasets of weight 0 are left out
            (they would never be exhausted).
        seed (`int`): seed of the sampling.
    """
    datasets_list = list(datasets_list)
    if not datasets_list:
        raise ValueError("No dataset to interleave.")
    if weights is None:
        weights = [1.0] * len(datasets_list)
    weights = [float(weight) for weight in weights]
    if len(weights) != len(datasets_list):
        raise ValueError(f"Got {len(weights)} weights for {len(datasets_list)} datasets.")
    if any(not math.isfinite(weight) or weight < 0 for weight in weights):
        raise ValueError(f"Weights must be finite and non-negative, got {weights}.")
    if sum(weights) <= 0:
        raise ValueError("At least one weight must be positive.")
    kept = [(dataset, weight) for dataset, weight in zip(datasets_list, weights) if weight > 0]
    if len(kept) < len(datasets_list):
        logger.warning(f"Leaving out {len(datasets_list) - len(kept)} dataset(s) of weight 0.")
    kinds = {isinstance(dataset, datasets.IterableDataset) for dataset, _ in kept}
    if len(kinds) > 1:
        raise ValueError("Cannot interleave streaming (IterableDataset) and map-style (Dataset) sources together.")
    if len(kept) == 1:
        return kept[0][0]
    total = sum(weight for _, weight in kept)
    return datasets.interleave_datasets(
        [dataset for dataset, _ in kept],
        probabilities=[weight / total for _, weight in kept],
        seed=seed,
        stopping_strategy="all_exhausted",
    )


# ----------------------------------------------------------------------------------------------------------------------
# Decoding and filtering
# ----------------------------------------------------------------------------------------------------------------------
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
    Decodes each example's image to an RGB PIL image and cleans its label; skips (and counts) the examples that
    cannot be used instead of raising, so one broken sample never stops a training run.

    Reasons: `"undecodable_image"`, `"missing_image"`, and the label preprocessor's `"too_long"`,
    `"empty_after_filtering"`, `"not_a_string"`. The label is checked first (it is cheaper than decoding).

    Use [`~STRExampleFilter.apply`] on a dataset: it returns a torch dataset of kept examples
    `{"image": PIL.Image (RGB), "text": str, "skipped": {reason: count}}` that works with any number of DataLoader
    workers; `"skipped"` carries the skip counts to [`STRDataCollator`] (see the module docstring). `counts` holds
    the totals seen *in this process*.

    Args:
        label_preprocessor ([`LabelPreprocessor`], *optional*): without it labels only need to be non-empty strings.
    """

    def __init__(self, label_preprocessor: LabelPreprocessor | None = None):
        self.label_preprocessor = label_preprocessor
        self.counts: collections.Counter = collections.Counter()

    def process(self, example: Mapping) -> tuple[dict | None, str]:
        """Check one example.

        Returns:
            `(example, "kept")` with the decoded image and cleaned label (other keys are kept), or `(None, reason)`.
        """
        if not isinstance(example, Mapping):
            raise TypeError(f"Examples must be dicts with 'image' and 'text', got {type(example).__name__}.")
        label = example.get("text")
        if self.label_preprocessor is not None:
            label, reason = self.label_preprocessor.process(label)
            if label is None:
                return None, reason
        elif not isinstance(label, str):
            return None, "not_a_string"
        elif not label:
            return None, "empty_after_filtering"
        try:
            image = decode_image(example.get("image"))
        except FileNotFoundError as error:
            self._report(error)
            return None, "missing_image"
        except Exception as error:  # noqa: BLE001 - any failure to read one image must only skip that example
            self._report(error)
            return None, "undecodable_image"
        kept = {key: value for key, value in example.items() if key != SKIPPED_KEY}
        kept["image"] = image
        kept["text"] = label
        return kept, "kept"

    def _report(self, error: Exception):
        # The first few failures of each process are logged with their cause; after that they are only counted.
        self._reported = getattr(self, "_reported", 0) + 1
        if self._reported <= _MAX_REPORTED_ERRORS:
            more = " (further ones are only counted)" if self._reported == _MAX_REPORTED_ERRORS else ""
            logger.warning(f"Skipping an example whose image cannot be read: {type(error).__name__}: {error}{more}")

    def __call__(self, example: Mapping) -> dict | None:
        """The kept example, or `None` (counted in `counts`)."""
        kept, reason = self.process(example)
        self.counts[reason] += 1
        return kept

    def iterate(self, examples: Iterable[Mapping]) -> Iterator[dict]:
        """Yield the kept examples of a stream, each with `"skipped"`: the skip counts since the previous kept one.

        Skips after the last kept example are added to it (the stream is read one example ahead), so every skip is
        counted. A stream without any usable example yields nothing; its skips are logged as a warning.
        """
        pending: collections.Counter = collections.Counter()
        held = None
        for example in examples:
            kept, reason = self.process(example)
            self.counts[reason] += 1
            if kept is None:
                pending[reason] += 1
                continue
            if held is not None:
                yield held
            kept[SKIPPED_KEY] = dict(pending)
            pending.clear()
            held = kept
        if held is not None:
            if pending:
                held[SKIPPED_KEY] = dict(collections.Counter(held[SKIPPED_KEY]) + pending)
            yield held
        elif pending:
            logger.warning(f"A data stream ended without any usable example; skipped: {dict(pending)}.")

    def apply(self, dataset) -> FilteredIterableDataset | FilteredMapDataset:
        """Wrap a dataset: streams (`datasets.IterableDataset`, torch `IterableDataset`, generators) give a
        [`FilteredIterableDataset`]; map-style data (`datasets.Dataset`, torch `Dataset`, lists) a
        [`FilteredMapDataset`]."""
        if isinstance(dataset, (datasets.IterableDataset, torch.utils.data.IterableDataset)):
            return FilteredIterableDataset(dataset, self)
        if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
            return FilteredMapDataset(dataset, self)
        if isinstance(dataset, Iterable):
            return FilteredIterableDataset(dataset, self)
        raise TypeError(f"Cannot filter a {type(dataset).__name__}: expected a dataset or an iterable of examples.")


class FilteredIterableDataset(torch.utils.data.IterableDataset):
    r"""
    The kept examples of a stream (see [`STRExampleFilter.iterate`]). Every batch is full: skipped examples are
    replaced by the next ones of the stream.

    In DataLoader workers, a `datasets.IterableDataset` source splits its shards between the workers itself; any
    other source is split round-robin, example by example.

    Args:
        source: a `datasets.IterableDataset`, a torch `IterableDataset` or any re-iterable of example dicts.
        example_filter ([`STRExampleFilter`]).
    """

    def __init__(self, source, example_filter: STRExampleFilter):
        self.source = source
        self.example_filter = example_filter

    def __iter__(self) -> Iterator[dict]:
        stream = iter(self.source)
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.num_workers > 1 and not isinstance(self.source, datasets.IterableDataset):
            stream = itertools.islice(stream, worker.id, None, worker.num_workers)
        return self.example_filter.iterate(stream)

    def set_epoch(self, epoch: int):
        """Forwarded to the source (a `datasets.IterableDataset` reshuffles with it)."""
        if hasattr(self.source, "set_epoch"):
            self.source.set_epoch(epoch)

    @property
    def n_shards(self) -> int | None:
        return getattr(self.source, "n_shards", None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r})"


class FilteredMapDataset(torch.utils.data.Dataset):
    r"""
    Map-style view of the usable examples of a map-style source.

    If the source is a `datasets.Dataset` and there is a label preprocessor, labels are checked up front from the
    text column (cheap), so `len()` counts only examples with a usable label; `label_drop_counts` tells what was
    dropped. Images are decoded on access: an index whose image does not decode returns the next usable example
    instead (wrapping around) with the skip counted in its `"skipped"` dict, so the DataLoader still gets full
    batches (the substitute example appears twice in that epoch).

    Args:
        source: a `datasets.Dataset`, a torch map-style `Dataset` or a list of example dicts.
        example_filter ([`STRExampleFilter`]).
    """

    def __init__(self, source, example_filter: STRExampleFilter):
        self.source = source
        self.example_filter = example_filter
        self.label_drop_counts: collections.Counter = collections.Counter()
        self.indices: np.ndarray | None = None
        preprocessor = example_filter.label_preprocessor
        if isinstance(source, datasets.Dataset) and preprocessor is not None and "text" in source.column_names:
            keep = []
            texts = source["text"]
            for index, label in enumerate(tqdm(texts, desc="Checking labels", disable=len(source) < 100_000)):
                _, reason = preprocessor.process(label)
                if reason == "kept":
                    keep.append(index)
                else:
                    self.label_drop_counts[reason] += 1
            self.indices = np.asarray(keep, dtype=np.int64)
            if self.label_drop_counts:
                logger.info(
                    f"Dropped {sum(self.label_drop_counts.values())} of {len(source)} examples for their labels: "
                    f"{dict(self.label_drop_counts)}."
                )

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.source)

    def _source_index(self, i: int) -> int:
        return int(self.indices[i]) if self.indices is not None else i

    def __getitem__(self, i) -> dict:
        length = len(self)
        if length == 0:
            raise IndexError("The filtered dataset is empty: every example was dropped.")
        if i < 0:
            i += length
        if not 0 <= i < length:
            raise IndexError(f"Index {i} is out of range ({length} examples).")
        skipped: collections.Counter = collections.Counter()
        for step in range(length):
            position = (i + step) % length
            kept, reason = self.example_filter.process(self.source[self._source_index(position)])
            self.example_filter.counts[reason] += 1
            if kept is not None:
                kept[SKIPPED_KEY] = dict(skipped)
                return kept
            skipped[reason] += 1
        raise RuntimeError(f"No usable example in the whole dataset; skipped: {dict(skipped)}.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r}, examples={len(self)})"


# ----------------------------------------------------------------------------------------------------------------------
# Batching
# ----------------------------------------------------------------------------------------------------------------------
class STRDataCollator:
    r"""
    Turns a list of examples into CLIP4STR inputs.

    Each image (a PIL image, or anything [`decode_image`] reads) is augmented with `augment` if given (on the PIL
    image, *before* the resize, as the reference does), then the processor resizes and normalises it; labels become
    character ids + `[E]`, padded with `[P]` (`processor(text=...)`).

    `stats` is a `collections.Counter` of the examples collated (`"kept"`) and of those skipped upstream (from each
    example's `"skipped"` dict), summed over the main process and all DataLoader workers (shared memory; see the
    module docstring). `reset_stats()` sets it back to zero.

    Args:
        processor ([`CLIP4STRProcessor`]): image processor + character tokenizer.
        augment (`Callable[[PIL.Image], PIL.Image]`, *optional*): e.g. [`~training.augment.RandAugmentSTR`].
        max_label_length (`int`, defaults to 25): longer labels raise (the filter drops them before).

    Returns (when called):
        `dict` with `pixel_values` (`torch.FloatTensor [B, 3, H, W]`) and `labels` (`torch.LongTensor [B, L + 1]`).
    """

    def __init__(self, processor, augment=None, max_label_length: int = 25):
        if augment is not None and not callable(augment):
            raise TypeError(f"`augment` must be callable, got {type(augment).__name__}.")
        self.processor = processor
        self.augment = augment
        self.max_label_length = max_label_length
        # Row 0: the main process; row 1 + k: DataLoader worker k. share_memory_() makes worker updates visible here.
        self._counts = torch.zeros(1 + _MAX_WORKER_ROWS, len(STAT_KEYS), dtype=torch.int64).share_memory_()
        self._warned_rows = False

    def __call__(self, examples: list[dict]) -> dict:
        if not examples:
            raise ValueError("STRDataCollator got an empty batch: there is nothing to collate.")
        images, texts = [], []
        skipped: collections.Counter = collections.Counter()
        for position, example in enumerate(examples):
            if not isinstance(example, Mapping) or "image" not in example or "text" not in example:
                found = f"keys {sorted(example)}" if isinstance(example, Mapping) else type(example).__name__
                raise ValueError(f"Example {position} of the batch is not a dict with 'image' and 'text' ({found}).")
            image = example["image"]
            if not isinstance(image, Image.Image):
                try:
                    image = decode_image(image)
                except (FileNotFoundError, ValueError, TypeError, OSError) as error:
                    raise ValueError(
                        f"Example {position} of the batch has an unreadable image ({error}); apply "
                        "STRExampleFilter to the dataset so such examples are skipped."
                    ) from error
            if self.augment is not None:
                image = self.augment(image)
            images.append(image)
            text = example["text"]
            if not isinstance(text, str):
                raise ValueError(f"Example {position} of the batch has a label of type {type(text).__name__}.")
            texts.append(text)
            skipped.update(example.get(SKIPPED_KEY) or {})
        pixel_values = self.processor(images=images)["pixel_values"]
        labels = self.processor(text=texts, max_label_length=self.max_label_length)["labels"]
        # Counted only once the batch exists, so a batch that raised is not counted.
        self._record(skipped, kept=len(examples))
        return {"pixel_values": pixel_values, "labels": labels}

    def _record(self, skipped: Mapping[str, int], kept: int):
        worker = torch.utils.data.get_worker_info()
        row = 0 if worker is None else 1 + worker.id
        if row > _MAX_WORKER_ROWS:
            if not self._warned_rows:
                logger.warning(f"More than {_MAX_WORKER_ROWS} DataLoader workers: data stats rows are shared.")
                self._warned_rows = True
            row = 1 + (worker.id % _MAX_WORKER_ROWS)
        values = [0] * len(STAT_KEYS)
        values[0] = kept
        for reason, count in skipped.items():
            column = STAT_KEYS.index(reason) if reason in STAT_KEYS[1:] else STAT_KEYS.index("other")
            values[column] += int(count)
        self._counts[row] += torch.tensor(values, dtype=torch.int64)

    @property
    def stats(self) -> collections.Counter:
        """Examples collated (`"kept"`) and skipped upstream by reason, over all processes so far."""
        totals = self._counts.sum(dim=0).tolist()
        return collections.Counter({key: int(value) for key, value in zip(STAT_KEYS, totals) if value})

    def reset_stats(self):
        self._counts.zero_()


# ----------------------------------------------------------------------------------------------------------------------
# Everything together
# ----------------------------------------------------------------------------------------------------------------------
def build_train_dataset(
    sources: Sequence[str] | str,
    weights: Sequence[float] | None = None,
    processor=None,
    charset: str | None = None,
    max_label_length: int = 25,
    image_column: str = "image",
    text_column: str = "text",
    streaming: bool = True,
    seed: int = 0,
    split: str = "train",
    remove_whitespace: bool = True,
    normalize_unicode: bool | None = None,
    shuffle_buffer_size: int = 10_000,
    max_samples: int | None = None,
    **load_kwargs,
) -> FilteredIterableDataset | FilteredMapDataset:
    r"""
    Load each source, interleave them, and filter: the dataset to hand to a DataLoader with [`STRDataCollator`].

    Args:
        sources (`list[str]`): see [`load_str_dataset`].
        weights (`list[float]`, *optional*): sampling weights of the sources (equal by default).
        processor ([`CLIP4STRProcessor`], *optional*): gives the charset when `charset` is not given.
        charset (`str`, *optional*): characters kept in labels; default: the processor's, else the 94 ASCII ones.
        max_label_length, remove_whitespace, normalize_unicode: see [`LabelPreprocessor`].
        image_column, text_column, split: see [`load_str_dataset`].
        streaming (`bool`, defaults to `True`): stream (an iterable dataset) or load map-style data.
        seed (`int`): seed of interleaving and shuffling.
        shuffle_buffer_size (`int`, defaults to 10000): streaming only; shards are shuffled and examples go
            through a buffer of this size (0 turns shuffling off). Map-style data is shuffled by the DataLoader.
        max_samples (`int`, *optional*): keep only the first examples (before filtering).
        load_kwargs: passed to `datasets.load_dataset` (e.g. `cache_dir`, `token`).

    Returns:
        A [`FilteredIterableDataset`] (streaming) or [`FilteredMapDataset`] of
        `{"image": PIL.Image, "text": str, "skipped": dict}`. LMDB labels dropped at load time are logged.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [os.fspath(source) for source in sources]
    if not sources:
        raise ValueError("Give at least one data source.")
    if weights is not None and len(weights) != len(sources):
        raise ValueError(f"Got {len(weights)} weights for {len(sources)} sources.")
    if charset is None:
        charset = getattr(getattr(processor, "tokenizer", None), "charset", None) or CHARSET_94
    label_options = dict(
        charset=charset,
        max_label_length=max_label_length,
        remove_whitespace=remove_whitespace,
        normalize_unicode=normalize_unicode,
    )
    load_time = LabelPreprocessor(**label_options)
    loaded = []
    for source in sources:
        loaded.append(
            load_str_dataset(
                source,
                split=split,
                streaming=streaming,
                image_column=image_column,
                text_column=text_column,
                label_preprocessor=load_time,
                **load_kwargs,
            )
        )
    if load_time.counts:
        dropped = {reason: n for reason, n in load_time.counts.items() if reason != "kept"}
        total = sum(load_time.counts.values())
        logger.info(
            f"LMDB labels: {load_time.counts['kept']} of {total} kept"
            + (f"; dropped at load time: {dict(sorted(dropped.items()))}" if dropped else "")
        )
    if streaming:
        # DataLoader workers split a stream by shards, and an interleaved stream has as many shards as its smallest
        # source: cut parquet sources into row groups so that a single-file source does not idle the workers.
        loaded = [_reshard(dataset) for dataset in loaded]
        for source, dataset in zip(sources, loaded):
            shards = getattr(dataset, "n_shards", None)
            if shards is not None and shards < _FEW_SHARDS:
                logger.warning(
                    f"{source} streams as {shards} shard(s): at most {shards} DataLoader worker(s) will read the "
                    f"{'mix' if len(loaded) > 1 else 'data'}; split it into more files (or parquet row groups) to "
                    "load in parallel."
                )
    combined = interleave_str_datasets(loaded, weights=weights, seed=seed)
    if streaming and shuffle_buffer_size and isinstance(combined, datasets.IterableDataset):
        combined = combined.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(f"`max_samples` must be positive, got {max_samples}.")
        if isinstance(combined, datasets.IterableDataset):
            combined = combined.take(max_samples)
        else:
            combined = combined.select(range(min(max_samples, len(combined))))
    example_filter = STRExampleFilter(LabelPreprocessor(**label_options))
    return example_filter.apply(combined)


__all__ = [
    "SKIPPED_KEY",
    "SKIP_REASONS",
    "STAT_KEYS",
    "STR_FEATURES",
    "FilteredIterableDataset",
    "FilteredMapDataset",
    "LabelPreprocessor",
    "LmdbDataset",
    "STRDataCollator",
    "STRExampleFilter",
    "build_train_dataset",
    "decode_image",
    "find_lmdb_dirs",
    "interleave_str_datasets",
    "load_str_dataset",
]
