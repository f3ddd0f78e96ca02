"""training/evaluate_str.py: label protocol, scoring with a stand-in model, and the CLI end to end on tiny LMDBs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO, make_model, word_image, write_lmdb
from modeling_clip4str import CLIP4STRProcessor

lmdb = pytest.importorskip("lmdb")

from training.data import SKIP_REASONS  # noqa: E402
from training.evaluate_str import main  # noqa: E402
from training.evaluation.benchmark import evaluate_model  # noqa: E402
from training.evaluation.results import format_results_table, format_skipped  # noqa: E402
from training.evaluation.protocol import CHARSET_36, compute_str_metrics, protocol_charset  # noqa: E402

# The tiny model of conftest reads at most 12 characters, so "abcdefghijklm" (13) is too long for it.
IIIT5K_SAMPLES = [("Hello", "image"), ("wor ld", "image"), ("café", "image"), ("abc", "corrupt")]
# The last SVT record has an image but no label key at all.
SVT_SAMPLES = [("12.5!", "image"), ("?!", "image"), ("abcdefghijklm", "image"), ("", "no label")]


def encoded_png(text: str) -> bytes:
    buffer = io.BytesIO()
    word_image(text, size=(64, 24)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_benchmark(directory, samples):
    """An LMDB benchmark from (label, kind) pairs: a rendered word, a truncated PNG (kind "corrupt") or a record
    without a label ("no label")."""
    write_lmdb(directory, [
        (encoded_png(label) if kind == "image" else b"\x89PNG\r\n\x1a\n truncated", None if kind == "no label" else label)
        for label, kind in samples
    ])


@pytest.fixture(scope="module")
def lmdb_tree(tmp_path_factory):
    """data/test/{IIIT5k,SVT}: 4 records each, one corrupt image in IIIT5k, three unusable labels in SVT."""
    root = tmp_path_factory.mktemp("str-data") / "data"
    write_benchmark(root / "test" / "SVT", SVT_SAMPLES)
    write_benchmark(root / "test" / "IIIT5k", IIIT5K_SAMPLES)
    return root


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, caption_tokenizer):
    """A tiny random CLIP4STR and its processor, saved like a trained one."""
    model = make_model(caption_tokenizer)
    processor = CLIP4STRProcessor.from_config(model.config)
    directory = tmp_path_factory.mktemp("model") / "tiny-clip4str"
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory, model, processor


# --------------------------------------------------------------------------------------------------------------------
# evaluate_model with a stand-in model whose answers are known
# --------------------------------------------------------------------------------------------------------------------


class OracleProcessor:
    """Images are solid colours; pixel_values carry the red value, which the oracle maps to a text."""

    image_processor = SimpleNamespace(size={"height": 2, "width": 2})

    def __call__(self, images, return_tensors="pt"):
        reds = [image.convert("RGB").getpixel((0, 0))[0] for image in images]
        return {"pixel_values": torch.stack([torch.full((3, 2, 2), float(red)) for red in reds])}

    def batch_decode(self, output, return_confidences=False):
        assert return_confidences
        return {"texts": output.texts, "confidences": output.confidences}


class OracleModel(torch.nn.Module):
    """Reads the colour code of each image and answers from a table, as a perfect-recall stand-in for CLIP4STR."""

    def __init__(self, answers):
        super().__init__()
        self.answers = answers  # red value -> (text, confidence)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(max_label_length=12, charset=CHARSET_36, refine_iters=1)
        self.calls = []

    def generate(self, pixel_values, refine_iters=None, return_dict_in_generate=False):
        assert return_dict_in_generate and not torch.is_grad_enabled()
        self.calls.append((len(pixel_values), refine_iters))
        codes = pixel_values[:, 0, 0, 0].long().tolist()
        return SimpleNamespace(
            texts=[self.answers[code][0] for code in codes], confidences=[self.answers[code][1] for code in codes]
        )


def coloured(code: int):
    from PIL import Image

    return Image.new("RGB", (8, 4), (code, 0, 0))


def test_evaluate_model_scores_skips_and_combines():
    model = OracleModel({1: ("hello", 0.9), 2: ("w0rld", 0.5), 3: ("", 0.1), 4: ("abc", 1.0)})
    datasets = {
        # hello/Hello: hit; w0rld/World!: 1 of 5; ""/"ab": miss, NED 1; then five unusable records.
        "first": [
            (coloured(1), "Hello"),
            (coloured(2), "World!"),
            (coloured(3), "ab"),
            (b"not an image", "xyz"),
            (None, "xyz"),
            (coloured(1), "--"),
            (coloured(1), None),
            (coloured(1), "abcdefghij!!!"),  # 13 characters: too long, although only 10 survive the charset
        ],
        # Records given as mappings, as LMDB and Hub datasets give them; whitespace and accents are cleaned.
        "second": [{"image": coloured(4), "text": "a b c"}, {"image": coloured(5), "text": "Café"}],
        "nothing": [(coloured(1), "!!")],
    }
    model.answers[5] = ("cafe", 0.5)
    results = evaluate_model(model, OracleProcessor(), datasets, batch_size=2, refine_iters=3, show_progress=False)
    # Preprocessing in this process instead of DataLoader workers changes nothing but the timings.
    inline = evaluate_model(
        OracleModel(model.answers), OracleProcessor(), datasets, batch_size=2, refine_iters=3, num_workers=0,
        show_progress=False,
    )
    for name, result in results["datasets"].items():
        assert {**result, "seconds": 0} == {**inline["datasets"][name], "seconds": 0}

    first = results["datasets"]["first"]
    assert first["num_samples"] == 3 and first["num_records"] == 8 and first["num_skipped"] == 5
    assert first["skipped"] == {
        "empty_after_filtering": 1, "missing_image": 1, "not_a_string": 1, "too_long": 1, "undecodable_image": 1,
    }
    assert set(first["skipped"]) <= set(SKIP_REASONS)
    assert first["accuracy"] == pytest.approx(1 / 3)
    assert first["one_minus_ned"] == pytest.approx(1 - (0 + 1 / 5 + 1) / 3)
    assert first["mean_confidence"] == pytest.approx((0.9 + 0.5 + 0.1) / 3)
    assert first["mean_label_length"] == pytest.approx((5 + 5 + 2) / 3)

    second = results["datasets"]["second"]
    assert (second["num_samples"], second["accuracy"], second["one_minus_ned"]) == (2, 1.0, 1.0)
    assert second["num_skipped"] == 0 and second["mean_label_length"] == 3.5

    nothing = results["datasets"]["nothing"]
    assert nothing["num_samples"] == 0 and nothing["accuracy"] is None
    assert nothing["skipped"] == {"empty_after_filtering": 1}

    combined = results["combined"]
    assert combined["num_samples"] == 5 and combined["num_skipped"] == 6
    assert combined["accuracy"] == pytest.approx(3 / 5)
    assert combined["one_minus_ned"] == pytest.approx(1 - (1 / 5 + 1) / 5)
    assert combined["mean_confidence"] == pytest.approx((0.9 + 0.5 + 0.1 + 1.0 + 0.5) / 5)
    mean = results["mean"]
    assert mean["num_datasets"] == 2  # a dataset with nothing scored does not count
    assert mean["accuracy"] == pytest.approx((1 / 3 + 1) / 2)
    assert mean["one_minus_ned"] == pytest.approx((first["one_minus_ned"] + 1) / 2)

    # Batches of at most 2, the refine_iters option passed through.
    assert model.calls == [(2, 3), (1, 3), (2, 3)]
    assert results["protocol"]["max_label_length"] == 12 and results["protocol"]["charset"] == CHARSET_36

    table = format_results_table(results)
    assert "| first " in table and "33.33" in table and "| Combined (weighted)" in table and "2 sets" in table
    assert "nothing: 1 of 1 skipped (1 label empty under the protocol)" in format_skipped(results)


def test_evaluate_model_protocol_options_and_errors():
    model = OracleModel({1: ("Its", 0.5)})
    data = {"set": [(coloured(1), "it's")]}
    assert evaluate_model(model, OracleProcessor(), data, show_progress=False)["combined"]["accuracy"] == 1.0
    cased = evaluate_model(model, OracleProcessor(), data, cased=True, show_progress=False)
    assert cased["combined"]["accuracy"] == 0.0
    punctuation = evaluate_model(model, OracleProcessor(), data, punctuation=True, show_progress=False)
    assert punctuation["combined"]["one_minus_ned"] == pytest.approx(0.75)
    with pytest.raises(TypeError, match="must map names"):
        evaluate_model(model, OracleProcessor(), [(coloured(1), "a")])
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_model(model, OracleProcessor(), data, batch_size=0)


# --------------------------------------------------------------------------------------------------------------------
# The CLI on LMDBs with a real (tiny, random) CLIP4STR
# --------------------------------------------------------------------------------------------------------------------


def test_cli_end_to_end(lmdb_tree, saved_model, tmp_path, capsys):
    model_dir, model, processor = saved_model
    json_path, markdown_path = tmp_path / "out" / "results.json", tmp_path / "out" / "results.md"
    main([
        "--model", str(model_dir), "--data", str(lmdb_tree), "--device", "cpu", "--batch-size", "2",
        "--output-json", str(json_path), "--output-markdown", str(markdown_path), "--no-progress",
    ])
    printed = capsys.readouterr().out
    results = json.loads(json_path.read_text())

    assert list(results["datasets"]) == ["IIIT5k", "SVT"]  # standard benchmark order, not directory order
    iiit5k, svt = results["datasets"]["IIIT5k"], results["datasets"]["SVT"]
    assert (iiit5k["num_records"], iiit5k["num_samples"], iiit5k["skipped"]) == (4, 3, {"undecodable_image": 1})
    assert (svt["num_records"], svt["num_samples"]) == (4, 1)
    assert svt["skipped"] == {"empty_after_filtering": 1, "missing_label": 1, "too_long": 1}
    # Labels after the protocol: hello, world, cafe | 125.
    assert iiit5k["mean_label_length"] == pytest.approx(14 / 3)
    assert svt["mean_label_length"] == 3.0
    assert results["combined"]["num_samples"] == 4 and results["combined"]["num_skipped"] == 4
    assert results["combined"]["mean_label_length"] == pytest.approx(17 / 4)
    assert results["combined"]["accuracy"] == pytest.approx((3 * iiit5k["accuracy"] + svt["accuracy"]) / 4)
    assert results["mean"]["accuracy"] == pytest.approx((iiit5k["accuracy"] + svt["accuracy"]) / 2)
    assert results["model"] == str(model_dir)
    assert results["options"]["batch_size"] == 2 and results["options"]["cased"] is False
    assert results["protocol"]["charset"] == CHARSET_36 and results["protocol"]["max_label_length"] == 12

    # The scores are those of generate + batch_decode + the protocol, computed here independently.
    images = [word_image(text, size=(64, 24)) for text, _ in IIIT5K_SAMPLES[:3]]
    with torch.inference_mode():
        output = model.generate(**processor(images=images), return_dict_in_generate=True)
    decoded = processor.batch_decode(output, return_confidences=True)
    expected = compute_str_metrics(decoded["texts"], ["hello", "world", "cafe"], decoded["confidences"])
    for key in ("accuracy", "one_minus_ned", "mean_confidence"):
        assert iiit5k[key] == pytest.approx(expected[key], abs=1e-6)

    markdown = markdown_path.read_text()
    assert "comparison charset: 36 characters, case-insensitive, without punctuation" in markdown
    assert "| Dataset" in markdown and "| IIIT5k" in markdown and "| SVT" in markdown
    assert "| Combined (weighted)" in markdown and "| Mean of datasets" in markdown
    assert f"{100 * expected['accuracy']:.2f}" in markdown
    assert (
        "SVT: 3 of 4 skipped (1 label empty under the protocol, 1 no label, 1 label too long (> 12 characters))"
        in markdown
    )
    assert "| IIIT5k" in printed and "IIIT5k: 1 of 4 skipped (1 unreadable image)" in printed


def test_cli_selection_and_options(lmdb_tree, saved_model, tmp_path):
    model_dir, _, _ = saved_model
    json_path = tmp_path / "results.json"
    main([
        "--model", str(model_dir), "--data", str(lmdb_tree / "test"), "--datasets", "SVT", "--device", "cpu",
        "--cased", "--punctuation", "--max-samples", "2", "--refine-iters", "0", "--max-label-length", "0",
        "--output-json", str(json_path), "--no-progress",
    ])
    results = json.loads(json_path.read_text())
    assert list(results["datasets"]) == ["SVT"]
    svt = results["datasets"]["SVT"]
    # Only the first two records (load-time drops are not counted then); with punctuation both are scorable.
    assert (svt["num_records"], svt["num_samples"], svt["num_skipped"]) == (2, 2, 0)
    assert svt["mean_label_length"] == pytest.approx((5 + 2) / 2)
    assert results["protocol"]["charset"] == protocol_charset(cased=True, punctuation=True)
    assert results["protocol"]["refine_iters"] == 0 and results["protocol"]["max_label_length"] is None


def test_cli_reports_bad_input(lmdb_tree, saved_model, tmp_path, capsys):
    model_dir, _, _ = saved_model
    with pytest.raises(SystemExit):
        main(["--model", str(model_dir), "--data", str(lmdb_tree), "--datasets", "CUTE80", "--no-progress"])
    assert "Dataset 'CUTE80' not found. Available: IIIT5k, SVT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", str(model_dir), "--data", str(tmp_path / "missing")])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", str(model_dir), "--data", str(lmdb_tree), "--charset", "abc", "--cased"])
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["script", "module"])
def test_cli_help(how):
    script = [str(REPO / "training" / "evaluate_str.py")] if how == "script" else ["-m", "training.evaluate_str"]
    result = subprocess.run([sys.executable, *script, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    for option in ("--model", "--data", "--datasets", "--cased", "--punctuation", "--batch-size", "--refine-iters",
                   "--device", "--output-json", "--output-markdown", "--max-samples", "--data-source"):
        assert option in result.stdout


def test_cli_mixes_lmdb_and_parquet_sources(lmdb_tree, saved_model, tmp_path):
    import datasets

    model_dir, _, _ = saved_model
    parquet = tmp_path / "words.parquet"
    features = datasets.Features({"img": datasets.Image(), "word": datasets.Value("string")})
    rows = {"img": [{"bytes": encoded_png("Stop"), "path": None}, {"bytes": b"broken", "path": None}],
            "word": ["STOP", "go"]}
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(parquet))
    json_path = tmp_path / "results.json"
    main([
        "--model", str(model_dir), "--data", str(lmdb_tree), f"Signs={parquet}", "--data-source", "lmdb", "hub",
        "--split", "train", "--image-column", "img", "--text-column", "word", "--datasets", "Signs", "SVT",
        "--device", "cpu", "--output-json", str(json_path), "--no-progress", "--num-workers", "0",
        "--cache-dir", str(tmp_path / "cache"),
    ])
    results = json.loads(json_path.read_text())
    assert list(results["datasets"]) == ["Signs", "SVT"]  # the order asked for
    signs = results["datasets"]["Signs"]
    assert (signs["num_records"], signs["num_samples"], signs["skipped"]) == (2, 1, {"undecodable_image": 1})
    assert signs["mean_label_length"] == 4.0


# --------------------------------------------------------------------------------------------------------------------
# Models that read another script: their own charset, NFC, character confusions
# --------------------------------------------------------------------------------------------------------------------

VIETNAMESE_CASED = "abcdeghiklmnopqrstuvxyàáâãèéêìíòóôõùúýăđĩũơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ"
VIETNAMESE_CASED += VIETNAMESE_CASED.upper()


def test_a_non_ascii_model_is_scored_on_its_own_charset():
    import unicodedata

    nfd = lambda text: unicodedata.normalize("NFD", text)  # noqa: E731
    model = OracleModel({1: ("tiếng", 0.9), 2: (nfd("Việt"), 0.8), 3: ("tieng", 0.7), 4: ("việt", 0.6),
                         5: ("ngươi", 0.5)})
    model.config.charset = VIETNAMESE_CASED
    data = {"vi": [(coloured(1), nfd("tiếng")),  # NFD label, NFC reading: the same word
                   (coloured(2), "Việt"),  # NFD reading, NFC label
                   (coloured(3), "tiếng"),  # a missed tone mark is an error
                   (coloured(4), "Việt"),  # so is a letter of the wrong case: the charset has both
                   (coloured(5), "người")]}  # a missed tone (ờ -> ơ)
    results = evaluate_model(model, OracleProcessor(), data, show_progress=False, confusions=5, num_workers=0)
    protocol = results["protocol"]
    assert protocol["charset"] == VIETNAMESE_CASED and protocol["charset_source"] == "model"
    assert protocol["unicode_normalization"] == "NFC"
    assert results["combined"]["accuracy"] == pytest.approx(2 / 5)
    confusions = results["confusions"]
    assert confusions["kinds"] == {"tone mark and other diacritic": 1, "tone mark": 1, "case": 1}
    assert {(pair["label"], pair["prediction"], pair["kind"]) for pair in confusions["pairs"]} == {
        ("ế", "e", "tone mark and other diacritic"), ("V", "v", "case"), ("ờ", "ơ", "tone mark")}
    table = format_results_table(results)
    assert "Protocol: the model's own charset (178 characters, case-sensitive" in table and "NFC" in table

    # The benchmark protocol on request: accents are folded away on both sides and case is ignored.
    benchmark = evaluate_model(model, OracleProcessor(), data, charset=CHARSET_36, show_progress=False,
                               num_workers=0)
    assert benchmark["protocol"]["charset_source"] == "explicit" and benchmark["combined"]["accuracy"] == 1.0
    # An ASCII model keeps the 36-character benchmark protocol by default.
    ascii_model = OracleModel({1: ("Tieng", 0.5)})
    ascii_results = evaluate_model(ascii_model, OracleProcessor(), {"x": [(coloured(1), "tiếng")]},
                                   show_progress=False, num_workers=0)
    assert ascii_results["protocol"]["charset_source"] == "benchmark"
    assert ascii_results["combined"]["accuracy"] == 1.0


def test_confusion_alignment_and_kinds():
    from training.evaluation.confusions import CharacterConfusions, align, classify_confusion, format_confusions

    assert align("hllo", "hello") == [("h", "h"), ("e", None), ("l", "l"), ("l", "l"), ("o", "o")]
    assert [pair for pair in align("helloo", "hello") if pair[0] != pair[1]] == [(None, "o")]
    assert classify_confusion("ả", "ã") == "tone mark"  # hook above vs tilde, same base letter
    assert classify_confusion("ơ", "o") == "other diacritic"  # the horn
    assert classify_confusion("đ", "d") == "other diacritic"  # the stroke (đ has no decomposition)
    assert classify_confusion("ộ", "o") == "tone mark and other diacritic"
    assert classify_confusion("ẫ", "ã") == "other diacritic"  # circumflex lost, tilde kept
    assert classify_confusion("b", "h") == "base letter"
    assert classify_confusion("Ă", "ă") == "case"
    confusions = CharacterConfusions()
    for prediction, label in (("toi", "tôi"), ("toi", "tôi"), ("ba", "bà"), ("xa", "xa"), ("cas", "ca")):
        confusions.update(prediction, label)
    summary = confusions.summary(top=2)
    assert summary["num_errors"] == 4 and summary["num_wrong_words"] == 4 and summary["num_words"] == 5
    assert summary["kinds"] == {"tone mark": 1, "other diacritic": 2, "extra": 1}
    assert summary["pairs"][0] == {"label": "ô", "prediction": "o", "count": 2, "kind": "other diacritic"}
    text = format_confusions(summary)
    assert "4 character errors in 4 wrong words (of 5)" in text and "other diacritic 2 (50.0%)" in text


def test_cli_on_a_vietnamese_model(saved_model, caption_tokenizer, tmp_path, capsys):
    import datasets

    model = make_model(caption_tokenizer, charset=VIETNAMESE_CASED, max_label_length=8)
    model_dir = tmp_path / "vi-model"
    model.save_pretrained(model_dir)
    CLIP4STRProcessor.from_config(model.config).save_pretrained(model_dir)
    parquet = tmp_path / "vi.parquet"
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    words = ["Tiếng", "Việt", "đường"]
    rows = {"image": [{"bytes": encoded_png(word), "path": None} for word in words], "text": words}
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(parquet))
    json_path, markdown_path = tmp_path / "results.json", tmp_path / "results.md"
    main(["--model", str(model_dir), "--data", f"vi={parquet}", "--data-source", "hub", "--split", "train",
          "--device", "cpu", "--no-progress", "--num-workers", "0", "--confusions", "3", "--output-json",
          str(json_path), "--output-markdown", str(markdown_path), "--cache-dir", str(tmp_path / "cache")])
    results = json.loads(json_path.read_text(encoding="utf-8"))
    assert results["protocol"]["charset"] == VIETNAMESE_CASED and results["protocol"]["charset_source"] == "model"
    assert results["combined"]["mean_label_length"] == pytest.approx(sum(map(len, words)) / 3)
    assert len(results["confusions"]["pairs"]) <= 3 and results["confusions"]["num_words"] == 3
    printed = capsys.readouterr().out
    assert "Protocol: the model's own charset" in printed and "Character confusions" in printed
    assert "## Character confusions" in markdown_path.read_text(encoding="utf-8")
