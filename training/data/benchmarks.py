"""Benchmark datasets for `python -m training.evaluate_str`: LMDB directories (the STR community layout, one directory
per benchmark) found and named under the given roots, Hub / local datasets by `NAME=SOURCE`, chosen by name before
any is opened."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from training.data import LmdbDataset, find_lmdb_dirs, load_str_dataset

STANDARD_BENCHMARKS = (
    "IIIT5k", "SVT", "IC13_857", "IC13_1015", "IC15_1811", "IC15_2077", "SVTP", "CUTE80", "COCOv1.4", "ArT", "Uber",
)
"""The usual benchmark directory names, in the order tables list them (other datasets follow, by name)."""

def _benchmark_order(name: str) -> tuple:
    base = name.rsplit("/", 1)[-1]
    if base in STANDARD_BENCHMARKS:
        return (0, STANDARD_BENCHMARKS.index(base), name)
    return (1, 0, name)


def find_benchmarks(roots: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """Name -> LMDB directory for every LMDB directory at or below the roots.

    A dataset is named after its directory (`data/test/IIIT5k` -> `IIIT5k`). When two share a directory name, they
    are named by their path relative to their root instead (`test/IIIT5k`, `val/IIIT5k`).
    """
    found, seen = [], set()  # (root, directory); resolved paths, so that overlapping roots read a database once
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"Data root {root} does not exist.")
        for directory in find_lmdb_dirs(root):
            if Path(directory).resolve() not in seen:
                seen.add(Path(directory).resolve())
                found.append((root, Path(directory)))
    base_counts = Counter(directory.name for _, directory in found)
    named = {}
    for root, directory in found:
        name = directory.name
        if base_counts[name] > 1:
            relative = directory.relative_to(root).as_posix() if directory != root else directory.name
            name = relative if relative not in named else directory.as_posix()
        named[name] = directory
    return dict(sorted(named.items(), key=lambda item: _benchmark_order(item[0])))


def select_datasets(available: Mapping[str, object], wanted: Iterable[str] | None) -> dict:
    """The datasets named in `wanted` (by name or directory name), in that order; all of them when it is empty."""
    if not wanted:
        return dict(available)
    selected = {}
    for want in wanted:
        matches = [name for name in available if name == want or name.rsplit("/", 1)[-1] == want]
        if not matches:
            raise ValueError(f"Dataset {want!r} not found. Available: {', '.join(available) or 'none'}.")
        for name in matches:
            selected[name] = available[name]
    return selected


def _hub_name(source: str) -> tuple[str, str]:
    """(name, source) from `NAME=SOURCE` or a bare source (named after its last path component)."""
    if "=" in source:
        name, source = source.split("=", 1)
        return name, source
    stem = source.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".parquet", ".arrow", ".jsonl", ".json", ".csv"):
        stem = stem.removesuffix(suffix)
    return stem, source


def load_benchmarks(
    sources: list[str],
    data_sources: list[str],
    names: Iterable[str] | None = None,
    split: str = "test",
    image_column: str = "image",
    text_column: str = "text",
    cache_dir: str | None = None,
) -> dict:
    """Name -> dataset for the `--data` arguments, each read as LMDB (tree) or with `load_str_dataset` (hub).

    Datasets are chosen by `names` (see [`select_datasets`]) before any is opened, so unused sets cost nothing.
    """
    if len(data_sources) == 1:
        data_sources = data_sources * len(sources)
    if len(data_sources) != len(sources):
        raise ValueError(
            f"Give one --data-source for all --data, or one per --data ({len(sources)}); got {len(data_sources)}."
        )
    lmdb_roots = [source for source, kind in zip(sources, data_sources) if kind == "lmdb"]
    locations = {name: ("lmdb", path) for name, path in find_benchmarks(lmdb_roots).items()} if lmdb_roots else {}
    for source, kind in zip(sources, data_sources):
        if kind == "hub":
            name, source = _hub_name(source)
            if name in locations:
                raise ValueError(f"Two datasets are named {name!r}: name one explicitly with NAME=SOURCE.")
            locations[name] = ("hub", source)

    datasets = {}
    for name, (kind, location) in select_datasets(locations, names).items():
        if kind == "lmdb":
            # Labels are read raw; evaluate_model cleans them under the comparison protocol and counts the drops.
            datasets[name] = LmdbDataset(location, name=name)
        else:
            # Images stay undecoded (`{"bytes", "path"}`), so that a corrupt one is counted instead of raising.
            options = {} if cache_dir is None else {"cache_dir": cache_dir}
            datasets[name] = load_str_dataset(
                location, split=split, streaming=False, image_column=image_column, text_column=text_column, **options
            )
    return datasets
