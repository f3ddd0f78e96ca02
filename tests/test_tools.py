"""Conversion tools: LMDB -> parquet and folder + label file -> parquet / imagefolder, checked by loading the output
back through training.data.load_str_dataset. Offline; data is built here."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from modeling_clip4str.labels_clip4str import LabelCleaner
from training.data import LmdbDataset, load_str_dataset
from training.tools import folder_to_dataset, lmdb_to_parquet

from conftest import write_lmdb

REPO = Path(__file__).resolve().parents[1]


def png_bytes(seed: int, size=(20, 10)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png_bytes(seed))).save(buffer, format="JPEG")
    return buffer.getvalue()


CORRUPT = b"\x89PNG\r\n\x1a\nbroken"


@pytest.fixture
def lmdb_tree(tmp_path):
    """Two databases: real/ArT (5 samples, one corrupt image, one label too long) and synth (2 samples)."""
    root = tmp_path / "lmdb"
    art = [
        (png_bytes(0), "Hello"),
        (jpeg_bytes(1), "New York"),
        (CORRUPT, "broken"),
        (png_bytes(3), "x" * 30),
        (png_bytes(4), "Café"),
    ]
    write_lmdb(root / "real" / "ArT", art)
    write_lmdb(root / "synth", [(png_bytes(10), "abc"), (png_bytes(11), "DEF")])
    return root


def _pairs(dataset):
    return [(example["image"]["bytes"], example["text"]) for example in dataset]


def test_lmdb_to_parquet_round_trip(lmdb_tree, tmp_path, capsys):
    out = tmp_path / "parquet"
    assert lmdb_to_parquet.main([str(lmdb_tree), str(out), "--shard-size", "2"]) == 0
    report = capsys.readouterr().out
    assert "1 image(s) do not decode" in report and "real/ArT/image-000000003" in report

    shards = sorted(path.name for path in out.glob("*.parquet"))
    assert shards == [f"train-0000{i}-of-00003.parquet" for i in range(3)]  # 6 samples, 2 per shard
    # Same samples, labels and image bytes as the LMDB datasets read with the reference's label rules.
    expected = []
    for directory, name in ((lmdb_tree / "real" / "ArT", "real/ArT"), (lmdb_tree / "synth", "synth")):
        dataset, cleaner = LmdbDataset(directory), LabelCleaner(lmdb_to_parquet.CHARSET_94, max_label_length=25)
        for i in range(len(dataset)):
            text = cleaner(dataset.label(i)).text
            if text is not None:
                expected.append((dataset[i]["image"], text, name))
    table = pq.read_table(out)
    assert list(zip([i["bytes"] for i in table["image"].to_pylist()], table["text"].to_pylist(),
                    table["source"].to_pylist())) == expected
    assert [text for _, text, _ in expected] == ["Hello", "NewYork", "broken", "Cafe", "abc", "DEF"]
    paths = [image["path"] for image in table["image"].to_pylist()]
    assert paths[:2] == ["real/ArT/image-000000001.png", "real/ArT/image-000000002.jpg"]

    # The features are stored with the shards: datasets restores the Image column.
    plain = datasets.load_dataset("parquet", data_dir=str(out), split="train", streaming=True)
    assert isinstance(plain.features["image"], datasets.Image) and set(plain.features) == {"image", "text", "source"}
    loaded = load_str_dataset(str(out), streaming=True)
    assert _pairs(loaded) == [(image, text) for image, text, _ in expected]


def test_lmdb_to_parquet_options(lmdb_tree, tmp_path):
    out = tmp_path / "raw"
    report = lmdb_to_parquet.convert(lmdb_tree, out, keep_raw_labels=True, skip_corrupt=True)
    assert report["written"] == 6 and report["corrupt"] == 1
    assert report["sources"]["real/ArT"] == {"samples_in_database": 5, "corrupt": 1, "written": 4}
    texts = pq.read_table(out)["text"].to_pylist()
    assert texts == ["Hello", "New York", "x" * 30, "Café", "abc", "DEF"]  # as stored; the corrupt one left out
    # A second run does not mix its shards with the first one's, unless asked to replace them.
    with pytest.raises(FileExistsError, match="not empty"):
        lmdb_to_parquet.convert(lmdb_tree, out)
    report = lmdb_to_parquet.convert(lmdb_tree, out, overwrite=True, charset="abcdefghijklmnopqrstuvwxyz")
    assert report["sources"]["real/ArT"]["too_long"] == 1
    assert pq.read_table(out)["text"].to_pylist() == ["hello", "newyork", "broken", "cafe", "abc", "def"]
    with pytest.raises(SystemExit):  # argparse reports the missing LMDB_ROOT
        lmdb_to_parquet.main([str(tmp_path / "nothing-here"), str(tmp_path / "x")])
    (tmp_path / "empty").mkdir()
    assert lmdb_to_parquet.main([str(tmp_path / "empty"), str(tmp_path / "x")]) == 1  # no data.mdb below it


def test_lmdb_to_parquet_help_from_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "training.tools.lmdb_to_parquet", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0
    assert "--shard-size" in result.stdout and "--keep-raw-labels" in result.stdout
    assert "--skip-corrupt" in result.stdout


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub dir").mkdir(parents=True)
    files = {"a.png": png_bytes(0), "sub dir/b.png": png_bytes(1), "c.jpg": jpeg_bytes(2), "bad.png": CORRUPT}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    labels = tmp_path / "labels.txt"
    labels.write_text(
        "a.png hello world\n"  # space separator; the label keeps its own spaces
        "sub dir/b.png\tNew York\n"  # a tab separates, so the path may hold a space
        "\n"
        "c.jpg\tcafé\n"
        "bad.png broken\n",
        encoding="utf-8",
    )
    return folder, labels, files


EXPECTED = [("a.png", "hello world"), ("sub dir/b.png", "New York"), ("c.jpg", "café"), ("bad.png", "broken")]


def test_read_label_file(image_folder, tmp_path):
    _, labels, _ = image_folder
    entries = folder_to_dataset.read_label_file(labels)
    assert [(e.relative_path, e.label) for e in entries] == EXPECTED
    assert [e.line_number for e in entries] == [1, 2, 4, 5]
    bad = tmp_path / "bad.txt"
    bad.write_text("a.png hi\njust-a-path\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        folder_to_dataset.read_label_file(bad)


@pytest.mark.parametrize("output_format", ["parquet", "imagefolder"])
def test_folder_to_dataset_round_trip(image_folder, tmp_path, output_format, capsys):
    folder, labels, files = image_folder
    out = tmp_path / output_format
    code = folder_to_dataset.main([str(folder), str(labels), str(out), "--format", output_format])
    assert code == 0
    assert "1 image(s) do not decode" in capsys.readouterr().out  # reported, and kept by default
    loaded = load_str_dataset(str(out), streaming=True)
    got = {}
    for example in loaded:
        image = example["image"]
        got[example["text"]] = image["bytes"] if image["bytes"] is not None else Path(image["path"]).read_bytes()
    assert got == {label: files[path] for path, label in EXPECTED}
    if output_format == "imagefolder":
        metadata = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
        assert metadata[1] == {"file_name": "sub dir/b.png", "text": "New York"}


def test_folder_to_dataset_errors_name_the_files(image_folder, tmp_path):
    folder, labels, _ = image_folder
    with open(labels, "a", encoding="utf-8") as handle:
        handle.write("missing/one.png gone\n")
    with pytest.raises(FileNotFoundError, match="missing/one.png"):
        folder_to_dataset.convert(folder, labels, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    report = folder_to_dataset.convert(folder, labels, tmp_path / "out", skip_missing=True, skip_corrupt=True)
    assert report["written"] == 3 and report["missing"] == 1 and report["corrupt"] == 1
    with pytest.raises(SystemExit):
        folder_to_dataset.main([str(folder), str(tmp_path / "no-labels.txt"), str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="no-labels.txt"):
        folder_to_dataset.read_label_file(tmp_path / "no-labels.txt")
