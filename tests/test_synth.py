"""The synthetic word dataset of the offline demo (training/synth.py) and the prediction grid
(training/visualize.py)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.synth import (
    DEFAULT_CHARSET,
    available_fonts,
    font_covers,
    generate_dataset,
    main,
    matplotlib_font_dir,
    render_word,
    sample_split_words,
)
from training.visualize import save_prediction_grid


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    summary = generate_dataset(out, num_train=60, num_test=20, seed=3, workers=2, shard_rows=25)
    return out, summary


def test_fonts_cover_the_charset_and_skip_symbol_fonts():
    fonts = {Path(path).name for path in available_fonts()}
    assert "DejaVuSans.ttf" in fonts and "DejaVuSerif-Bold.ttf" in fonts and "STIXGeneral.ttf" in fonts
    # Symbol fonts map ASCII codes to other glyphs; LastResort draws placeholder boxes; cmmi10's old-style 0 is an o.
    for name in ("cmsy10.ttf", "cmex10.ttf", "LastResortHE-Regular.ttf", "STIXSizOneSymReg.ttf", "cmmi10.ttf",
                 "DejaVuSansDisplay.ttf"):
        assert name not in fonts
        assert not font_covers(matplotlib_font_dir() / name, DEFAULT_CHARSET)


def test_render_word_is_deterministic_and_sized():
    first = render_word("hello42", seed=7, image_height=32, image_width=128)
    again = render_word("hello42", seed=7, image_height=32, image_width=128)
    other = render_word("hello42", seed=8, image_height=32, image_width=128)
    assert first.size == (128, 32) and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    assert render_word("ab", seed=0, image_height=48, image_width=96).size == (96, 48)
    # Text is visible: the image is not flat.
    assert np.asarray(render_word("mmm", seed=1, augment=0.0)).std() > 10


def test_split_words_are_held_out_and_within_bounds():
    # 117 possible words, 60 of them held out: the training draws must reject many collisions.
    train, test = sample_split_words(3000, 60, charset="abc", min_len=2, max_len=4, seed=1, kind="random")
    assert len(train) == 3000 and len(test) == 60 == len(set(test))
    assert not set(train) & set(test)  # dense space: many collisions were rejected
    assert all(2 <= len(word) <= 4 and set(word) <= set("abc") for word in train + test)
    pseudo_train, _ = sample_split_words(200, 50, seed=0, kind="pseudo")
    assert all(3 <= len(word) <= 10 and set(word) <= set(DEFAULT_CHARSET) for word in pseudo_train)
    reused, held = sample_split_words(100, 10, seed=0, num_train_words=20)
    assert len(set(reused)) == 20 and not set(reused) & set(held)
    with pytest.raises(ValueError):
        sample_split_words(10, 100, charset="ab", min_len=1, max_len=2)  # only 6 words exist


def test_dataset_loads_with_datasets(small_dataset):
    from datasets import load_dataset

    out, summary = small_dataset
    assert len(list((out / "train").glob("*.parquet"))) == 3  # 60 rows in shards of 25
    data = load_dataset("parquet", data_dir=str(out))
    assert set(data) == {"train", "test"}
    assert data["train"].num_rows == 60 and data["test"].num_rows == 20
    row = data["test"][0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (128, 32)
    row["image"].load()
    assert not set(data["train"]["text"]) & set(data["test"]["text"])
    by_files = load_dataset("parquet", data_files={"test": str(out / "test" / "*.parquet")})["test"]
    assert by_files["text"] == data["test"]["text"]
    assert json.loads((out / "synth_config.json").read_text())["num_train"] == 60 == summary["num_train"]


def test_generation_is_deterministic_whatever_the_workers(small_dataset, tmp_path):
    import pyarrow.parquet as pq

    out, _ = small_dataset
    again = tmp_path / "again"
    generate_dataset(again, num_train=60, num_test=20, seed=3, workers=1, shard_rows=25)
    for split in ("train", "test"):
        for first, second in zip(sorted((out / split).glob("*.parquet")), sorted((again / split).glob("*.parquet"))):
            assert first.name == second.name
            assert pq.read_table(first).equals(pq.read_table(second))
    different = tmp_path / "different"
    generate_dataset(different, num_train=0, num_test=20, seed=4, workers=1)
    assert pq.read_table(next((different / "test").glob("*.parquet")))["text"].to_pylist() != \
        pq.read_table(next((out / "test").glob("*.parquet")))["text"].to_pylist()


def test_command_line(tmp_path):
    from datasets import load_dataset

    out = tmp_path / "cli"
    main([str(out), "--num-train", "8", "--num-test", "4", "--charset", "0123456789", "--min-len", "2",
          "--max-len", "4", "--image-height", "24", "--image-width", "64", "--workers", "1", "--words", "random"])
    test = load_dataset("parquet", data_files={"test": str(out / "test" / "*.parquet")})["test"]
    assert test.num_rows == 4
    assert all(word.isdigit() and 2 <= len(word) <= 4 for word in test["text"])
    assert test[0]["image"].size == (64, 24)


def test_prediction_grid(tmp_path):
    images = [render_word(word, seed=i) for i, word in enumerate(["abc", "hello", "x9y", "demo", "str"])]
    path = tmp_path / "grid" / "predictions.png"
    grid = save_prediction_grid(images, ["abc", "hello", "x9y", "demo", "str"], ["abc", "hallo", "X9Y", "", "str"],
                                [0.99, 0.41, 0.9, 0.05, 0.87], path, columns=2, cell_width=200)
    assert path.is_file()
    with Image.open(path) as saved:
        assert saved.format == "PNG"
        assert saved.size == grid.size
        assert saved.width == 2 * 200
        # 5 images in 2 columns: 3 rows of equal height.
        assert saved.height % 3 == 0
        pixels = np.asarray(saved.convert("RGB")).reshape(-1, 3)
    # Both verdict colours are drawn (a correct and a wrong reading).
    assert ((pixels[:, 1] > 100) & (pixels[:, 0] < 60)).any()
    assert ((pixels[:, 0] > 180) & (pixels[:, 1] < 60)).any()
    with pytest.raises(ValueError):
        save_prediction_grid(images, ["a"], ["a"], None, tmp_path / "bad.png")


def test_render_options():
    plain = np.asarray(render_word("abc123", seed=0, colors="plain", augment=0.0, layout="left"))
    assert plain.mean() > 150  # dark text on a near-white background
    for layout in ("tight", "left", "free"):
        for colors in ("random", "dark-on-light", "plain"):
            assert render_word("word", seed=1, layout=layout, colors=colors).size == (128, 32)
    # "left": a short word leaves the right side blank (no stretching).
    left = np.asarray(render_word("ab", seed=2, colors="plain", augment=0.0, layout="left").convert("L"))
    assert left[:, -40:].min() > 150 and left[:, :40].min() < 100
    with pytest.raises(ValueError):
        render_word("ab", seed=0, layout="diagonal")
    with pytest.raises(ValueError):
        render_word("ab", seed=0, colors="neon")
    with pytest.raises(ValueError):
        render_word("", seed=0)


def test_font_selection(tmp_path):
    summary = generate_dataset(tmp_path / "mono", num_train=4, num_test=2, fonts=["DejaVuSansMono"], workers=1)
    assert summary["fonts"] and all(name.startswith("DejaVuSansMono") for name in summary["fonts"])
    with pytest.raises(ValueError):
        generate_dataset(tmp_path / "none", num_train=4, num_test=2, fonts=["cmsy10"], workers=1)


def test_demo_random_clip_loads_with_from_clip(tmp_path):
    """The demo's CLIP (random weights, byte-level BPE tokenizer written offline) is a valid `from_clip` start."""
    import torch

    from modeling_clip4str import CHARSET_36, CLIP4STRForSceneTextRecognition
    from training import demo

    clip_dir = demo.random_clip(tmp_path / "random-clip", seed=0)
    model = CLIP4STRForSceneTextRecognition.from_clip(str(clip_dir), charset=CHARSET_36, max_label_length=8,
                                                      decoder_num_heads=2)
    assert model.config.vision_config.image_size == demo.CLIP["image_size"]
    assert model.config.projection_dim == demo.CLIP["projection_dim"]
    tokenizer = model.caption_tokenizer
    ids = model.tokenize_captions(["hello"])[0].tolist()
    # start token, one token per byte (the last one word-final), end token
    assert ids[0] == tokenizer.bos_token_id and ids[6] == tokenizer.eos_token_id
    assert tokenizer.convert_ids_to_tokens(ids[1:6]) == ["h", "e", "l", "l", "o</w>"]
    # the sine-cosine position table: the class token at zero, distinct rows for distinct patches
    table = model.vision_model.embeddings.position_embedding.weight
    assert torch.all(table[0] == 0) and torch.unique(table[1:], dim=0).shape[0] == table.shape[0] - 1


