"""Saved models load back identically: with the package, with Auto classes, and without the package (remote code)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import torch
from PIL import Image

from conftest import REFERENCE, REPO


def _images():
    return [Image.open(REFERENCE / "images" / f"{index}.png") for index in range(6)]


def test_auto_classes_load_saved_directory(converted_reference, reference_cases):
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor, AutoTokenizer

    import modeling_clip4str as package

    directory, model, _ = converted_reference
    assert isinstance(AutoConfig.from_pretrained(directory), package.CLIP4STRConfig)
    loaded = AutoModel.from_pretrained(directory)
    assert isinstance(loaded, package.CLIP4STRForSceneTextRecognition)
    assert isinstance(AutoTokenizer.from_pretrained(directory), package.CLIP4STRTokenizer)
    assert isinstance(AutoImageProcessor.from_pretrained(directory), package.CLIP4STRImageProcessor)
    processor = AutoProcessor.from_pretrained(directory)
    assert isinstance(processor, package.CLIP4STRProcessor)
    pixel_values = processor(images=_images())["pixel_values"]
    assert torch.equal(loaded.generate(pixel_values), model.generate(pixel_values))
    expected = reference_cases["by_refine_iters"][1]["logits"]
    logits = loaded.generate(pixel_values, return_dict_in_generate=True).logits
    assert (logits - expected).abs().max() <= 1e-4


def test_save_and_reload_roundtrip(tmp_path, caption_tokenizer):
    from conftest import make_model

    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    model = make_model(caption_tokenizer, seed=3)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "caption_tokenizer").is_dir()
    reloaded = CLIP4STRForSceneTextRecognition.from_pretrained(tmp_path).eval()
    pixel_values = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    first = model.generate(pixel_values, return_dict_in_generate=True)
    second = reloaded.generate(pixel_values, return_dict_in_generate=True)
    assert torch.equal(first.sequences, second.sequences)
    assert torch.equal(first.logits, second.logits)
    for name, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[name]), name
    # The frozen text layers stay frozen after loading.
    frozen = {n for n, p in reloaded.text_model.named_parameters() if not p.requires_grad}
    assert "encoder.layers.0.self_attn.q_proj.weight" in frozen
    assert "encoder.layers.1.self_attn.q_proj.weight" not in frozen


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from PIL import Image
    try:
        import modeling_clip4str
    except ImportError:
        pass
    else:
        raise SystemExit("the package must not be importable here")
    from transformers import AutoModel, AutoProcessor, pipeline

    directory, old_layout, images = sys.argv[1], sys.argv[2], sys.argv[3:]
    model = AutoModel.from_pretrained(directory, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(directory, trust_remote_code=True)
    pixel_values = processor(images=[Image.open(path) for path in images])["pixel_values"]
    sequences = model.generate(pixel_values)
    pipe = pipeline("image-to-text", model=directory, trust_remote_code=True)
    old_model = AutoModel.from_pretrained(old_layout, trust_remote_code=True)
    old_processor = AutoProcessor.from_pretrained(old_layout, trust_remote_code=True)
    old_sequences = old_model.generate(old_processor(images=[Image.open(path) for path in images])["pixel_values"])
    print(json.dumps({
        "module": type(model).__module__,
        "sequences": sequences.tolist(),
        "old_layout_sequences": old_sequences.tolist(),
        "texts": processor.batch_decode(sequences),
        "single": pipe(images[0]),
        "many": pipe(images),
    }))
    """
)


def _old_layout_copy(directory, destination):
    """A copy of a saved directory with what versions before 0.2 also wrote: their processor held the caption
    tokenizer too and saved it into the same `caption_tokenizer/` folder, whose tokenizer config then names the
    processor."""
    shutil.copytree(directory, destination)
    path = destination / "caption_tokenizer" / "tokenizer_config.json"
    settings = json.loads(path.read_text())
    settings["processor_class"] = "CLIP4STRProcessor"
    settings.setdefault("auto_map", {})["AutoProcessor"] = "processing_clip4str.CLIP4STRProcessor"
    path.write_text(json.dumps(settings, indent=2))
    return destination


