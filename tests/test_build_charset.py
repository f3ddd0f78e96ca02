"""training/tools/build_charset.py: a charset from the labels of mixed sources, and run_str.py --charset_file."""

from __future__ import annotations

import unicodedata

import pytest

from conftest import png_bytes_of, word_image, write_lmdb
from training.tools.build_charset import (
    CharacterCounts,
    build_charset,
    count_characters,
    coverage,
    main,
    read_charset_file,
    source_labels,
    write_charset_file,
)

pytest.importorskip("lmdb")

# Parquet labels in NFC; LMDB labels in NFD (combining marks apart), with whitespace and a zero-width space.
PARQUET_LABELS = ["tiếng", "Việt", "tiếng", "Hà Nội", "ok"]
LMDB_LABELS = [unicodedata.normalize("NFD", "tiếng"), "ngư\u200bời", unicodedata.normalize("NFD", "Đà Nẵng")]


@pytest.fixture(scope="module")
def mixed_sources(tmp_path_factory):
    """A parquet directory (with an image that is not an image: labels are read without decoding it) and an LMDB
    tree whose records have no image at all (labels are read without reading images)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features, Image, Value

    root = tmp_path_factory.mktemp("charset-sources")
    parquet_dir = root / "parquet"
    (parquet_dir / "train").mkdir(parents=True)
    schema = Features({"image": Image(), "text": Value("string")}).arrow_schema
    images = [{"bytes": b"not an image", "path": None}] + [
        {"bytes": png_bytes_of(word_image(text)), "path": None} for text in PARQUET_LABELS[1:]
    ]
    pq.write_table(pa.table({"image": images, "text": PARQUET_LABELS}, schema=schema),
                   parquet_dir / "train" / "train-00000-of-00001.parquet")
    lmdb_root = root / "lmdb"
    write_lmdb(lmdb_root / "a", [(None, label) for label in LMDB_LABELS[:2]])
    write_lmdb(lmdb_root / "b", [(None, LMDB_LABELS[2]), (None, None)])  # the second record has no label
    return parquet_dir, lmdb_root


def expected_counts():
    counts = {}
    for label in PARQUET_LABELS + LMDB_LABELS:
        for char in unicodedata.normalize("NFC", "".join(label.split())):
            counts[char] = counts.get(char, 0) + 1
    return counts


def test_labels_of_mixed_sources_without_images(mixed_sources):
    parquet_dir, lmdb_root = mixed_sources
    assert list(source_labels(str(parquet_dir))) == PARQUET_LABELS
    assert list(source_labels(str(lmdb_root))) == LMDB_LABELS
    assert list(source_labels(str(lmdb_root), max_samples=2)) == LMDB_LABELS[:2]


def test_charset_from_mixed_sources(mixed_sources, tmp_path, capsys):
    parquet_dir, lmdb_root = mixed_sources
    output, report = tmp_path / "charset.txt", tmp_path / "counts.tsv"
    charset = main([str(parquet_dir), str(lmdb_root), "--output", str(output), "--report", str(report)])
    expected = expected_counts()
    del expected["\u200b"]  # counted, but invisible characters never enter a charset
    assert charset == "".join(sorted(expected))  # code-point order, NFC: "ế" is one character, not e + marks
    assert "ế" in charset and "\u0301" not in charset and " " not in charset and "Đ" in charset
    assert output.read_text(encoding="utf-8") == charset + "\n"
    assert read_charset_file(output) == charset
    rows = report.read_text(encoding="utf-8").splitlines()
    assert rows[0].split("\t")[:4] == ["character", "code_point", "name", "count"]
    counted = {line.split("\t")[0]: int(line.split("\t")[3]) for line in rows[1:]}
    assert counted == expected_counts()
    printed = capsys.readouterr().out
    assert "8 labels" in printed and "1 invisible" in printed and "100.000% of labels readable in full" in printed


def test_min_count_cut_and_coverage():
    counts = count_characters(["aab", "ab", "abc", "ß", None, "   "])
    assert counts.characters == {"a": 4, "b": 3, "c": 1, "ß": 1}
    assert counts.skipped == {"not_a_string": 1, "empty": 1} and counts.num_labels == 4
    assert build_charset(counts, min_count=2) == "ab"
    assert build_charset(counts, order="frequency") == "abcß"  # ties by code point
    kept = coverage(counts, "ab")
    assert kept == {"characters": 2, "occurrences": 7 / 9, "labels": 2 / 4}
    long_skipped = count_characters(["abcdef", "ab"], max_label_length=3)
    assert long_skipped.skipped == {"too_long": 1} and long_skipped.characters == {"a": 1, "b": 1}
    assert isinstance(long_skipped, CharacterCounts)


def test_charset_file_errors(tmp_path):
    path = tmp_path / "charset.txt"
    path.write_text(unicodedata.normalize("NFD", "aế"), encoding="utf-8")
    with pytest.raises(ValueError, match="NFC"):
        read_charset_file(path)
    path.write_text("abca", encoding="utf-8")
    with pytest.raises(ValueError, match="repeats 'a'"):
        read_charset_file(path)
    path.write_text("ab\ncd\n", encoding="utf-8")
    with pytest.raises(ValueError, match="2 lines"):
        read_charset_file(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        read_charset_file(path)
    write_charset_file(path, "ab ế")  # a space can be part of a charset written by hand
    assert read_charset_file(path) == "ab ế"


def test_run_str_reads_the_charset_file(tmp_path):
    from training.run_str import ModelArguments

    path = tmp_path / "charset.txt"
    write_charset_file(path, "aăâbcdđ")
    arguments = ModelArguments(clip_model_name_or_path="clip", charset_file=str(path))
    assert arguments.charset == "aăâbcdđ" and arguments.config_overrides()["charset"] == "aăâbcdđ"
    with pytest.raises(ValueError, match="not both"):
        ModelArguments(clip_model_name_or_path="clip", charset="abc", charset_file=str(path))
