"""The ONNX export: the exported reference-tiny model reads as the PyTorch model reads (texts exactly, logits within
1e-4), at every refinement count, batch size and decoding mode; it runs in a process without torch; int8 graphs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REFERENCE, make_model, make_processor

pytest.importorskip("onnx", reason="the ONNX export needs `onnx` (pip install 'clip4str-hf[onnx]')")
pytest.importorskip("onnxruntime", reason="the ONNX export needs `onnxruntime` (pip install 'clip4str-hf[onnx]')")

from clip4str_onnx.export_onnx import main as export_main  # noqa: E402
from clip4str_onnx.onnx_clip4str import (  # noqa: E402
    DESCRIPTION_FILE,
    GRAPH_NAMES,
    CLIP4STROnnxModel,
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # These models are tiny: on a shared machine, a second torch thread waits for cores far longer than it helps.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exported_reference(one_torch_thread, converted_reference, tmp_path_factory):
    """The converted reference exported through the command line, with int8 graphs, checked on its images."""
    directory, model, processor = converted_reference
    out = tmp_path_factory.mktemp("onnx") / "reference-tiny-onnx"
    code = export_main([str(directory), str(out), "--quantize", "int8", "--images", str(REFERENCE / "images")])
    assert code == 0
    return out, model, processor


@pytest.fixture(scope="module")
def onnx_reference(exported_reference):
    return CLIP4STROnnxModel.from_pretrained(exported_reference[0], num_threads=1)


def _assert_reads_alike(onnx_model, model, processor, pixel_values, **options):
    with torch.no_grad():
        expected = model.generate(pixel_values, return_dict_in_generate=True, **options)
    output = onnx_model.generate(pixel_values, return_dict_in_generate=True, **options)
    # Same number of positions: the left-to-right loops stop where PyTorch's stop.
    assert output.logits.shape == tuple(expected.logits.shape)
    assert np.abs(output.logits - expected.logits.numpy()).max() <= 1e-4
    assert np.abs(output.visual_logits - expected.visual_logits.numpy()).max() <= 1e-4
    assert (output.sequences == expected.sequences.numpy()).all()
    assert processor.batch_decode(output) == processor.batch_decode(expected)
    assert np.abs(output.confidences - expected.confidences.numpy()).max() <= 1e-5
    assert (onnx_model.generate(pixel_values, **options) == output.sequences).all()
    return output


@pytest.mark.parametrize("decode_ar", [True, False])
@pytest.mark.parametrize("refine_iters", [0, 1, 2])
def test_exported_reference_reads_as_pytorch(
    exported_reference, onnx_reference, reference_cases, refine_iters, decode_ar
):
    _, model, processor = exported_reference
    pixel_values = reference_cases["pixel_values"]
    options = dict(refine_iters=refine_iters, decode_ar=decode_ar)
    batch = _assert_reads_alike(onnx_reference, model, processor, pixel_values, **options)
    if decode_ar:  # the reference implementation's own numbers
        expected = reference_cases["by_refine_iters"][refine_iters]["logits"].numpy()
        assert batch.logits.shape == expected.shape
        assert np.abs(batch.logits - expected).max() <= 1e-4
    # Batch 1: each word stops the loops on its own, which can change its text (the cross-modal branch runs as many
    # steps as the visual one did for the whole batch); the exported model must follow PyTorch there too.
    for index in range(len(pixel_values)):
        _assert_reads_alike(onnx_reference, model, processor, pixel_values[index : index + 1], **options)


def test_defaults_and_confidences_as_pytorch(exported_reference, onnx_reference, reference_cases):
    _, model, processor = exported_reference
    output = onnx_reference.generate(reference_cases["pixel_values"], return_dict_in_generate=True)
    assert processor.batch_decode(output) == reference_cases["texts_94"]
    decoded = processor.batch_decode(output, return_confidences=True)
    with torch.no_grad():
        expected = processor.batch_decode(
            model.generate(reference_cases["pixel_values"], return_dict_in_generate=True), return_confidences=True
        )
    assert decoded["texts"] == expected["texts"]
    assert np.allclose(decoded["confidences"], expected["confidences"], atol=1e-5)


def test_description_names_every_graph_with_dynamic_batch(exported_reference):
    out = exported_reference[0]
    description = json.loads((out / DESCRIPTION_FILE).read_text())
    assert set(description["graphs"]) == set(GRAPH_NAMES)
    for name, graph in description["graphs"].items():
        assert (out / graph["files"]["fp32"]).is_file() and (out / graph["files"]["int8"]).is_file()
        assert graph["max_abs_difference"]["fp32"] <= 1e-4, name
        first_input = next(iter(graph["inputs"].values()))
        assert any(isinstance(dim, str) for dim in first_input["shape"]), name  # batch (or captions) is symbolic
    checks = description["checks"]["fp32_vs_pytorch"]
    assert checks["num_images"] == 6
    for mode in ("left_to_right", "all_at_once"):
        assert checks[mode]["num_texts_differing"] == 0
        assert checks[mode]["max_abs_logits_difference"] <= 1e-4
    assert (out / "caption_tokenizer" / "tokenizer.json").is_file()
    assert (out / "processor_config.json").is_file() and (out / "vocab.json").is_file()


def test_int8_graphs_load_and_stay_close(exported_reference, onnx_reference, reference_cases):
    out = exported_reference[0]
    int8 = CLIP4STROnnxModel.from_pretrained(out, precision="int8", num_threads=1)
    pixel_values = reference_cases["pixel_values"]
    fp32_logits = onnx_reference.generate(pixel_values, refine_iters=0, decode_ar=False, return_dict_in_generate=True)
    int8_logits = int8.generate(pixel_values, refine_iters=0, decode_ar=False, return_dict_in_generate=True)
    difference = np.abs(int8_logits.logits - fp32_logits.logits).max()
    assert 0 < difference < 0.5  # quantised (not the fp32 graphs), and still close
    recorded = json.loads((out / DESCRIPTION_FILE).read_text())["checks"]["int8_vs_fp32"]
    assert recorded["num_images"] == 6 and 0 <= recorded["left_to_right"]["num_texts_differing"] <= 6
    with pytest.raises(ValueError, match="no 'int4' graphs"):
        CLIP4STROnnxModel.from_pretrained(out, precision="int4")


def test_sessions_do_not_spin_unless_asked(exported_reference, onnx_reference):
    """Six graphs, six thread pools: spinning pools would take the cores from the graph that runs next."""
    import onnxruntime

    key = "session.intra_op.allow_spinning"
    for session in onnx_reference.graphs.sessions.values():
        assert session.get_session_options().get_session_config_entry(key) == "0"
        assert session.get_session_options().intra_op_num_threads == 1
    own = onnxruntime.SessionOptions()
    own.add_session_config_entry(key, "1")
    spinning = CLIP4STROnnxModel.from_pretrained(exported_reference[0], session_options=own)
    assert all(session.get_session_options().get_session_config_entry(key) == "1"
               for session in spinning.graphs.sessions.values())


def test_exported_directory_runs_without_torch(exported_reference, reference_cases, tmp_path):
    """From word image files to texts with the directory's own copy of the runtime: numpy, onnxruntime, tokenizers and
    Pillow, neither torch nor this package."""
    out = exported_reference[0]
    paths = [str(REFERENCE / "images" / f"{index}.png") for index in range(6)]
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(out)!r})
        from onnx_clip4str import CLIP4STROnnxModel, CLIP4STROnnxProcessor

        model = CLIP4STROnnxModel.from_pretrained({str(out)!r})
        processor = CLIP4STROnnxProcessor.from_pretrained({str(out)!r})
        texts = processor.batch_decode(model.generate(processor({paths!r})))
        assert "torch" not in sys.modules, "torch was imported"
        assert "modeling_clip4str" not in sys.modules, "the package was imported"
        print(json.dumps(texts))
    """)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == reference_cases["texts_94"]


