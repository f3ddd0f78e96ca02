"""Model cards state the model as it is: they parse back with `ModelCard.load`, with the right metadata."""

from __future__ import annotations

import hashlib
import re
from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard
from transformers import TrainingArguments

from conftest import make_model, tiny_config
from modeling_clip4str.convert_clip4str_original_to_hf import infer_setting_origins
from training.evaluation.model_card import converted_model_card, write_model_card

EVAL_RESULTS = {
    "IIIT5k": {"word_accuracy": 0.91234, "one_minus_ned": 0.97, "num_samples": 3000},
    "SVT": {"eval_word_accuracy": 0.8, "eval_one_minus_ned": 0.9, "eval_loss": 1.5},
}


def tiny_model(**overrides):
    return SimpleNamespace(config=tiny_config(input_size=[32, 128], **overrides))


def arguments(tmp_path, **overrides):
    return TrainingArguments(output_dir=str(tmp_path / "my-run"), report_to="none", max_steps=20, **overrides)


def metrics_of(card) -> dict[tuple[str, str], float]:
    return {(entry.dataset_name, entry.metric_type): entry.metric_value for entry in card.data.eval_results}


def test_the_training_card_parses_back_with_its_facts(tmp_path):
    args = arguments(tmp_path, hub_model_id="org/clip4str-words")
    path = write_model_card(
        args.output_dir, tiny_model(), args,
        train_sources=["org/synth-words", str(tmp_path / "lmdb" / "real")], eval_results=EVAL_RESULTS,
        base_model="openai/clip-vit-base-patch16", language="en", eval_protocol="36-char", trained_steps=20,
    )
    card = ModelCard.load(path)

    assert card.data.base_model == "openai/clip-vit-base-patch16"
    assert card.data.model_name == "org/clip4str-words"
    assert card.data.datasets == ["org/synth-words"]  # the local source is in the text only
    assert card.data.language == "en"
    assert card.data.pipeline_tag == "image-to-text"
    assert metrics_of(card) == {
        ("IIIT5k (3,000)", "accuracy"): 91.23,
        ("IIIT5k (3,000)", "1-ned"): 97.0,
        ("SVT", "accuracy"): 80.0,
        ("SVT", "1-ned"): 90.0,
    }
    assert {entry.metric_name for entry in card.data.eval_results} == {"Word accuracy (36-char)", "1 - NED (36-char)"}
    assert {entry.task_type for entry in card.data.eval_results} == {"image-to-text"}

    text = card.text
    assert "32x128 (height x width)" in text
    assert "94 characters: 10 digits, 52 Latin letters, 32 punctuation and symbols" in text
    assert tiny_config().charset in text  # listed in full
    assert "up to 12 characters" in text
    assert "`real` (local data)" in text and str(tmp_path) not in text
    assert "| IIIT5k (3,000) | 91.23 | 97.00 |" in text
    assert '"trained_steps": 20' in text


def test_the_name_falls_back_to_the_output_folder_and_local_bases_stay_out_of_the_metadata(tmp_path):
    args = arguments(tmp_path)
    base = tmp_path / "clip-local"
    base.mkdir()
    path = write_model_card(args.output_dir, tiny_model(), args, train_sources=[], eval_results=None,
                            base_model=str(base))
    card = ModelCard.load(path)
    assert card.data.base_model is None
    assert card.data.eval_results is None
    assert "# my-run" in card.text
    assert "`clip-local` (a local checkpoint)" in card.text
    assert "Not evaluated in this run." in card.text


def test_a_large_charset_is_summarised():
    from training.evaluation.model_card import training_model_card

    charset = "".join(chr(0x4E00 + i) for i in range(500)) + "0123456789"
    card = training_model_card(
        tiny_model(charset=charset), SimpleNamespace(output_dir="/tmp/zh-run", hub_model_id=None, max_steps=1),
        train_sources=[], language="zh",
    )
    assert "510 characters: 500 CJK characters, 10 digits (scripts: CJK)" in card.text
    assert charset[:200] in card.text and charset[200:210] not in card.text
    assert "the first 200 of 510" in card.text


def test_scores_must_be_fractions(tmp_path):
    args = arguments(tmp_path)
    with pytest.raises(ValueError, match="not a fraction"):
        write_model_card(args.output_dir, tiny_model(), args, train_sources=[],
                         eval_results={"IIIT5k": {"word_accuracy": 91.2}})


