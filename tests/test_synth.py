"""The synthetic word dataset of the offline demo (training/synth.py) and the prediction grid
(training/evaluation/visualize.py)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.synth import main
from training.synthesis import (
    DEFAULT_CHARSET,
    available_fonts,
    font_covers,
    generate_dataset,
    matplotlib_font_dir,
    render_word,
    sample_split_words,
)
from training.evaluation.visualize import save_prediction_grid


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

    from training.synthesis.vietnamese import TONE_MARKS, VIETNAMESE_CHARSET, vietnamese_syllable, vietnamese_word

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

    from training.synthesis.fonts import font_coverage, resolve_fonts

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

    from training.synthesis.vietnamese import VIETNAMESE_CHARSET

    image = render_word("việt", seed=0)

    def colours(prediction):
        grid = save_prediction_grid([image], ["việt"], [prediction], [0.9], tmp_path / "grid.png",
                                    charset=VIETNAMESE_CHARSET)
        pixels = np.asarray(grid.convert("RGB")).reshape(-1, 3)
        return ((pixels[:, 1] > 100) & (pixels[:, 0] < 60)).any(), ((pixels[:, 0] > 180) & (pixels[:, 1] < 60)).any()

    assert colours(unicodedata.normalize("NFD", "việt")) == (True, False)  # the same word in NFD: right
    assert colours("viet") == (False, True)  # a missed tone mark: wrong


@pytest.mark.slow
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
               "--num-train", "64", "--num-test", "8", "--max-steps", "2"] + (["--real-words"] if language == "vi" else [])
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
        # --real-words: real words trained on beside the made-up words, their held-out words scored in unseen faces.
        unseen = demo.WORDS_PART["vi"]["unseen_fonts"]
        assert summary["unseen_fonts"] == list(unseen) and 0.0 <= summary["unseen_fonts_word_accuracy"] <= 1.0
        words_config = json.loads((out / "data-words" / "synth_config.json").read_text(encoding="utf-8"))
        assert words_config["words"] == "real" and words_config["exclude_fonts"] == list(unseen)
        assert all(any(family in name for family in unseen) for name in words_config["test_fonts"])
        assert not any(any(family in name for family in unseen) for name in words_config["fonts"])
        assert "--train_weights 0.5 0.5" in result.stdout  # the command as echoed
        assert "## Real words in unseen faces" in (out / "results.md").read_text(encoding="utf-8")
    else:  # the synthetic-only English recipe, unchanged: no second part
        assert not (out / "data-words").exists() and "real_words_word_accuracy" not in summary


# --------------------------------------------------------------------------------------------------------------------
# The realistic style: photo-like crops of real words, a licensed font collection
# --------------------------------------------------------------------------------------------------------------------


def _package_font(fragment: str) -> str:
    from training.synthesis.fonts import package_fonts

    matches = [path for path in package_fonts() if fragment in Path(path).name]
    assert matches, f"pretix-fontpack-free ships no {fragment} (installed with the training extra)"
    return matches[0]


def test_realistic_style_same_seed_same_bytes_whatever_the_workers(tmp_path):
    """The realistic style keeps the per-image seeding: one process or three, chunks of 4 words, the same files;
    render_word gives the same pixels for the same seed."""
    fonts = [_package_font("Oswald_v57_regular"), _package_font("Vollkorn-Regular"), "DejaVuSans.ttf"]
    options = dict(num_train=18, num_test=5, seed=11, style="realistic", fonts=fonts, shard_rows=10, chunk_size=4)
    one = generate_dataset(tmp_path / "one", workers=1, **options)
    three = generate_dataset(tmp_path / "three", workers=3, **options)
    files = sorted(path.relative_to(tmp_path / "one") for path in (tmp_path / "one").rglob("*.parquet"))
    assert len(files) == 3
    for relative in files:
        assert (tmp_path / "one" / relative).read_bytes() == (tmp_path / "three" / relative).read_bytes()
    assert one["images_per_font"] == three["images_per_font"] and one["style"] == "realistic"
    first = render_word("Hello", seed=4, style="realistic", font=fonts[0])
    assert np.array_equal(np.asarray(first), np.asarray(render_word("Hello", seed=4, style="realistic", font=fonts[0])))
    assert not np.array_equal(np.asarray(first), np.asarray(render_word("Hello", seed=5, style="realistic",
                                                                        font=fonts[0])))
    assert first.size == (128, 32) and first.mode == "RGB"


def _text_is_light(image, mask) -> bool:
    """Whether the text is lighter than the background, measured on the rendered pixels: the mean luminance where
    the text's fill lies against the mean where neither it nor its blur reaches."""
    luminance = np.asarray(image.convert("L"), dtype=np.float64)
    coverage = np.asarray(mask, dtype=np.float64)
    inside, outside = coverage > 200, coverage < 5
    return luminance[inside].mean() > luminance[outside].mean()