def test_old_layout_loads_with_auto_classes(converted_reference, tmp_path):
    from transformers import AutoModel, AutoProcessor

    import modeling_clip4str  # noqa: F401  (registers the Auto classes)

    directory, model, processor = converted_reference
    old_layout = _old_layout_copy(directory, tmp_path / "old-layout")
    loaded = AutoModel.from_pretrained(old_layout)
    loaded_processor = AutoProcessor.from_pretrained(old_layout)
    assert loaded.caption_tokenizer is not None
    assert set(loaded_processor.get_attributes()) == {"image_processor", "tokenizer"}
    pixel_values = loaded_processor(images=_images())["pixel_values"]
    assert torch.equal(pixel_values, processor(images=_images())["pixel_values"])
    assert torch.equal(loaded.generate(pixel_values), model.generate(pixel_values))


def test_loads_without_the_package_in_a_subprocess(converted_reference, tmp_path):
    directory, model, processor = converted_reference
    old_layout = _old_layout_copy(directory, tmp_path / "old-layout")
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_SCRIPT)
    images = [str(REFERENCE / "images" / f"{index}.png") for index in range(6)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="", HF_MODULES_CACHE=str(tmp_path / "modules"))
    # Run from a folder where the package is not importable (an editable install would still find it, so it is
    # hidden by blocking its name in sys.modules before anything imports it).
    code = "import sys; sys.modules['modeling_clip4str'] = None; sys.argv = sys.argv[1:]; " \
           "exec(open(sys.argv[0]).read())"
    result = subprocess.run(
        [sys.executable, "-c", code, str(script), str(directory), str(old_layout), *images],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["module"].startswith("transformers_modules")
    pixel_values = processor(images=_images())["pixel_values"]
    expected = model.generate(pixel_values)
    assert payload["sequences"] == payload["old_layout_sequences"] == expected.tolist()
    texts = processor.batch_decode(expected)
    assert payload["texts"] == texts
    single = model.generate(pixel_values[:1])
    assert payload["single"] == [{"generated_text": processor.batch_decode(single)[0]}]
    assert len(payload["many"]) == 6
    assert all(len(entry) == 1 and set(entry[0]) == {"generated_text"} for entry in payload["many"])


def test_pipeline_with_package_needs_no_remote_code(converted_reference):
    from transformers import pipeline

    import modeling_clip4str

    directory, model, processor = converted_reference
    images = _images()
    for pipe in (
        pipeline(modeling_clip4str.PIPELINE_TASK, model=str(directory)),
        pipeline("image-to-text", model=str(directory), pipeline_class=modeling_clip4str.CLIP4STRPipeline),
    ):
        one = pipe(images[1])
        expected = processor.batch_decode(model.generate(processor(images=images[1])["pixel_values"]))
        assert one == [{"generated_text": expected[0]}]
        many = pipe(images)
        assert [len(entry) for entry in many] == [1] * 6
        scored = pipe(images[2], return_confidence=True)
        assert 0.0 <= scored[0]["score"] <= 1.0


def test_config_json_names_the_pipeline(converted_reference):
    directory, _, _ = converted_reference
    config = json.loads((directory / "config.json").read_text())
    assert config["custom_pipelines"]["image-to-text"]["impl"] == "pipeline_clip4str.CLIP4STRPipeline"
    assert (directory / "pipeline_clip4str.py").is_file()
    for name in ("configuration_clip4str.py", "modeling_clip4str.py", "decoder_clip4str.py"):
        assert (directory / name).is_file()
    # The copied files import each other only relatively (they are loaded flat, as remote code).
    for path in directory.glob("*.py"):
        for line in path.read_text().splitlines():
            assert "import modeling_clip4str" not in line and "from modeling_clip4str" not in line, path


def test_trainer_token_alignment_leaves_the_text_tower_alone(tmp_path, caption_tokenizer):
    """`Trainer` aligns the model's special ids with the processor's tokenizer; the character ids must already
    agree, and the CLIP text tower's BPE ids must not be overwritten with them."""
    from transformers.trainer_utils import align_special_tokens

    from conftest import make_model, make_processor

    model = make_model(caption_tokenizer)
    text_ids = (model.config.text_config.bos_token_id, model.config.text_config.eos_token_id)
    processor = make_processor(model.config)
    align_special_tokens(model, processor)
    assert (model.config.text_config.bos_token_id, model.config.text_config.eos_token_id) == text_ids
    tokenizer = processor.tokenizer
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == model.config.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id == model.config.pad_token_id
    model.save_pretrained(tmp_path / "saved")
    reloaded = type(model).from_pretrained(tmp_path / "saved")
    assert reloaded.generation_config.bos_token_id == model.config.bos_token_id