def test_sincos_table():
    from training.demo import sincos_2d

    table = sincos_2d(8, 3)
    assert table.shape == (9, 8)
    # patches in the same row share the row half; in the same column, the column half
    assert torch_equal(table[0, :4], table[2, :4]) and torch_equal(table[0, 4:], table[6, 4:])
    assert not torch_equal(table[0, :4], table[3, :4])
    with pytest.raises(ValueError):
        sincos_2d(6, 3)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


# --------------------------------------------------------------------------------------------------------------------
# Other scripts: Vietnamese words, word files, fonts that cover only some words
# --------------------------------------------------------------------------------------------------------------------


def test_vietnamese_words_have_real_syllable_structure():
    import unicodedata

    from training.vietnamese import TONE_MARKS, VIETNAMESE_CHARSET, vietnamese_syllable, vietnamese_word

    rng = np.random.default_rng(0)
    syllables = [vietnamese_syllable(rng) for _ in range(3000)]
    assert len(VIETNAMESE_CHARSET) == 178 == len(set(VIETNAMESE_CHARSET))
    tones = {mark: 0 for mark in ("", *TONE_MARKS)}
    for syllable in syllables:
        assert syllable == unicodedata.normalize("NFC", syllable) and set(syllable) <= set(VIETNAMESE_CHARSET)
        marks = [char for char in unicodedata.normalize("NFD", syllable) if char in TONE_MARKS]
        assert len(marks) <= 1, syllable  # one tone per syllable
        tones[marks[0] if marks else ""] += 1
        if syllable.endswith(("c", "ch", "p", "t")):
            assert marks and marks[0] in ("\u0301", "\u0323"), syllable  # stops take the rising or the heavy tone
        assert not syllable.startswith(("ci", "ce", "ky", "ka", "gha", "ngho")), syllable  # spelling rules
    assert all(count > 300 for count in tones.values())  # all six tones, about equally often
    assert {"tiếng", "người"} <= set(syllables) or len(set(syllables)) > 1500
    words = [vietnamese_word(rng) for _ in range(2000)]
    assert any(word.isupper() for word in words) and any(word[0].isupper() and word[1:].islower() for word in words)
    assert any(len(word) >= 8 for word in words) and any(len(word) <= 3 for word in words)