def test_realistic_style_draws_light_on_dark_as_often_as_dark_on_light():
    font = _package_font("Roboto_v51_bold")
    words = ["STOP", "Exit", "open", "Hotel", "café", "4:30", "SALE", "bus", "Main St.", "coffee"]
    light = []
    for seed in range(60):
        image, mask = render_word(words[seed % len(words)], seed=seed, font=font, style="realistic", return_mask=True)
        assert np.asarray(mask).max() > 200  # the word is there
        light.append(_text_is_light(image, mask))
    assert 0.3 <= np.mean(light) <= 0.7, np.mean(light)  # either polarity, about equally often
    dark_on_light = [_text_is_light(*render_word("Exit", seed=seed, font=font, style="realistic",
                                                 colors="dark-on-light", return_mask=True)) for seed in range(20)]
    assert not any(dark_on_light)
    with pytest.raises(ValueError):
        render_word("Exit", seed=0, font=font, return_mask=True)  # the classic style has no mask to give


def test_realistic_style_records_each_fonts_licence(tmp_path):
    from training.synthesis.fonts import OPEN_LICENCES, font_licence, realistic_fonts

    fonts = {
        _package_font("Roboto-Condensed_v31_regular"): "Apache-2.0",  # its name table says so
        _package_font("Ubuntu_v21_regular"): "UFL-1.0",  # said in its copyright notice only
        _package_font("titillium-regularupright"): "OFL-1.1",  # said only in the package's own font list
        str(matplotlib_font_dir() / "DejaVuSerif.ttf"): "Bitstream-Vera",
    }
    for path, licence in fonts.items():
        assert font_licence(path)["licence"] == licence, path
    assert "font list" in font_licence(_package_font("titillium-regularupright"))["evidence"]
    # The default collection: only fonts under known open licences, Computer Modern (no licence stated) left out.
    collection = realistic_fonts()
    assert len(collection) > 100 and all(font_licence(font)["licence"] in OPEN_LICENCES for font in collection)
    assert not any(Path(font).name.startswith("cm") for font in collection)

    out = tmp_path / "data"
    main([str(out), "--style", "realistic", "--num-train", "12", "--num-test", "3", "--workers", "1",
          "--max-len", "12", "--fonts", *fonts])
    config = json.loads((out / "synth_config.json").read_text(encoding="utf-8"))
    assert config["style"] == "realistic" and config["words"] == "real" and config["word_source"]["package"] == "wordfreq"
    assert {"pretix-fontpack-free", "wordfreq", "libjpeg"} <= set(config["versions"])
    recorded = {info["path"]: info["licence"] for info in config["font_coverage"].values()}
    assert recorded == fonts
    assert config["font_licences"] == {"Apache-2.0": 1, "Bitstream-Vera": 1, "OFL-1.1": 1, "UFL-1.0": 1}
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "## Font licences" in readme and "Style: `realistic`" in readme and "wordfreq" in readme
    row = next(line for line in readme.splitlines() if line.startswith("| Ubuntu_v21_regular.ttf |"))
    assert "| UFL-1.0 | pretix-fontpack-free " in row
    assert "pretix_fontpackfree/Ubuntu Font Licence 1.0.txt" in readme
    texts = pq_texts(out)
    assert all(1 <= len(text) <= 12 for text in texts)


def pq_texts(out) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(out / "train").to_pydict()["text"] + pq.read_table(out / "test").to_pydict()["text"]


def test_realistic_vietnamese_words_only_drawn_with_fonts_that_cover_them(tmp_path):
    """Real Vietnamese words: a font lacking letters (DejaVu Sans Mono lacks the hook above, Ubuntu most tone marks)
    draws only the words it covers, every character of every word a real glyph of its font."""
    import pyarrow.parquet as pq
    from fontTools.ttLib import TTFont

    from training.synthesis.fonts import font_coverage
    from training.synthesis.vietnamese import VIETNAMESE_CHARSET

    fonts = [str(matplotlib_font_dir() / "DejaVuSansMono.ttf"), _package_font("Ubuntu_v21_regular"),
             _package_font("Oswald_v57_regular")]
    out = tmp_path / "vi"
    summary = generate_dataset(out, num_train=80, num_test=10, style="realistic", language="vi", fonts=fonts,
                               max_len=10, workers=1, seed=2)
    assert summary["charset"].startswith(VIETNAMESE_CHARSET) and summary["word_source"]["language"] == "vi"
    rows = pq.read_table(out / "train").to_pydict()
    texts, used = rows["text"], rows["font"]
    assert any(not text.isascii() for text in texts)  # tone marks and vowel marks are drawn
    by_name = {Path(font).name: font for font in fonts}
    cmaps = {name: TTFont(path).getBestCmap() for name, path in by_name.items()}
    for text, name in zip(texts, used):
        assert set(text) <= font_coverage(by_name[name], text), (text, name)
        assert all(ord(char) in cmaps[name] for char in text), (text, name)
    lacking = {name for name, info in summary["font_coverage"].items() if info["missing"]}
    assert {"DejaVuSansMono.ttf", "Ubuntu_v21_regular.ttf"} <= lacking
    assert lacking & set(used)  # the fonts that lack letters were used, for the words they cover