def test_the_trainer_writes_the_card_of_what_it_evaluated(tmp_path, caption_tokenizer):
    from training.run_str import STRTrainingArguments
    from training.train.trainer import CLIP4STRTrainer

    args = STRTrainingArguments(output_dir=str(tmp_path / "my-run"), hub_model_id="org/clip4str-words", report_to=[],
                                use_cpu=True)
    trainer = CLIP4STRTrainer(model=make_model(caption_tokenizer), args=args, train_sources=["org/words"],
                              base_model="openai/clip-vit-base-patch16", eval_protocol="36-char", language="vi")
    trainer.eval_results = {
        "words (validation)": {"eval_word_accuracy": 0.5, "eval_loss": 2.0, "eval_num_samples": 16},
    }
    trainer.create_model_card(model_name="clip4str-words")  # as push_to_hub calls it: the Hub id's last part
    card = ModelCard.load(tmp_path / "my-run" / "README.md")
    assert metrics_of(card) == {("words (validation) (16)", "accuracy"): 50.0}
    assert card.data.model_name == "org/clip4str-words"
    # The language given to the Trainer reaches the card that push_to_hub asks for (which passes no language).
    assert card.data.language in ("vi", ["vi"]) and "- **Language**: vi." in card.text
    assert card.data.base_model == "openai/clip-vit-base-patch16" and card.data.datasets == ["org/words"]
    assert card.data.eval_results[0].metric_name == "Word accuracy (36-char)"
    assert "(protocol: 36-char)" in card.text and "32x32 (height x width)" in card.text


def test_the_converted_card_names_the_source_and_the_assumed_settings(tmp_path):
    source = tmp_path / "clip4str_tiny_0123.pt"
    source.write_bytes(b"not really a checkpoint, but bytes to hash")
    origins = infer_setting_origins(
        {"decoder_num_heads": "dec_num_heads", "charset": "charset_train", "refine_iters": "refine_iters"},
        hyper_parameters={},
        overrides={"charset": None, "refine_iters": 2},
    )
    assert origins == {"decoder_num_heads": "assumed", "charset": "assumed", "refine_iters": "given"}
    card = converted_model_card(
        tiny_config(refine_iters=2), source, setting_origins={**origins, "max_label_length": "weights"},
        clip_tokenizer="openai/clip-vit-base-patch16",
    )
    path = tmp_path / "README.md"
    card.save(path)
    loaded = ModelCard.load(path)

    assert loaded.data.model_name == "clip4str_tiny_0123"  # named after the source file
    assert re.search(r"^# clip4str_tiny_0123$", loaded.text, re.MULTILINE)
    assert loaded.data.library_name == "transformers"
    assert loaded.data.eval_results is None  # nothing measured, nothing claimed
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    assert f"`clip4str_tiny_0123.pt`, SHA-256 `{sha256}`" in loaded.text
    assert "| decoder_num_heads | `2` | assumed (the released models' value) |" in loaded.text
    assert "| refine_iters | `2` | given to the converter |" in loaded.text
    assert "| max_label_length | `12` | the tensor shapes |" in loaded.text
    assert "| charset | 94 characters: 10 digits, 52 Latin letters, 32 punctuation and symbols | assumed" in loaded.text
    assert "32x32 (height x width)" in loaded.text
    assert "convert it again with the matching options" in loaded.text

    with pytest.raises(ValueError, match="Unknown setting origins"):
        converted_model_card(tiny_config(), source, setting_origins={"charset": "guessed"}, sha256="0" * 64)


def test_a_converted_card_with_measured_results_carries_them(tmp_path):
    card = converted_model_card(
        tiny_config(), tmp_path / "model.ckpt", setting_origins={}, sha256="ab" * 32, model_name="org/clip4str-b16",
        eval_results={"CUTE80": {"accuracy": 0.9965, "num_samples": 288}}, eval_protocol="36-char",
        base_model="openai/clip-vit-base-patch16",
    )
    path = tmp_path / "README.md"
    card.save(path)
    loaded = ModelCard.load(path)
    assert loaded.data.base_model == "openai/clip-vit-base-patch16"
    assert metrics_of(loaded) == {("CUTE80 (288)", "accuracy"): 99.65}
    assert loaded.data.eval_results[0].metric_name == "Word accuracy (36-char)"


def test_the_converter_writes_a_card_naming_the_checkpoint_and_where_each_setting_came_from(
    converted_reference, tmp_path
):
    from conftest import CLIP_TOKENIZER, REFERENCE
    from modeling_clip4str.convert_clip4str_original_to_hf import convert

    out, _, _ = converted_reference
    source = REFERENCE / "reference.ckpt"
    card = ModelCard.load(out / "README.md")
    assert f"`reference.ckpt`, SHA-256 `{hashlib.sha256(source.read_bytes()).hexdigest()}`" in card.text
    assert "| decoder_num_heads | `4` | the checkpoint's hyper-parameters |" in card.text
    assert "assumed" not in card.text  # a Lightning checkpoint records every setting

    # A bare state dict records none: what was not given is assumed, the longest word is read from the weights.
    import torch

    bare = tmp_path / "bare.pt"
    torch.save(torch.load(source, weights_only=True)["state_dict"], bare)
    convert(str(bare), str(tmp_path / "bare"), clip_tokenizer=str(CLIP_TOKENIZER), decoder_num_heads=4)
    text = ModelCard.load(tmp_path / "bare" / "README.md").text
    assert "| decoder_num_heads | `4` | given to the converter |" in text
    assert "| max_label_length | `25` | the tensor shapes |" in text
    assert "| refine_iters | `1` | assumed (the released models' value) |" in text
    assert "convert it again with the matching options" in text
