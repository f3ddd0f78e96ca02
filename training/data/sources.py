"""Opening scene-text sources as `datasets` datasets, mixing them, and building the filtered training and evaluation
datasets from a list of sources."""

from __future__ import annotations

import collections
import itertools
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets

from modeling_clip4str import CHARSET_94
from modeling_clip4str.labels_clip4str import LabelCleaner

from .filtering import EvaluationDataset, FilteredIterableDataset, FilteredMapDataset, STRExampleFilter
from .lmdb import lmdb_source

logger = logging.getLogger(__name__)

STR_FEATURES = datasets.Features({"image": datasets.Image(decode=False), "text": datasets.Value("string")})
"""Features of every source after [`load_str_dataset`], so that sources can be interleaved."""

# Shards of a `save_to_disk` dataset when streamed, so DataLoader workers can share the work.
_SAVED_TO_DISK_SHARDS = 64
# Records of each training source read before training starts, to find one usable example (see `_check_usable`).
_PREFLIGHT_RECORDS = 1_000
# Fewer shards than this in a streamed source limits DataLoader parallelism: warn.
_FEW_SHARDS = 8
# Keyword arguments of `datasets.load_dataset` that mean nothing for LMDB sources.
_HUB_ONLY_KWARGS = {"token", "revision", "trust_remote_code", "download_config", "download_mode", "storage_options",
                    "verification_mode", "name", "data_files", "data_dir", "num_proc", "features"}


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
        loaded = loaded.to_iterable_dataset(num_shards=max(1, min(len(loaded), _SAVED_TO_DISK_SHARDS)))
    return loaded


def _load_lmdb(path: Path, streaming: bool, load_kwargs: dict):
    unknown = sorted(set(load_kwargs) - _HUB_ONLY_KWARGS - {"cache_dir", "keep_in_memory"})
    if unknown:
        raise TypeError(f"Unexpected arguments for an LMDB source: {', '.join(unknown)}.")
    ignored = sorted(set(load_kwargs) & _HUB_ONLY_KWARGS)
    if ignored:
        logger.debug(f"Arguments {ignored} do not apply to LMDB source {path}; ignored.")
    return lmdb_source(path, STR_FEATURES, streaming, cache_dir=load_kwargs.get("cache_dir"),
                       keep_in_memory=bool(load_kwargs.get("keep_in_memory", False)))


def _looks_like_path(source: str) -> bool:
    return (
        source.startswith(("/", "./", "../", "~", "\\"))
        or os.path.splitdrive(source)[0] != ""
        or source.lower().endswith((".parquet", ".arrow", ".mdb"))
        or source.count("/") > 1
    )


def _load_local(path: Path, split: str, streaming: bool, load_kwargs: dict):
    if path.is_file():
        lower = path.name.lower()
        if lower == "data.mdb":
            return _load_lmdb(path, streaming, load_kwargs)
        builder = "parquet" if lower.endswith(".parquet") else "arrow" if lower.endswith(".arrow") else None
        if builder is None:
            raise ValueError(
                f"Cannot read {path}: expected a .parquet or .arrow file, or a directory (parquet, arrow, "
                "imagefolder or LMDB)."
            )
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split, streaming=streaming,
                                     **load_kwargs)
    kinds = _scan_local_directory(path)
    if "lmdb" in kinds:
        return _load_lmdb(path, streaming, load_kwargs)
    if not kinds:
        raise FileNotFoundError(
            f"No training data found in {path}: expected LMDB databases (data.mdb), .parquet or .arrow files, or an "
            "imagefolder with metadata.jsonl / metadata.csv."
        )
    if "parquet" not in kinds and "arrow" in kinds and _is_saved_to_disk(path):
        return _load_saved_to_disk(path, split, streaming, load_kwargs)
    # The directory goes through the same `load_dataset` path as a Hub repository (module inference, split names
    # from file and folder names, README configs); absolute, since a relative "parquet" or "imagefolder" would name
    # the packaged builder instead.
    return datasets.load_dataset(str(path.resolve()), split=split, streaming=streaming, **load_kwargs)


