"""Data layer of run_str.py: the label rule as training data sees it, LMDB reading, every source kind through
load_str_dataset, interleaving, skipping of broken examples (also across DataLoader workers), the training transform,
evaluation datasets and the collator. Offline; data is built here."""

from __future__ import annotations

import collections
import io
import pickle
import threading
import unicodedata

import datasets
import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config, write_lmdb
from modeling_clip4str import CLIP4STRProcessor
from modeling_clip4str.labels_clip4str import REASONS, LabelCleaner
from training.data import (
    SKIP_REASONS,
    STR_FEATURES,
    EvaluationDataset,
    LmdbDataset,
    STRDataCollator,
    STRExampleFilter,
    build_eval_dataset,
    build_train_dataset,
    find_lmdb_dirs,
    interleave_str_datasets,
    load_str_dataset,
)
from training.data.counts import COUNTED, as_counter
from training.data.lmdb import _ENVIRONMENTS

CHARSET_36 = "0123456789abcdefghijklmnopqrstuvwxyz"


# --- helpers ----------------------------------------------------------------------------------------------------------
def png_bytes(seed: int, size=(24, 12), mode="RGB") -> bytes:
    """A small random PNG (distinct bytes per seed)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


TRUNCATED_PNG = png_bytes(99)[:60]
NOT_AN_IMAGE = b"this is not an image at all"


@pytest.fixture(scope="module")
def processor():
    return CLIP4STRProcessor.from_config(tiny_config())


@pytest.fixture
def broken_lmdb(tmp_path):
    """An LMDB with 6 good samples, 2 undecodable images, 1 missing image and 1 label that is too long."""
    samples = [
        (png_bytes(0), "good0"),
        (NOT_AN_IMAGE, "bad1"),
        (png_bytes(2), "good2"),
        (TRUNCATED_PNG, "bad3"),
        (png_bytes(4), "good4"),
        (None, "nopic"),
        (png_bytes(6), "good6"),
        (png_bytes(7), "x" * 30),
        (png_bytes(8), "good8"),
        (png_bytes(9), "good9"),
    ]
    root = tmp_path / "lmdb" / "broken"
    write_lmdb(root, samples)
    return root


# --- labels -----------------------------------------------------------------------------------------------------------
def clean_all(cleaner, labels):
    """Texts of `cleaner` for each label, and a Counter of reasons and removed characters."""
    counts, texts = collections.Counter(), []
    for label in labels:
        cleaned = cleaner(label)
        counts[cleaned.reason] += 1
        counts["removed_characters"] += cleaned.removed_characters
        texts.append(cleaned.text)
    return texts, +counts


def test_label_rule_order_and_counts():
    cleaner = LabelCleaner(CHARSET_36, max_label_length=5)
    assert cleaner.unicode_normalization == "NFKD-ASCII"  # ASCII charset: fold by default
    texts, counts = clean_all(cleaner, ["He llo", "Café", "ab!!!!", "ab!!!", "!?!", None, 42])
    # Whitespace goes first, so "He llo" is 5 characters, and the case adapts; "Café" is folded, then lower-cased.
    # "ab!!!!" is 6 characters as written: dropped for length even though only "ab" would survive the charset filter.
    assert texts == ["hello", "cafe", None, "ab", None, None, None]
    assert counts == collections.Counter(
        kept=3, too_long=1, empty_after_filtering=1, not_a_string=2, removed_characters=3
    )
    assert cleaner("ab!!!!") == (None, "too_long", 0)


def test_label_rule_options_and_case_adaptation():
    assert LabelCleaner("ABC")("abcd").text == "ABC"  # upper-case-only charset
    assert LabelCleaner("abcABC")("aBcD") == ("aBc", "kept", 1)  # both cases: case is kept
    assert LabelCleaner(CHARSET_36, remove_whitespace=False)("a b").text == "ab"  # space not in charset
    assert LabelCleaner(CHARSET_36 + " ", remove_whitespace=False)("a b").text == "a b"
    with pytest.raises(ValueError):
        LabelCleaner("")
    with pytest.raises(ValueError):
        LabelCleaner(CHARSET_36, max_label_length=0)


def test_label_rule_non_latin_charset_keeps_its_characters():
    cleaner = LabelCleaner("你好世界abcé")
    assert cleaner.unicode_normalization == "NFC"  # not ASCII: no fold to ASCII by default
    assert cleaner("你好 世界").text == "你好世界"
    assert cleaner("café") == ("caé", "kept", 1)  # 'f' is not in the charset; 'é' is, and stays (no fold)
    folding = LabelCleaner("你好世界abcé", unicode_normalization="NFKD-ASCII")
    assert folding("你好").text is None  # folding to ASCII would erase them


# Lower-case Vietnamese letters, each a single precomposed code point (NFC).
VIETNAMESE = (
    "aăâbcdđeêghiklmnoôơpqrstuưvxy"
    "áàảãạắằẳẵặấầẩẫậéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
)


def test_nfd_labels_keep_their_diacritics_with_a_non_ascii_charset():
    word = "tiếngviệt"
    decomposed = unicodedata.normalize("NFD", word)
    assert decomposed != word and len(decomposed) > len(word)  # combining marks, as some data sets store them
    example_filter = STRExampleFilter(LabelCleaner(VIETNAMESE))
    kept = example_filter({"image": png_bytes(0), "text": decomposed})
    assert kept["text"] == word and unicodedata.is_normalized("NFC", kept["text"])
    assert example_filter.counts.totals() == collections.Counter(kept=1)  # nothing removed, nothing skipped
    # An ASCII charset still folds accents to their base letters; removing them is not counted as removed characters.
    ascii_filter = STRExampleFilter(LabelCleaner(CHARSET_36))
    assert ascii_filter({"image": png_bytes(0), "text": "café"})["text"] == "cafe"
    assert ascii_filter({"image": png_bytes(0), "text": unicodedata.normalize("NFD", "café")})["text"] == "cafe"
    assert ascii_filter.counts.totals() == collections.Counter(kept=2)


def test_removed_characters_are_counted_per_kept_label():
    example_filter = STRExampleFilter(LabelCleaner(CHARSET_36))
    for text in ["it's", "a-b-c", "ok", "!!"]:
        example_filter({"image": png_bytes(0), "text": text})
    assert example_filter.counts.totals() == collections.Counter(kept=3, removed_characters=3, empty_after_filtering=1)


def test_one_list_of_skip_reasons():
    assert set(REASONS) - {"kept"} <= set(SKIP_REASONS)  # every reason of the label rule has its words
    from training.evaluation import results

    assert results.SKIP_REASONS is SKIP_REASONS


# --- LMDB -------------------------------------------------------------------------------------------------------------
def test_find_lmdb_dirs(tmp_path):
    write_lmdb(tmp_path / "root" / "b" / "deep", [(png_bytes(0), "a")])
    write_lmdb(tmp_path / "root" / "a", [(png_bytes(1), "b")])
    (tmp_path / "root" / "empty").mkdir()
    found = find_lmdb_dirs(tmp_path / "root")
    assert found == [tmp_path / "root" / "a", tmp_path / "root" / "b" / "deep"]
    assert find_lmdb_dirs(tmp_path / "root" / "a") == [tmp_path / "root" / "a"]  # the root itself
    with pytest.raises(FileNotFoundError, match="empty"):
        find_lmdb_dirs(tmp_path / "root" / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_lmdb_dirs(tmp_path / "nowhere")


def test_lmdb_dataset_reads_labels_as_stored_and_raw_image_bytes(tmp_path):
    images = [png_bytes(i) for i in range(6)]
    samples = [
        (images[0], "Hello World"),
        (images[1], "x" * 26),
        (images[2], "!!!"),
        (images[3], None),  # label key missing
        (images[4], b"\xff\xfe"),  # not UTF-8
        (images[5], "ok"),
    ]
    write_lmdb(tmp_path / "db", samples)
    dataset = LmdbDataset(tmp_path / "db")
    assert dataset.name == "db"
    assert len(dataset) == 4  # records without a usable label are left out; labels are cleaned by the filter
    assert dataset[0] == {"image": images[0], "text": "Hello World"}
    assert dataset[-1] == {"image": images[5], "text": "ok"}
    assert [dataset[i]["text"] for i in range(len(dataset))] == ["Hello World", "x" * 26, "!!!", "ok"]
    assert dataset.database_index(3) == 6
    assert dataset.counts == collections.Counter(kept=4, missing_label=1, undecodable_label=1)
    with pytest.raises(IndexError):
        dataset[4]
    # Picklable for worker processes; the copy opens its own environment.
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy[0] == dataset[0]


def test_lmdb_environment_opens_once_when_threads_ask_together(tmp_path):
    # `datasets` reads the shards of a shuffled stream from several threads: the first reads of a database may come
    # from all of them at once, and lmdb refuses a second open of the same files in one process.
    for attempt in range(5):
        root = tmp_path / f"db{attempt}"
        write_lmdb(root, [(png_bytes(i), f"w{i}") for i in range(4)])
        dataset = LmdbDataset(root)
        assert not _ENVIRONMENTS.is_open_here(root)  # reading the labels closed it again
        barrier, results, errors = threading.Barrier(8), [], []

        def read(index):
            barrier.wait()
            try:
                results.append(dataset[index % 4]["image"])
            except Exception as error:  # noqa: BLE001 - collected for the assertion below
                errors.append(error)

        threads = [threading.Thread(target=read, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and len(results) == 8


def test_lmdb_dataset_in_dataloader_workers_after_the_main_process_read_it(tmp_path):
    images = [png_bytes(i) for i in range(4)]
    write_lmdb(tmp_path / "db", [(image, f"w{i}") for i, image in enumerate(images)])
    dataset = LmdbDataset(tmp_path / "db")
    assert dataset[0]["image"] == images[0]  # the main process now holds the database open
    second = LmdbDataset(tmp_path / "db")  # a second dataset over the same files in one process is fine
    assert second[3]["image"] == images[3]
    # Forked workers cannot open it again (lmdb refuses) and read through the inherited environment.
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=lambda batch: batch)
    assert [item["image"] for batch in loader for item in batch] == images


def test_lmdb_dataset_rejects_non_str_databases(tmp_path):
    env = lmdb.open(str(tmp_path / "other"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"key", b"value")
    env.close()
    with pytest.raises(ValueError, match="num-samples"):
        LmdbDataset(tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="data.mdb"):
        LmdbDataset(tmp_path)


# --- sources ----------------------------------------------------------------------------------------------------------
def _records(n: int, offset: int = 0):
    return [{"image": {"bytes": png_bytes(offset + i), "path": None}, "text": f"word{offset + i}"} for i in range(n)]


def _hf_dataset(records, features=None, **extra_columns):
    features = features or datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    columns = {"image": [r["image"] for r in records], "text": [r["text"] for r in records]}
    dataset = datasets.Dataset.from_dict(columns, features=features)
    for name, values in extra_columns.items():
        dataset = dataset.add_column(name, values)
    return dataset


def _as_pairs(dataset):
    return [(example["image"]["bytes"], example["text"]) for example in dataset]


def test_load_parquet_directory_streaming_and_column_renaming(tmp_path):
    records = _records(5)
    data_dir = tmp_path / "parquet"
    data_dir.mkdir()
    dataset = _hf_dataset(records, extra=list(range(5)))
    dataset.select(range(3)).to_parquet(str(data_dir / "train-00000-of-00002.parquet"))
    dataset.select(range(3, 5)).to_parquet(str(data_dir / "train-00001-of-00002.parquet"))

    streamed = load_str_dataset(str(data_dir), split="train", streaming=True)
    assert isinstance(streamed, datasets.IterableDataset)
    assert streamed.features == STR_FEATURES  # undecoded images, extra columns gone
    assert sorted(_as_pairs(streamed), key=lambda p: p[1]) == [(r["image"]["bytes"], r["text"]) for r in records]

    renamed = tmp_path / "renamed.parquet"
    dataset.rename_columns({"image": "img", "text": "label"}).to_parquet(str(renamed))
    loaded = load_str_dataset(str(renamed), image_column="img", text_column="label", streaming=True)
    assert _as_pairs(loaded) == [(r["image"]["bytes"], r["text"]) for r in records]
    with pytest.raises(ValueError, match="img"):
        load_str_dataset(str(renamed), streaming=True)  # the default columns are not there: the message lists them


def test_load_arrow_file_and_directory_map_style(tmp_path):
    records = _records(4)
    saved = tmp_path / "saved"
    _hf_dataset(records).save_to_disk(str(saved))
    loaded = load_str_dataset(str(saved), streaming=False, cache_dir=str(tmp_path / "cache"))
    assert isinstance(loaded, datasets.Dataset) and loaded.features == STR_FEATURES
    assert _as_pairs(loaded) == [(r["image"]["bytes"], r["text"]) for r in records]
    arrow_file = next(saved.glob("*.arrow"))
    single = load_str_dataset(str(arrow_file), streaming=True)
    assert _as_pairs(single) == [(r["image"]["bytes"], r["text"]) for r in records]


def test_load_imagefolder(tmp_path):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    expected = {}
    with open(folder / "metadata.jsonl", "w") as metadata:
        for i in range(3):
            name = f"sub/img{i}.png"
            data = png_bytes(10 + i)
            (folder / name).write_bytes(data)
            metadata.write(f'{{"file_name": "{name}", "text": "label {i}"}}\n')
            expected[f"label {i}"] = data
    loaded = load_str_dataset(str(folder), streaming=True)
    pairs = {example["text"]: example["image"] for example in loaded}
    assert set(pairs) == set(expected)
    for text, image in pairs.items():  # undecoded: a path to the file, or its bytes
        data = image["bytes"] if image["bytes"] is not None else open(image["path"], "rb").read()
        assert data == expected[text]


def test_load_lmdb_tree_streaming_and_map_style(tmp_path):
    first = [(png_bytes(i), f"a{i}") for i in range(5)]
    second = [(png_bytes(20 + i), f"B {i}") for i in range(3)]
    write_lmdb(tmp_path / "tree" / "one", first)
    write_lmdb(tmp_path / "tree" / "nested" / "two", second)
    streamed = load_str_dataset(str(tmp_path / "tree"), streaming=True)
    assert isinstance(streamed, datasets.IterableDataset) and streamed.n_shards == 8  # one shard per sample here
    # LMDB databases are found in sorted order: nested/two, then one. Labels come as stored.
    assert sorted(_as_pairs(streamed)) == sorted(first + second)
    mapped = load_str_dataset(str(tmp_path / "tree"), streaming=False, cache_dir=str(tmp_path / "cache"))
    assert isinstance(mapped, datasets.Dataset) and len(mapped) == 8
    assert sorted(_as_pairs(mapped)) == sorted(first + second)
    # The filter cleans them: "B 0" -> "b0".
    cleaned = build_train_dataset([str(tmp_path / "tree")], charset=CHARSET_36, shuffle_buffer_size=0)
    expected = [text for _, text in first] + [f"b{i}" for i in range(3)]
    assert sorted(example["text"] for example in cleaned) == sorted(expected)


def test_load_errors_name_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_str_dataset("./does-not-exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No training data"):
        load_str_dataset(str(tmp_path / "empty"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="parquet"):
        load_str_dataset(str(tmp_path / "notes.txt"))


# --- interleaving -----------------------------------------------------------------------------------------------------
def test_interleave_with_weights_map_style_and_streaming():
    features = datasets.Features({"text": datasets.Value("string")})
    big = datasets.Dataset.from_dict({"text": [f"a{i}" for i in range(100)]}, features=features)
    small = datasets.Dataset.from_dict({"text": [f"b{i}" for i in range(10)]}, features=features)
    mixed = interleave_str_datasets([big, small], weights=[4, 1], seed=0)
    texts = mixed["text"]
    # "all_exhausted": every example of both sources appears, the small one repeated.
    assert set(texts) == {f"a{i}" for i in range(100)} | {f"b{i}" for i in range(10)}
    head = texts[:100]
    share = sum(text.startswith("a") for text in head) / len(head)
    assert 0.65 < share < 0.95  # 0.8 expected
    streamed = interleave_str_datasets([big.to_iterable_dataset(), small.to_iterable_dataset()], weights=[1, 1])
    assert {example["text"] for example in streamed} == set(texts)
    assert interleave_str_datasets([big, small], weights=[1, 0]) is big  # weight 0: left out
    with pytest.raises(ValueError, match="weights"):
        interleave_str_datasets([big, small], weights=[1])
    with pytest.raises(ValueError, match="non-negative"):
        interleave_str_datasets([big, small], weights=[1, -1])
    with pytest.raises(ValueError, match="streaming"):
        interleave_str_datasets([big, small.to_iterable_dataset()])


# --- skipping broken examples -----------------------------------------------------------------------------------------
GOOD = ["good0", "good2", "good4", "good6", "good8", "good9"]


def test_filter_skips_and_counts_broken_examples_in_a_stream(broken_lmdb):
    dataset = build_train_dataset([str(broken_lmdb)], charset=CHARSET_36, shuffle_buffer_size=0)
    kept = list(dataset)
    assert [example["text"] for example in kept] == GOOD
    assert all(isinstance(example["image"], Image.Image) and example["image"].mode == "RGB" for example in kept)
    # The too-long label is dropped by the filter, like every other unusable label, whatever the source.
    assert dataset.stats == collections.Counter(kept=6, undecodable_image=2, missing_image=1, too_long=1)


def test_filter_counts_every_skip_of_a_stream():
    example_filter = STRExampleFilter(LabelCleaner(CHARSET_36))
    stream = [
        {"image": NOT_AN_IMAGE, "text": "a"},
        {"image": png_bytes(0), "text": "b"},
        {"image": png_bytes(1), "text": "!!"},
        {"image": {"bytes": None, "path": None}, "text": "c"},
    ]
    kept = list(example_filter.apply(example for example in stream))  # a generator: filtered as a stream
    assert [example["text"] for example in kept] == ["b"]
    assert example_filter.counts.totals() == collections.Counter(
        kept=1, undecodable_image=1, empty_after_filtering=1, missing_image=1
    )


def test_skip_counts_reach_the_main_process_from_dataloader_workers(broken_lmdb, processor):
    dataset = build_train_dataset([str(broken_lmdb)], charset=CHARSET_36, shuffle_buffer_size=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=STRDataCollator(processor))
    batches = list(loader)
    texts = [text for batch in batches for text in processor.batch_decode(batch["labels"])]
    assert sorted(texts) == GOOD  # each worker read its own shards: nothing twice, nothing lost
    assert dataset.stats == collections.Counter(kept=6, undecodable_image=2, missing_image=1, too_long=1)
    # Each batch also carries what its examples count for (themselves and the skips just before them in their
    # worker's stream), which the Trainer adds up as it trains on the batch: here every batch, so every count.
    assert all(batch["data_counts"].shape == (len(batch["labels"]), len(COUNTED)) for batch in batches)
    assert as_counter(sum(batch["data_counts"].sum(dim=0) for batch in batches)) == dataset.stats
    dataset.reset_stats()
    assert dataset.stats == collections.Counter()


def test_map_style_filter_skips_broken_images_and_drops_bad_labels(tmp_path, processor):
    records = _records(5)
    records[1]["image"] = {"bytes": TRUNCATED_PNG, "path": None}
    records[3]["text"] = "?!"  # no character of the charset
    _hf_dataset(records).to_parquet(str(tmp_path / "data.parquet"))
    dataset = build_train_dataset(
        [str(tmp_path / "data.parquet")], charset=CHARSET_36, streaming=False, cache_dir=str(tmp_path / "cache")
    )
    assert len(dataset) == 4 and dataset.label_drop_counts == {"empty_after_filtering": 1}
    assert dataset[0]["text"] == "word0"
    substitute = dataset[1]  # the truncated image: the next usable example comes instead
    assert substitute["text"] == "word2"
    assert dataset.stats == collections.Counter(kept=2, undecodable_image=1)
    dataset.reset_stats()
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=STRDataCollator(processor))
    (batch,) = list(loader)
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    assert dataset.stats == collections.Counter(kept=4, undecodable_image=1)


def test_evaluation_dataset_skips_without_substituting(tmp_path, processor):
    records = _records(5)
    records[1]["image"] = {"bytes": TRUNCATED_PNG, "path": None}
    records[3]["text"] = "?!"
    _hf_dataset(records).to_parquet(str(tmp_path / "a.parquet"))
    _hf_dataset(_records(2, offset=10)).to_parquet(str(tmp_path / "b.parquet"))
    dataset = build_eval_dataset(
        [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")], charset=CHARSET_36, split="train",
        cache_dir=str(tmp_path / "cache"),
    )
    assert isinstance(dataset, EvaluationDataset) and len(dataset) == 7  # the sources one after the other
    assert dataset[1] is None and dataset[3] is None  # no substitute: nothing is scored twice
    dataset.reset_stats()
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=workers,
                                             collate_fn=STRDataCollator(processor))
        texts = [text for batch in loader for text in processor.batch_decode(batch["labels"])]
        assert texts == ["word0", "word2", "word4", "word10", "word11"]
        assert dataset.stats == collections.Counter(kept=5, undecodable_image=1, empty_after_filtering=1)
        dataset.reset_stats()
    limited = build_eval_dataset([str(tmp_path / "a.parquet")], split="train", max_samples=2,
                                 cache_dir=str(tmp_path / "cache"))
    assert len(limited) == 2


def test_evaluation_dataset_counts_unreadable_records():
    class Flaky(list):
        def __getitem__(self, i):
            if i == 1:
                raise OSError("disk error")
            return super().__getitem__(i)

    dataset = EvaluationDataset(Flaky([(png_bytes(0), "ab"), None, ("not an image", "cd")]),
                                STRExampleFilter(LabelCleaner(CHARSET_36)))
    assert dataset[0]["text"] == "ab" and dataset[1] is None and dataset[2] is None
    assert dataset.stats == collections.Counter(kept=1, unreadable_record=1, missing_image=1)


def test_build_train_dataset_interleaves_streams(tmp_path, monkeypatch):
    # datasets pauses 5 s when an interleaved stream with parquet sources ends (an arrow threading workaround);
    # irrelevant for a test that finishes the stream in-process.
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    write_lmdb(tmp_path / "a", [(png_bytes(i), f"a{i}") for i in range(6)])
    _hf_dataset(_records(3, offset=50)).to_parquet(str(tmp_path / "b.parquet"))
    dataset = build_train_dataset([str(tmp_path / "a"), str(tmp_path / "b.parquet")], weights=[1, 1], seed=3)
    texts = [example["text"] for example in dataset]
    assert {f"a{i}" for i in range(6)} <= set(texts) and {"word50", "word51", "word52"} <= set(texts)
    limited = build_train_dataset([str(tmp_path / "a")], max_samples=2, shuffle_buffer_size=0)
    assert len(list(limited)) == 2
    with pytest.raises(ValueError, match="weights"):
        build_train_dataset([str(tmp_path / "a")], weights=[1, 2])


# --- collator ---------------------------------------------------------------------------------------------------------
def test_training_transform_sees_the_decoded_crop_before_the_resize(processor):
    seen_sizes = []

    def augment(image):
        seen_sizes.append(image.size)
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    image = Image.open(io.BytesIO(png_bytes(3, size=(40, 10))))
    examples = [{"image": image, "text": "ab"}, {"image": png_bytes(4, size=(30, 12)), "text": "hello"}]
    dataset = STRExampleFilter(LabelCleaner(CHARSET_36, max_label_length=12)).apply(examples, transform=augment)
    batch = STRDataCollator(processor, max_label_length=12)([dataset[0], dataset[1]])
    assert seen_sizes == [(40, 10), (30, 12)]  # augmentation sees the original crop, before the resize
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    tokenizer = processor.tokenizer
    ids = lambda word: [tokenizer.convert_tokens_to_ids(c) for c in word]  # noqa: E731
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    # Padded to max_label_length + 1 whatever the batch's longest word, so that batches of any process join.
    assert batch["labels"].tolist() == [ids("ab") + [eos] + [pad] * 10, ids("hello") + [eos] + [pad] * 7]
    flipped = processor(images=[image.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)])["pixel_values"]
    torch.testing.assert_close(batch["pixel_values"][0], flipped[0])
    assert dataset.stats == collections.Counter(kept=2)


def test_collator_decodes_bytes_keeps_texts_and_leaves_out_skipped_records(processor):
    collator = STRDataCollator(processor, encode_labels=False)
    batch = collator([None, {"image": png_bytes(4, size=(30, 12)), "text": "Any text!"}])  # bytes are decoded too
    assert batch["pixel_values"].shape == (1, 3, 32, 32) and batch["texts"] == ["Any text!"]
    empty = STRDataCollator(processor)([None, None])  # every record of the batch was skipped
    assert empty["pixel_values"].shape == (0, 3, 32, 32) and empty["labels"].shape[0] == 0


def test_placeholders_keep_one_row_per_record(processor):
    records = [(png_bytes(0), "ab"), (NOT_AN_IMAGE, "cd"), (png_bytes(1), "!!")]
    dataset = EvaluationDataset(records, STRExampleFilter(LabelCleaner(CHARSET_36)), placeholders=True)
    batch = STRDataCollator(processor, max_label_length=4)([dataset[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 3, 32, 32) and batch["pixel_values"][1:].abs().sum() == 0
    assert batch["labels"][1:].eq(-100).all() and processor.batch_decode(batch["labels"][:1]) == ["ab"]
    # What each record counts for travels in its row (the Trainer sums the rows it gathers).
    assert as_counter(batch["data_counts"][1:].sum(dim=0)) == collections.Counter(
        undecodable_image=1, empty_after_filtering=1)
    assert as_counter(batch["data_counts"].sum(dim=0)) == dataset.stats


def test_collator_errors(processor):
    collator = STRDataCollator(processor)
    with pytest.raises(ValueError, match="empty batch"):
        collator([])
    with pytest.raises(ValueError, match="STRExampleFilter"):
        collator([{"image": NOT_AN_IMAGE, "text": "ab"}])
    with pytest.raises(ValueError, match="'image' and 'text'"):
        collator([{"text": "ab"}])


@pytest.mark.parametrize("streaming", [True, False])
def test_a_source_without_any_usable_example_is_refused_before_training(tmp_path, streaming):
    # Every label is outside the charset: training would otherwise stall on empty batches.
    write_lmdb(tmp_path / "greek", [(png_bytes(0), "αβγ")] * 3)
    with pytest.raises(ValueError, match=r"greek.*empty_after_filtering"):
        build_train_dataset([str(tmp_path / "greek")], charset="abc", streaming=streaming)


def test_a_parquet_source_with_no_rows_is_refused_by_name(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    table = datasets.Dataset.from_dict(
        {"image": [], "text": []},
        features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}),
    )
    table.to_parquet(str(empty / "train-00000-of-00001.parquet"))
    with pytest.raises(ValueError, match="empty"):
        build_train_dataset([str(empty)], charset="abc", streaming=True)


def test_records_num_samples_announces_but_the_database_lacks_are_counted_as_absent(tmp_path):
    write_lmdb(tmp_path / "db", [(png_bytes(0), "ab"), (png_bytes(1), None)])
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"num-samples", b"4")  # two more records than it holds
    env.close()
    dataset = LmdbDataset(tmp_path / "db")
    assert len(dataset) == 1
    assert dataset.counts == collections.Counter(kept=1, missing_label=1, absent_record=2)