def test_torch_free_processor_prepares_images_as_the_models(exported_reference):
    from clip4str_onnx.onnx_clip4str import CLIP4STROnnxProcessor

    out, _, processor = exported_reference
    images = [Image.open(REFERENCE / "images" / f"{index}.png") for index in range(6)]
    images += [images[0].convert("LA"), images[1].convert("P"), images[2].convert("L")]
    torch_free = CLIP4STROnnxProcessor.from_pretrained(out)
    expected = processor(images=images)["pixel_values"].numpy()
    assert np.abs(torch_free(images) - expected).max() <= 1e-6
    ids = np.array([[3, 4, 0, 5], [processor.tokenizer.bos_token_id, 12, 13, processor.tokenizer.pad_token_id]])
    assert torch_free.batch_decode(ids) == processor.batch_decode(ids)


def test_three_lines_replace_the_pipeline(exported_reference, reference_cases):
    """What the README shows in place of `pipeline("scene-text-recognition")`, with torch at hand."""
    from modeling_clip4str import CLIP4STRProcessor

    out = exported_reference[0]
    images = [Image.open(REFERENCE / "images" / f"{index}.png") for index in range(6)]
    processor = CLIP4STRProcessor.from_pretrained(out)
    model = CLIP4STROnnxModel.from_pretrained(out)
    texts = processor.batch_decode(model.generate(processor(images=images)["pixel_values"]))
    assert texts == reference_cases["texts_94"]


def test_caption_ids_are_the_models(exported_reference, onnx_reference):
    _, model, _ = exported_reference
    texts = ["", "a", "hello", "riverside2024", "0123456789" * 3, "x" * 40, "hello"]
    ids = onnx_reference.captions.caption_ids(texts)
    assert ids.dtype == np.int64
    assert (ids == model.tokenize_captions(texts).numpy()).all()
    assert ids[4, -1] == model.caption_tokenizer.eos_token_id  # cut to the context, the end token kept last
    assert ids[0, 2:].sum() == 0  # padded with 0