def test_real_words_follow_the_charset():
    from training.synthesis import PRINTABLE_ASCII, real_word

    rng = np.random.default_rng(0)
    words = [real_word(rng, PRINTABLE_ASCII, 1, 25) for _ in range(400)]
    assert all(1 <= len(word) <= 25 and set(word) <= set(PRINTABLE_ASCII) for word in words)
    assert any(word.isupper() for word in words) and any(word.islower() for word in words)
    assert any(word[0].isupper() and word[1:].islower() for word in words if len(word) > 1)
    assert any(any(c.isdigit() for c in word) for word in words) and any(not word.isalnum() for word in words)
    # A charset without digits or punctuation gets none; one without upper case gets words its labels fold.
    letters = "abcdefghijklmnopqrstuvwxyz"
    plain = [real_word(rng, letters, 3, 10) for _ in range(200)]
    assert all(word.lower().isalpha() and word.isascii() and 3 <= len(word) <= 10 for word in plain)
    assert any(not word.islower() for word in plain)
    with pytest.raises(ValueError):
        real_word(rng, letters, 1, 5, language="fr")


def test_font_collection_and_held_out_families(tmp_path):
    """`--fonts collection` draws the classic style from the open-licence collection; `--exclude-fonts` keeps a family
    out of training and `--test-fonts` renders the held-out words in it (reading in unseen faces), and the config
    says so; an explicit `--words real` with
    `--language vi` draws Vietnamese dictionary words rather than the made-up syllables."""
    import pyarrow.parquet as pq

    from training.synthesis import realistic_fonts
    from training.synthesis.fonts import exclude_fonts, font_family, resolve_fonts
    from training.synthesis.vietnamese import VIETNAMESE_CHARSET
    from training.synthesis.words import frequency_words

    collection = resolve_fonts(["collection"])
    assert collection == realistic_fonts() and len({font_family(font) for font in collection}) > 10
    kept = exclude_fonts(collection, ["montserrat", "Vollkorn"])
    assert kept and not any(font_family(font) in ("Montserrat", "Vollkorn") for font in kept)
    assert len(kept) < len(collection) and set(kept) < set(collection)

    out = tmp_path / "vi-real"
    main([str(out), "--num-train", "60", "--num-test", "10", "--language", "vi", "--words", "real", "--charset",
          VIETNAMESE_CHARSET, "--fonts", "collection", "--exclude-fonts", "Montserrat", "--test-fonts", "Montserrat",
          "--max-len", "8", "--workers", "1", "--layout", "left", "--colors", "dark-on-light"])
    config = json.loads((out / "synth_config.json").read_text(encoding="utf-8"))
    assert config["words"] == "real" and config["exclude_fonts"] == ["Montserrat"]
    assert not any("Montserrat" in name for name in config["fonts"])
    assert any(reason.startswith("excluded") for reason in config["fonts_left_out"].values())
    train = pq.read_table(out / "train").to_pydict()
    test = pq.read_table(out / "test").to_pydict()
    assert not any("Montserrat" in name for name in train["font"])
    assert test["font"] and all("Montserrat" in name for name in test["font"])
    assert not {word.casefold() for word in train["text"]} & {word.casefold() for word in test["text"]}
    dictionary = {word.casefold() for word in frequency_words("vi")}
    assert sum(word.casefold() in dictionary for word in train["text"]) >= 15  # about half are dictionary words
    with pytest.raises(SystemExit):
        main([str(tmp_path / "none"), "--num-train", "2", "--num-test", "1", "--fonts", "DejaVuSans.ttf",
              "--exclude-fonts", "DejaVu", "--workers", "1"])
    with pytest.raises(SystemExit):  # the realistic style picks fonts per word: one set for both splits
        main([str(tmp_path / "none"), "--num-train", "2", "--num-test", "1", "--style", "realistic",
              "--test-fonts", "Montserrat", "--workers", "1"])