def load_str_dataset(
    source: str,
    split: str = "train",
    streaming: bool = True,
    image_column: str = "image",
    text_column: str = "text",
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
    - an LMDB directory or a tree of them (`data.mdb` files, STR community format), read with
      [`~training.data.LmdbDataset`] and wrapped with `IterableDataset.from_generator` / `Dataset.from_generator`.
      `split` does not apply.

    Labels come as stored; [`STRExampleFilter`] cleans them.

    Args:
        source (`str`): see above.
        split (`str`, defaults to `"train"`): split of Hub / local datasets.
        streaming (`bool`, defaults to `True`): return an `IterableDataset` (nothing is downloaded or copied up
            front); `False` returns a map-style `Dataset` (cached by `datasets`).
        image_column, text_column (`str`): source columns renamed to `image` and `text`.
        load_kwargs: passed to `datasets.load_dataset` (e.g. `cache_dir`, `token`, `revision`, `name`).

    Returns:
        `datasets.IterableDataset` or `datasets.Dataset` with [`STR_FEATURES`]: `image: Image(decode=False)` (dicts
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
        dataset = _load_local(path, split, streaming, load_kwargs)
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


def source_split_names(source: str, **load_kwargs) -> list[str] | None:
    """The splits a source offers, as `load_str_dataset(source, split=...)` reads them, or `None` when a split does
    not apply (LMDB, a single file, a `save_to_disk` dataset without splits). A Hub id asks the Hub."""
    path = Path(os.fspath(source)).expanduser()
    if path.is_file():
        return None
    if path.is_dir():
        kinds = _scan_local_directory(path)
        if "lmdb" in kinds:
            return None
        if "parquet" not in kinds and "arrow" in kinds and _is_saved_to_disk(path):
            return list(datasets.load_from_disk(str(path))) if (path / "dataset_dict.json").is_file() else None
        source = str(path.resolve())  # a relative "parquet" or "imagefolder" would name the packaged builder
    hub_kwargs = {key: value for key, value in load_kwargs.items() if key in ("token", "revision", "cache_dir", "name")}
    name = hub_kwargs.pop("name", None)
    return list(datasets.get_dataset_split_names(os.fspath(source), name, **hub_kwargs))


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


def _as_source_list(sources) -> list[str]:
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [os.fspath(source) for source in sources]
    if not sources:
        raise ValueError("Give at least one data source.")
    return sources


def _example_filter(processor, charset, max_label_length, remove_whitespace, unicode_normalization):
    """The filter of the label rule for `charset` (default: the processor's, else the 94 ASCII characters)."""
    if charset is None:
        charset = getattr(getattr(processor, "tokenizer", None), "charset", None) or CHARSET_94
    return STRExampleFilter(LabelCleaner(charset, max_label_length=max_label_length,
                                         remove_whitespace=remove_whitespace,
                                         unicode_normalization=unicode_normalization))


def _warn_about_few_shards(sources: list[str], loaded: list):
    for source, dataset in zip(sources, loaded):
        shards = getattr(dataset, "n_shards", None)
        if shards is not None and shards < _FEW_SHARDS:
            logger.warning(
                f"{source} streams as {shards} shard(s): at most {shards} DataLoader worker(s) will read the "
                f"{'mix' if len(loaded) > 1 else 'data'}; split it into more files (or parquet row groups) to load "
                "in parallel."
            )


def _first_records(dataset):
    if isinstance(dataset, datasets.IterableDataset):
        return itertools.islice(dataset, _PREFLIGHT_RECORDS)
    return (dataset[index] for index in range(min(len(dataset), _PREFLIGHT_RECORDS)))


def _check_usable(source: str, dataset, example_filter: STRExampleFilter) -> None:
    """Refuse, before training starts, a source that cannot be read or none of whose first records can be used,
    naming the source and what was skipped (a stream of only unusable examples would otherwise end in an accelerate
    error about an empty batch, and a 0-row parquet file in a pyarrow one)."""
    skipped: collections.Counter = collections.Counter()
    try:
        for record in _first_records(dataset):
            kept, counts = example_filter.check(record)
            if kept is not None:
                return
            skipped.update(counts)
    except Exception as error:  # noqa: BLE001 - whatever the reader raises, say which source it was
        raise ValueError(f"Cannot read training source {source}: {type(error).__name__}: {error}") from error
    if not skipped:
        raise ValueError(f"Training source {source} holds no records (check the path, --train_split and the files).")
    raise ValueError(
        f"No usable example in the first {sum(skipped.values())} records of training source {source}: skipped "
        f"{dict(sorted(skipped.items()))}. Check --image_column / --text_column, the charset (--charset or "
        "--charset_file) and --max_label_length."
    )


def build_train_dataset(
    sources: Sequence[str] | str,
    weights: Sequence[float] | None = None,
    processor=None,
    charset: str | None = None,
    max_label_length: int | None = 25,
    image_column: str = "image",
    text_column: str = "text",
    streaming: bool = True,
    seed: int = 0,
    split: str = "train",
    remove_whitespace: bool = True,
    unicode_normalization: str | None = None,
    shuffle_buffer_size: int = 10_000,
    max_samples: int | None = None,
    transform: Callable | None = None,
    **load_kwargs,
) -> FilteredIterableDataset | FilteredMapDataset:
    r"""
    Load each source, interleave them, and filter: the dataset to hand to a DataLoader with
    [`~training.data.STRDataCollator`].

    Args:
        sources (`list[str]`): see [`load_str_dataset`].
        weights (`list[float]`, *optional*): sampling weights of the sources (equal by default).
        processor ([`CLIP4STRProcessor`], *optional*): gives the charset when `charset` is not given.
        charset (`str`, *optional*): characters kept in labels; default: the processor's, else the 94 ASCII ones.
        max_label_length, remove_whitespace, unicode_normalization: see [`LabelCleaner`].
        image_column, text_column, split: see [`load_str_dataset`].
        streaming (`bool`, defaults to `True`): stream (an iterable dataset) or load map-style data.
        seed (`int`): seed of interleaving and shuffling.
        shuffle_buffer_size (`int`, defaults to 10000): streaming only; shards are shuffled and examples go
            through a buffer of this size (0 turns shuffling off). Map-style data is shuffled by the DataLoader.
        max_samples (`int`, *optional*): keep only the first examples (before filtering).
        transform (`Callable[[PIL.Image], PIL.Image]`, *optional*): applied to the image of every kept example,
            e.g. [`~training.train.augment.RandAugmentSTR`].
        load_kwargs: passed to `datasets.load_dataset` (e.g. `cache_dir`, `token`).

    Raises:
        ValueError: a source cannot be read, holds no records, or none of its first 1,000 records is usable (the
            message names the source and the skip counts).

    Returns:
        A [`FilteredIterableDataset`] (streaming) or [`FilteredMapDataset`] of `{"image": PIL.Image, "text": str}`;
        its `stats` count kept and skipped examples.
    """
    sources = _as_source_list(sources)
    if weights is not None and len(weights) != len(sources):
        raise ValueError(f"Got {len(weights)} weights for {len(sources)} sources.")
    example_filter = _example_filter(processor, charset, max_label_length, remove_whitespace, unicode_normalization)
    loaded = [
        load_str_dataset(source, split=split, streaming=streaming, image_column=image_column,
                         text_column=text_column, **load_kwargs)
        for source in sources
    ]
    for source, dataset in zip(sources, loaded):
        _check_usable(source, dataset, example_filter)
    if streaming:
        # DataLoader workers split a stream by shards, and an interleaved stream has as many shards as its smallest
        # source: cut parquet sources into row groups so that a single-file source does not idle the workers.
        loaded = [_reshard(dataset) for dataset in loaded]
        _warn_about_few_shards(sources, loaded)
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
    return example_filter.apply(combined, transform=transform)


def build_eval_dataset(
    sources: Sequence[str] | str,
    processor=None,
    charset: str | None = None,
    max_label_length: int | None = 25,
    image_column: str = "image",
    text_column: str = "text",
    split: str | Sequence[str] = "validation",
    remove_whitespace: bool = True,
    unicode_normalization: str | None = None,
    max_samples: int | None = None,
    **load_kwargs,
) -> EvaluationDataset:
    r"""
    Load each source map-style, one after the other (each example once), and filter for evaluation: an
    [`EvaluationDataset`], whose skipped records are counted instead of replaced. Arguments as for
    [`build_train_dataset`]; `split` may also give one split per source; `max_samples` keeps the first records of
    the concatenation.
    """
    sources = _as_source_list(sources)
    splits = [split] * len(sources) if isinstance(split, str) else list(split)
    if len(splits) != len(sources):
        raise ValueError(f"Got {len(splits)} splits for {len(sources)} sources.")
    example_filter = _example_filter(processor, charset, max_label_length, remove_whitespace, unicode_normalization)
    loaded = [
        load_str_dataset(source, split=source_split, streaming=False, image_column=image_column,
                         text_column=text_column, **load_kwargs)
        for source, source_split in zip(sources, splits)
    ]
    combined = loaded[0] if len(loaded) == 1 else datasets.concatenate_datasets(loaded)
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(f"`max_samples` must be positive, got {max_samples}.")
        combined = combined.select(range(min(max_samples, len(combined))))
    return EvaluationDataset(combined, example_filter)


__all__ = [
    "STR_FEATURES",
    "build_eval_dataset",
    "build_train_dataset",
    "interleave_str_datasets",
    "load_str_dataset",
    "source_split_names",
]
