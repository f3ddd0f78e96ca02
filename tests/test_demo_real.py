"""Real word crops in the demo (`training/data/real.py`, `training/demo.py --real-data`): a fixed validation split
per source, held out of training, scored next to the synthetic words. The crops here are drawn by the test itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, png_bytes_of, word_image, write_lmdb
from training.data.real import (
    load_real_split,
    shared_real_sources,
    split_indices,
    training_weights,
    unique_names,
    validation_indices,
    validation_size,
    write_real_splits,
)


def _labels(count: int, prefix: str) -> list[str]:
    """Distinct labels, so that a crop can be followed by its label (the cleaner lower-cases: the test labels are
    lower-case already)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [f"{prefix}{letters[i // 26 % 26]}{letters[i % 26]}" for i in range(count)]


def _real_lmdb(path, count: int, prefix: str) -> list[str]:
    labels = _labels(count, prefix)
    write_lmdb(path, [(png_bytes_of(word_image(label)), label) for label in labels])
    return labels


def _parquet_dir(path, labels: list[str]) -> None:
    """A parquet dataset with only a train split (as a Hub dataset of real crops would be)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features, Image, Value

    schema = Features({"image": Image(), "text": Value("string")}).arrow_schema
    path.mkdir(parents=True)
    table = pa.table({"image": [{"bytes": png_bytes_of(word_image(label)), "path": None} for label in labels],
                      "text": labels}, schema=schema)
    pq.write_table(table, path / "train-00000-of-00001.parquet")


def test_validation_split_sizes_and_determinism():
    assert [validation_size(n) for n in (0, 1, 2, 10, 40, 2000, 3000, 4468, 100_000)] == \
        [0, 0, 1, 2, 8, 300, 300, 447, 10_000]
    for n in (2, 40, 2000, 4468):
        train, held_out = split_indices(n)
        assert len(held_out) == validation_size(n) and held_out == sorted(held_out)
        assert not set(train) & set(held_out) and sorted(train + held_out) == list(range(n))
        assert validation_indices(n) == held_out  # a pure function of the record count
    # Spread over the source, not its head or tail.
    held_out = validation_indices(4468)
    assert sum(index < 2234 for index in held_out) in range(180, 268)


def test_training_weights_and_names():
    assert training_weights(0.5, [1700, 4021]) == pytest.approx([0.5, 0.5 * 1700 / 5721, 0.5 * 4021 / 5721])
    assert training_weights(1.0, [10])[0] == 0.0
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            training_weights(bad, [10])
    assert unique_names(["../shared/data/real/IC15_train", "org/IC15_train/", "a/train", "b/train/data.mdb"]) == \
        ["IC15_train", "IC15_train_2", "train", "train_2"]


def test_written_splits_hold_the_validation_crops_out_of_training(tmp_path):
    from training.data import load_str_dataset

    labels = _real_lmdb(tmp_path / "src" / "tiny_lmdb", 40, "l")
    _parquet_dir(tmp_path / "src" / "tiny_parquet", _labels(30, "p"))
    records = write_real_splits([str(tmp_path / "src" / "tiny_lmdb"), str(tmp_path / "src" / "tiny_parquet")],
                                tmp_path / "real")
    assert [(r["name"], r["num_train"], r["num_validation"]) for r in records] == \
        [("tiny_lmdb", 32, 8), ("tiny_parquet", 24, 6)]
    directory = records[0]["directory"]
    train = list(load_str_dataset(directory, split="train", streaming=False)["text"])
    validation = list(load_str_dataset(directory, split="validation", streaming=False)["text"])
    assert not set(train) & set(validation) and sorted(train + validation) == sorted(labels)
    assert validation == [labels[i] for i in validation_indices(40)]
    split = json.loads((tmp_path / "real" / "tiny_lmdb" / "split.json").read_text())
    assert split["validation_indices"] == validation_indices(40)
    # The same source read again (by another path) splits the same way; the benchmark reads it this way.
    again = load_real_split(str(tmp_path / "src" / ".." / "src" / "tiny_lmdb"))
    assert list(again.part("validation")["text"]) == validation
    # Validation-only (what the synthetic demo writes to score the shared sets): no training part left behind.
    write_real_splits([str(tmp_path / "src" / "tiny_lmdb")], tmp_path / "real", parts=("validation",))
    assert not list((tmp_path / "real" / "tiny_lmdb" / "train").glob("*.parquet"))


def test_shared_real_sources_absent_on_a_fresh_clone(tmp_path):
    assert shared_real_sources(tmp_path / "nothing") == []
    _real_lmdb(tmp_path / "real" / "IC15_train", 3, "x")
    assert shared_real_sources(tmp_path / "real") == [str(tmp_path / "real" / "IC15_train")]


@pytest.mark.slow
def test_demo_trains_on_real_crops_and_scores_their_held_out_split(tmp_path):
    """`training/demo.py --real-data` on two tiny sources (LMDB and parquet), two steps: the training part and only
    it reaches run_str, with the weights asked for; results.md and summary.json carry both real accuracies next to
    the synthetic one."""
    lmdb_labels = _real_lmdb(tmp_path / "src" / "tiny_lmdb", 40, "l")
    _parquet_dir(tmp_path / "src" / "tiny_parquet", _labels(30, "p"))
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "training.demo", "--output-dir", str(out), "--num-train", "64", "--num-test", "8",
               "--max-steps", "2", "--real-max-steps", "2", "--real-weight", "0.4", "--real-data",
               str(tmp_path / "src" / "tiny_lmdb"),
               str(tmp_path / "src" / "tiny_parquet")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert 0.0 <= summary["held_out_word_accuracy"] <= 1.0
    assert set(summary["real_held_out_word_accuracy"]) == {"tiny_lmdb", "tiny_parquet"}
    real = summary["real_validation"]
    assert real["trained_on_real"] and real["real_weight"] == 0.4
    assert {name: (s["num_train"], s["num_validation"], s["num_scored"]) for name, s in real["sources"].items()} == \
        {"tiny_lmdb": (32, 8, 8), "tiny_parquet": (24, 6, 6)}
    results_md = (out / "results.md").read_text(encoding="utf-8")
    assert "held-out" in results_md and "Real word crops" in results_md
    assert "tiny_lmdb" in results_md and "tiny_parquet" in results_md

    # Stage 1 read the two synthetic parts (the demo's words, real words in the font collection) half and half;
    # stage 2 went on from it with the training parts of the real sources (their `train` split): synthetic 0.6 shared
    # by the two parts, the real 0.4 split by size.
    synthetic = [str(out / "data"), str(out / "data-words")]
    stage_1 = json.loads((out / "clip4str-demo-synthetic" / "run_str_args.json").read_text())
    assert stage_1["data"]["train_datasets"] == synthetic and stage_1["data"]["train_weights"] == [0.5, 0.5]
    stage_2 = json.loads((out / "clip4str-demo" / "run_str_args.json").read_text())
    assert stage_2["model"]["model_name_or_path"] == str(out / "clip4str-demo-synthetic")
    args = stage_2["data"]
    assert args["train_datasets"] == synthetic + [str(out / "real" / "tiny_lmdb"), str(out / "real" / "tiny_parquet")]
    assert args["train_split"] == "train"
    assert args["train_weights"] == pytest.approx([0.3, 0.3, 0.4 * 32 / 56, 0.4 * 24 / 56], abs=1e-5)
    assert summary["training_steps"] == 4 and "real_words_word_accuracy" in summary
    from training.data import load_str_dataset

    trained = set(load_str_dataset(str(out / "real" / "tiny_lmdb"), split="train", streaming=False)["text"])
    held_out = {lmdb_labels[i] for i in validation_indices(40)}
    assert not trained & held_out and trained | held_out == set(lmdb_labels)
    config = json.loads((out / "clip4str-demo" / "config.json").read_text())
    assert config["max_label_length"] == 8  # as the synthetic words: a longer real word counts as wrong


def test_demo_refuses_real_options_without_real_data():
    result = subprocess.run([sys.executable, "-m", "training.demo", "--real-weight", "0.3"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode != 0 and "--real-weight needs --real-data" in result.stderr
    result = subprocess.run([sys.executable, "-m", "training.demo", "--real-max-steps", "10"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode != 0 and "--real-max-steps needs --real-data" in result.stderr


def test_demo_scores_the_shared_sets_when_present_and_says_so_when_absent(tmp_path, capsys):
    """Without --real-data the English demo scores (never trains on) the shared real sets' validation split where
    they exist; a fresh clone without them gets one line and the synthetic scores alone."""
    from training.demo import choose_real_sources

    assert choose_real_sources(["org/words", "b"], "en") == (["org/words", "b"], True)  # Hub ids as given
    (tmp_path / "here").mkdir()
    assert choose_real_sources([str(tmp_path / "." / "here")], "vi") == ([str(tmp_path / "here")], True)
    assert choose_real_sources(None, "en", shared=tmp_path / "absent") == ([], False)
    assert capsys.readouterr().out.count("\n") == 1
    _real_lmdb(tmp_path / "real" / "IIIT5k_train", 3, "x")
    _real_lmdb(tmp_path / "real" / "IC15_train", 3, "y")
    expected = [str(tmp_path / "real" / "IIIT5k_train"), str(tmp_path / "real" / "IC15_train")]
    assert choose_real_sources(None, "en", shared=tmp_path / "real") == (expected, False)
    assert choose_real_sources(None, "en", no_real_validation=True, shared=tmp_path / "real") == ([], False)
    assert choose_real_sources(None, "vi", shared=tmp_path / "real") == ([], False)


def test_bench_real_scores_our_model_and_ppocr_on_the_held_out_crops(tmp_path, caption_tokenizer):
    """`benchmarks/bench_real.py` on a tiny random model and 40 drawn crops: it reads exactly the held-out split,
    scores under the 36-character protocol and times every reader (PP-OCR too where rapidocr is installed)."""
    import importlib.util

    from conftest import load_benchmark, make_model, make_processor

    bench_real = load_benchmark("bench_real")
    model = make_model(caption_tokenizer)
    model_dir = tmp_path / "tiny-model"
    model.save_pretrained(model_dir)
    make_processor(model.config).save_pretrained(model_dir)
    labels = _real_lmdb(tmp_path / "src" / "tiny_lmdb", 40, "l")
    ppocr = importlib.util.find_spec("rapidocr") is not None and importlib.util.find_spec("onnxruntime") is not None
    report = bench_real.main([f"tiny={model_dir}", "--real-data", str(tmp_path / "src" / "tiny_lmdb"), "--warmup", "1",
                              "--output-json", str(tmp_path / "bench.json"), *([] if ppocr else ["--no-ppocr"])])
    assert report["datasets"]["tiny_lmdb"]["num_scored"] == 8 == len(validation_indices(len(labels)))
    readers = [row["reader"] for row in report["rows"]]
    assert readers == ["tiny"] + ([bench_real.PPOCR_NAME] if ppocr else [])
    for row in report["rows"]:
        assert row["timed_crops"] == 8 and row["ms_per_crop_median"] > 0
        assert 0.0 <= row["combined"]["accuracy"] <= 1.0
    if ppocr:  # plain black-on-white words: the real recogniser reads most of them
        assert report["rows"][-1]["combined"]["accuracy"] >= 0.5
    assert json.loads((tmp_path / "bench.json").read_text())["rows"][0]["reader"] == "tiny"