def test_wrong_pixel_values_say_what_to_do(onnx_reference):
    with pytest.raises(ValueError, match="32x32"):
        onnx_reference.generate(np.zeros((1, 3, 32, 64), dtype=np.float32))
    with pytest.raises(ValueError, match="empty"):
        onnx_reference.generate(np.zeros((0, 3, 32, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="refine_iters"):
        onnx_reference.generate(np.zeros((1, 3, 32, 32), dtype=np.float32), refine_iters=-1)


def test_not_an_exported_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        CLIP4STROnnxModel.from_pretrained(tmp_path)


def test_two_decoder_layers_and_resized_input(caption_tokenizer, tmp_path):
    """Several decoder layers (the step graph then carries the content stream) and a non-square input (the position
    table is resized inside the image graph)."""
    from clip4str_onnx.export_onnx import export

    model = make_model(caption_tokenizer, seed=3, decoder_num_layers=2, input_size=[16, 32])
    processor = make_processor(model.config)
    export(model, processor, tmp_path / "onnx", log=lambda line: None)
    onnx_model = CLIP4STROnnxModel.from_pretrained(tmp_path / "onnx", num_threads=1)
    images = [Image.open(REFERENCE / "images" / f"{index}.png") for index in range(6)]
    pixel_values = processor(images=images)["pixel_values"]
    for decode_ar in (True, False):
        _assert_reads_alike(onnx_model, model, processor, pixel_values, refine_iters=1, decode_ar=decode_ar)


def test_evaluate_str_reads_an_exported_directory(exported_reference, tmp_path, capsys):
    """`evaluate_str --model OUT_DIR` scores the ONNX Runtime model as it scores the PyTorch one, and
    `--compare-precision` counts the images whose int8 text differs from the fp32 text."""
    import datasets

    from training.evaluate_str import main as evaluate_main
    from training.evaluation.benchmark import evaluate_model
    from training.evaluation.loading import load_model_and_processor
    from training.evaluation.protocol import normalize_for_protocol, protocol_charset

    out, model, processor = exported_reference
    images = [Image.open(REFERENCE / "images" / f"{index}.png").convert("RGB") for index in range(6)]
    with torch.no_grad():
        texts = processor.batch_decode(model.generate(**processor(images=images)))
    # Some right, some wrong; every label scorable under the 36-character protocol.
    labels = [text if index % 2 and normalize_for_protocol(text, protocol_charset()) else "word"
              for index, text in enumerate(texts)]
    samples = list(zip(images, labels))
    options = dict(batch_size=4, num_workers=0, show_progress=False, max_label_length=None)

    onnx_model, onnx_processor = load_model_and_processor(str(out))
    assert isinstance(onnx_model, CLIP4STROnnxModel) and onnx_model.precision == "fp32"
    assert onnx_model.config.benchmark_protocol == model.config.benchmark_protocol == "reference"
    expected = evaluate_model(model, processor, {"words": samples}, **options)["combined"]
    scored = evaluate_model(onnx_model, onnx_processor, {"words": samples}, reference_model=model, **options)
    assert scored["combined"]["num_differing_from_reference"] == 0
    for key in ("num_samples", "accuracy", "one_minus_ned", "mean_confidence"):
        assert scored["combined"][key] == pytest.approx(expected[key], abs=1e-6), key

    int8, _ = load_model_and_processor(str(out), onnx_precision="int8")
    pixel_values = processor(images=images)["pixel_values"]
    int8_texts = processor.batch_decode(int8.generate(pixel_values))
    fp32_texts = processor.batch_decode(onnx_model.generate(pixel_values))
    differing = sum(a != b for a, b in zip(int8_texts, fp32_texts))

    parquet = tmp_path / "words"
    parquet.mkdir()
    records = [{"image": {"bytes": (REFERENCE / "images" / f"{index}.png").read_bytes(), "path": None},
                "text": label} for index, label in enumerate(labels)]
    datasets.Dataset.from_list(records).cast_column("image", datasets.Image()).to_parquet(
        str(parquet / "test-00000-of-00001.parquet"))
    results = evaluate_main([
        "--model", str(out), "--onnx-precision", "int8", "--compare-precision", "fp32", "--data", str(parquet),
        "--data-source", "hub", "--split", "test", "--max-label-length", "0", "--num-workers", "0", "--no-progress",
        "--protocol", "pipeline",  # as `differing` was read: with the saved processor
    ])
    assert results["combined"]["num_samples"] == 6
    assert results["combined"]["num_differing_from_reference"] == differing
    assert results["device"] == "ONNX Runtime int8"
    assert f"int8 texts that differ from fp32 texts: {differing} of 6" in capsys.readouterr().out


def test_onnx_precision_needs_an_exported_directory(converted_reference):
    from training.evaluation.loading import load_model_and_processor

    with pytest.raises(ValueError, match="not a directory exported to ONNX"):
        load_model_and_processor(str(converted_reference[0]), onnx_precision="int8")