def test_vietnamese_dataset_holds_out_words_in_any_case(tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "vi"
    main([str(out), "--num-train", "40", "--num-test", "30", "--language", "vi", "--max-len", "6", "--workers", "1",
          "--fonts", "DejaVuSans.ttf", "DejaVuSerif-Bold.ttf"])
    train = pq.read_table(out / "train").to_pydict()
    test = pq.read_table(out / "test").to_pydict()
    assert all(1 <= len(word) <= 6 for word in train["text"] + test["text"])
    assert not {word.casefold() for word in train["text"]} & {word.casefold() for word in test["text"]}
    assert set(train["font"]) <= {"DejaVuSans.ttf", "DejaVuSerif-Bold.ttf"}
    config = json.loads((out / "synth_config.json").read_text(encoding="utf-8"))
    assert config["words"] == "vi" and config["layout_engine"] in ("basic", "raqm")
    assert set(config["versions"]) == {"matplotlib", "pillow", "freetype", "numpy"}
    assert f"pillow {config['versions']['pillow']}" in (out / "README.md").read_text(encoding="utf-8")
    assert sum(config["images_per_font"]["train"].values()) == 40


def test_a_font_never_draws_a_word_it_lacks_glyphs_for(tmp_path):
    """DejaVu Sans Mono lacks 46 Vietnamese letters (those with a hook above or two marks: ả, ế, ...): it may draw
    "bao" but never "của"."""
    import pyarrow.parquet as pq
    from fontTools.ttLib import TTFont

    mono = str(matplotlib_font_dir() / "DejaVuSansMono.ttf")
    sans = str(matplotlib_font_dir() / "DejaVuSans.ttf")
    lacking = [word for word in ("của", "tiếng", "ảnh", "mẫu", "thể", "Cổ") if any(
        ord(char) not in TTFont(mono).getBestCmap() for char in word)]
    assert len(lacking) == 6
    words = lacking * 5 + ["bao", "Việt", "tôi", "ba", "con", "hai"] * 5
    words_file = tmp_path / "words.txt"
    words_file.write_text("\n".join(words) + "\n\n", encoding="utf-8")
    out = tmp_path / "data"
    summary = generate_dataset(out, num_train=120, num_test=2, words_file=str(words_file), fonts=[mono, sans],
                               workers=1, seed=1)
    rows = pq.read_table(out / "train").to_pydict()
    rows["text"] += pq.read_table(out / "test").to_pydict()["text"]
    rows["font"] += pq.read_table(out / "test").to_pydict()["font"]
    cmaps = {name: TTFont(path).getBestCmap() for name, path in (("DejaVuSansMono.ttf", mono),
                                                                  ("DejaVuSans.ttf", sans))}
    for text, font in zip(rows["text"], rows["font"]):
        assert all(ord(char) in cmaps[font] for char in text), (text, font)
    used_mono = {text for text, font in zip(rows["text"], rows["font"]) if font == "DejaVuSansMono.ttf"}
    assert used_mono and not used_mono & set(lacking)  # Mono was used, but only for words it covers
    assert summary["font_coverage"]["DejaVuSansMono.ttf"]["missing"] and \
        not summary["font_coverage"]["DejaVuSans.ttf"]["missing"]
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "| DejaVuSansMono.ttf | DejaVu Sans Mono |" in readme and "ả" in readme
    from datasets import load_dataset

    assert load_dataset(str(out), split="test").num_rows == 2


def test_words_nobody_covers_are_left_out(tmp_path):
    words_file = tmp_path / "words.txt"
    words_file.write_text("abc\nxyz\n漢字\nfoo\n", encoding="utf-8")
    summary = generate_dataset(tmp_path / "data", num_train=6, num_test=1, words_file=str(words_file),
                               fonts=["DejaVuSans.ttf"], workers=1)
    assert summary["words_without_font"] == {"count": 1, "examples": ["漢字"]}
    with pytest.raises(ValueError, match="cannot hold out 3 test words"):
        generate_dataset(tmp_path / "few", num_train=6, num_test=3, words_file=str(words_file),
                         fonts=["DejaVuSans.ttf"], workers=1)


def test_font_coverage_and_font_resolution(tmp_path):
    import shutil

    from training.fonts import font_coverage, resolve_fonts

    directory = matplotlib_font_dir()
    assert font_coverage(directory / "LastResortHE-Regular.ttf", "abcế") == frozenset()  # placeholder boxes
    assert font_coverage(directory / "cmsy10.ttf", "abc") == frozenset()  # a symbol font
    assert font_coverage(directory / "DejaVuSerif.ttf", "Ếế") == set("Ếế")  # glyph names "uni1ebe", "uni1ebF"
    assert font_coverage(directory / "DejaVuSansMono.ttf", "aạả") == {"a", "ạ"}  # no hook above
    assert font_coverage(directory / "cmr10.ttf", 'ab"') == {"a", "b"}  # its '"' is a right double quote
    fonts_dir = tmp_path / "fonts"
    fonts_dir.mkdir()
    shutil.copy(directory / "DejaVuSans.ttf", fonts_dir / "MyFont.ttf")
    assert resolve_fonts([str(fonts_dir)]) == (str(fonts_dir / "MyFont.ttf"),)
    assert resolve_fonts([str(fonts_dir / "MyFont.ttf"), "DejaVuSerif-Bold.ttf"]) == (
        str(fonts_dir / "MyFont.ttf"), str(directory / "DejaVuSerif-Bold.ttf"))
    with pytest.raises(ValueError, match="No font matches"):
        resolve_fonts(["NoSuchFontAnywhere"])


def test_output_is_byte_identical_whatever_the_workers(tmp_path):
    """Several worker processes, each rendering chunks of 7 words, write the very same files as one process."""
    options = dict(num_train=30, num_test=9, seed=5, words="vi", shard_rows=16, chunk_size=7)
    generate_dataset(tmp_path / "one", workers=1, **options)
    generate_dataset(tmp_path / "three", workers=3, **options)
    files = sorted(path.relative_to(tmp_path / "one") for path in (tmp_path / "one").rglob("*.parquet"))
    assert len(files) == 3  # two training shards, one test shard
    for relative in files:
        assert (tmp_path / "one" / relative).read_bytes() == (tmp_path / "three" / relative).read_bytes()


def test_prediction_grid_judges_on_a_given_charset(tmp_path):
    import unicodedata

    from training.vietnamese import VIETNAMESE_CHARSET

    image = render_word("việt", seed=0)

    def colours(prediction):
        grid = save_prediction_grid([image], ["việt"], [prediction], [0.9], tmp_path / "grid.png",
                                    charset=VIETNAMESE_CHARSET)
        pixels = np.asarray(grid.convert("RGB")).reshape(-1, 3)
        return ((pixels[:, 1] > 100) & (pixels[:, 0] < 60)).any(), ((pixels[:, 0] > 180) & (pixels[:, 1] < 60)).any()

    assert colours(unicodedata.normalize("NFD", "việt")) == (True, False)  # the same word in NFD: right
    assert colours("viet") == (False, True)  # a missed tone mark: wrong


@pytest.mark.parametrize("language", ["en", "vi"])
def test_demo_runs_end_to_end_on_a_few_images(tmp_path, language):
    """`training/demo.py`, shrunk to a few images and steps: every step runs, the model keeps the recipe's settings
    (no refinement: two training orders do not teach the cloze context) and the summary holds what the README
    quotes."""
    import subprocess
    import sys

    from conftest import REPO
    from modeling_clip4str import CLIP4STRConfig
    from training import demo

    out = tmp_path / "demo"
    command = [sys.executable, "-m", "training.demo", "--language", language, "--output-dir", str(out),
               "--num-train", "64", "--num-test", "8", "--max-steps", "2"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["training_steps"] == 2 and 0.0 <= summary["held_out_word_accuracy"] <= 1.0
    assert summary["learning_rate"] == demo.RECIPES[language][1]["learning_rate"]
    assert (out / "predictions.png").exists()
    config = CLIP4STRConfig.from_pretrained(out / "clip4str-demo")
    assert config.refine_iters == 0 and config.perm_num == 2
    if language == "vi":
        assert summary["protocol"] == "model" and summary["charset_size"] == len(config.charset)
        assert sum(summary["character_errors"].values()) > 0  # two steps from random weights: errors, split by kind
