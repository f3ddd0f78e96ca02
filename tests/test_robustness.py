"""Never silently wrong: each input or tokenizer the model would misread fails loudly (or is handled as
the docstrings state), and the inputs that used to crash get a clear answer. One test per case."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import make_model, make_processor, not_clip_tokenizer, tiny_clip_directory, tiny_config, word_image

WORDS = ["ab", "cde", "fghi"]


@pytest.fixture(scope="module")
def model(caption_tokenizer):
    return make_model(caption_tokenizer, seed=21)


@pytest.fixture(scope="module")
def processor():
    return make_processor(tiny_config())


@pytest.fixture(scope="module")
def pixel_values(processor):
    return processor(images=[word_image(word) for word in WORDS])["pixel_values"]


# --- caption tokenizers that are not CLIP's -----------------------------------------------------------------------
def test_caption_tokenizer_that_is_not_clips_is_refused(tmp_path, caption_tokenizer):
    tokenizer, folder = not_clip_tokenizer(tmp_path)
    assert len(tokenizer) == 2  # transformers' stand-in: it would read "Cello" as "Chcck"
    model = make_model(caption_tokenizer)
    with pytest.raises(ValueError, match=rf"{folder}.*2 tokens.*49408"):
        model.set_caption_tokenizer(tokenizer)
    with pytest.raises(ValueError, match="2 tokens"):
        type(model)(tiny_config(), caption_tokenizer=tokenizer)
    assert model.caption_tokenizer is caption_tokenizer  # the refused one did not replace it


def test_caption_tokenizer_with_other_start_or_end_ids_is_refused(caption_tokenizer):
    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    text_config = dict(tiny_config().text_config.to_dict(), bos_token_id=7)
    model = CLIP4STRForSceneTextRecognition(tiny_config(text_config=text_config))
    with pytest.raises(ValueError, match=r"bos_token_id`=49406.*expects 7"):
        model.set_caption_tokenizer(caption_tokenizer)
    # Text configs from before these ids were used carry eos_token_id=2 and name no ids: the tokenizer is accepted.
    legacy = dict(tiny_config().text_config.to_dict(), bos_token_id=0, eos_token_id=2)
    CLIP4STRForSceneTextRecognition(tiny_config(text_config=legacy), caption_tokenizer=caption_tokenizer)


def test_from_clip_without_tokenizer_files_is_refused(tmp_path, caption_tokenizer):
    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    directory, _ = tiny_clip_directory(tmp_path / "clip")
    for name in ("vocab.json", "merges.txt"):
        (directory / name).unlink()
    with pytest.raises(ValueError, match=rf"{directory}.*2 tokens"):
        CLIP4STRForSceneTextRecognition.from_clip(str(directory), max_label_length=8, decoder_num_heads=4)
    model = CLIP4STRForSceneTextRecognition.from_clip(
        str(directory), caption_tokenizer=caption_tokenizer, max_label_length=8, decoder_num_heads=4
    )
    assert model.tokenize_captions(["hello"])[0, :3].tolist() == [49406, 3306, 49407]


def test_saved_model_with_a_broken_caption_tokenizer_is_refused_on_load(tmp_path, caption_tokenizer):
    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    make_model(caption_tokenizer).save_pretrained(tmp_path / "saved")
    folder = tmp_path / "saved" / "caption_tokenizer"
    for path in folder.iterdir():
        if path.name not in ("tokenizer_config.json", "special_tokens_map.json"):
            path.unlink()
    with pytest.raises(ValueError, match="caption_tokenizer.*tokens, but the text tower embeds 49408"):
        CLIP4STRForSceneTextRecognition.from_pretrained(tmp_path / "saved")


# --- generate's inputs ----------------------------------------------------------------------------------------------
def test_generate_refuses_integer_pixel_values(model, pixel_values):
    raw = (pixel_values.clamp(0, 1) * 255).to(torch.uint8)
    for wrong in (raw, raw.long()):
        with pytest.raises(TypeError, match=r"floating point.*processor\(images="):
            model.generate(wrong)
    with pytest.raises(TypeError, match="floating point"):
        model(raw)


def test_generate_refuses_nan_or_infinite_pixels_naming_the_images(model, pixel_values):
    broken = pixel_values.clone()
    broken[0, 1, 2, 3] = float("nan")
    broken[2, :, 0, :2] = float("inf")
    with pytest.raises(ValueError, match=r"holds 7 NaN or infinite value\(s\), in image\(s\) \[0, 2\]"):
        model.generate(broken)


def test_generate_accepts_only_bools_for_decode_ar(model, pixel_values):
    for wrong in ("no", 0, 1):
        with pytest.raises(ValueError, match="decode_ar` must be True or False"):
            model.generate(pixel_values, decode_ar=wrong)
    assert model.generate(pixel_values, decode_ar=False).shape[0] == 3


def test_generate_accepts_only_non_negative_ints_for_refine_iters(model, pixel_values):
    for wrong in (1.7, -1, True, "1"):
        with pytest.raises(ValueError, match="refine_iters` must be an integer >= 0"):
            model.generate(pixel_values, refine_iters=wrong)
    assert torch.equal(model.generate(pixel_values, refine_iters=2), model.generate(pixel_values, refine_iters=2))


def test_processor_refuses_float_images_outside_the_unit_range(processor):
    normalised = processor(images=word_image("word"))["pixel_values"][0]  # what the model reads, not an image
    with pytest.raises(ValueError, match=r"values in \[0, 1\].*already normalised"):
        processor(images=normalised)
    with pytest.raises(ValueError, match="already normalised"):
        processor(images=np.full((8, 24, 3), -0.5, dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        processor(images=np.full((8, 24, 3), 200.0, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        processor(images=np.full((8, 24, 3), np.nan, dtype=np.float32))
    # [0, 1] (with float rounding at the edges) is read, as documented.
    edge = np.clip(np.random.default_rng(0).random((8, 24, 3)), 0, 1).astype(np.float32)
    edge[0, 0, 0], edge[0, 1, 0] = -1e-4, 1 + 1e-4
    assert processor(images=edge)["pixel_values"].shape == (1, 3, 32, 32)


# --- generic generation arguments -------------------------------------------------------------------------------
def test_max_new_tokens_and_max_length_cut_the_read_text(model, processor, pixel_values):
    full = model.generate(pixel_values, return_dict_in_generate=True)
    full_texts = processor.batch_decode(full.sequences)
    cases = (({"max_new_tokens": 2}, 2), ({"max_length": 3}, 3), ({"max_new_tokens": 4, "max_length": 1}, 1))
    for arguments, limit in cases:
        cut = model.generate(pixel_values, return_dict_in_generate=True, **arguments)
        assert cut.sequences.shape[1] == limit and cut.logits.shape[1] == limit
        assert torch.equal(cut.sequences, full.sequences[:, :limit])
        texts = processor.batch_decode(cut.sequences)
        assert texts == [text[:limit] for text in full_texts]
    with pytest.raises(ValueError, match="positive integer"):
        model.generate(pixel_values, max_new_tokens=0)


def test_output_scores_returns_one_score_tensor_per_position(model, pixel_values):
    output = model.generate(pixel_values, return_dict_in_generate=True, output_scores=True)
    assert len(output.scores) == output.logits.shape[1]
    assert all(torch.equal(score, output.logits[:, step]) for step, score in enumerate(output.scores))
    assert model.generate(pixel_values, return_dict_in_generate=True, output_logits=True).scores is not None
    assert model.generate(pixel_values, return_dict_in_generate=True).scores is None
    with pytest.raises(ValueError, match="return_dict_in_generate=True"):
        model.generate(pixel_values, output_scores=True)


def test_sampling_beams_and_other_token_choices_are_refused_by_name(model, pixel_values):
    from transformers import GenerationConfig

    for arguments, named in (
        ({"do_sample": True}, "do_sample=True"),
        ({"num_beams": 2}, "num_beams=2"),
        ({"temperature": 0.7}, "temperature=0.7"),
        ({"top_k": 5, "repetition_penalty": 1.3}, "repetition_penalty=1.3"),
        ({"generation_config": GenerationConfig(do_sample=True, top_p=0.9)}, "top_p=0.9"),
        ({"eos_token_id": 5}, "eos_token_id=5"),
        ({"output_attentions": True}, "output_attentions=True"),
    ):
        with pytest.raises(ValueError, match=named):
            model.generate(pixel_values, **arguments)
    with pytest.raises(TypeError, match="not_an_argument"):
        model.generate(pixel_values, not_an_argument=1)


def test_greedy_generation_config_is_honoured(model, pixel_values):
    from transformers import GenerationConfig

    expected = model.generate(pixel_values)
    greedy = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=2, eos_token_id=0)
    assert torch.equal(model.generate(pixel_values, generation_config=greedy), expected[:, :2])
    neutral = dict(do_sample=False, num_beams=1, temperature=1.0, use_cache=True, synced_gpus=False, top_k=50)
    assert torch.equal(model.generate(pixel_values, **neutral), expected)
    # transformers' defaults in a generation config (max_length=20 among them) are not taken as requests.
    defaults = GenerationConfig(**GenerationConfig._get_default_generation_params())
    assert torch.equal(model.generate(pixel_values, generation_config=defaults), expected)


def test_seq2seq_trainer_generation_settings_are_honoured_or_refused(tmp_path, caption_tokenizer):
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    model = make_model(caption_tokenizer, seed=22)
    processor = make_processor(model.config)
    batch = processor(images=[word_image(word) for word in WORDS], text=WORDS)
    dataset = [{"pixel_values": image, "labels": label} for image, label in zip(batch["pixel_values"], batch["labels"])]

    def collate(samples):
        return {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}

    def trainer(**generation):
        args = Seq2SeqTrainingArguments(
            output_dir=str(tmp_path), predict_with_generate=True, per_device_eval_batch_size=3, use_cpu=True,
            report_to=[], **generation,
        )
        return Seq2SeqTrainer(model=model, args=args, data_collator=collate, processing_class=processor.tokenizer)

    full = processor.batch_decode(model.generate(batch["pixel_values"]))
    predictions = trainer(generation_max_length=2).predict(dataset).predictions
    assert processor.batch_decode(torch.as_tensor(predictions)) == [text[:2] for text in full]
    with pytest.raises(ValueError, match="num_beams=2"):
        trainer(generation_num_beams=2).predict(dataset)


# --- crashes that now have an answer ------------------------------------------------------------------------------
def test_pipeline_given_an_empty_list_returns_an_empty_list(tmp_path, caption_tokenizer):
    from modeling_clip4str import CLIP4STRPipeline

    model = make_model(caption_tokenizer)
    pipe = CLIP4STRPipeline(model=model, processor=make_processor(model.config))
    assert pipe([]) == []
    assert pipe([], batch_size=2) == []
    with pytest.raises(TypeError, match="not_an_argument"):
        pipe([], not_an_argument=1)
    assert len(pipe([word_image("ab")])) == 1


def test_processor_reads_bfloat16_tensor_images(processor):
    image = torch.rand(3, 20, 60)
    as_bfloat16 = processor(images=image.to(torch.bfloat16))["pixel_values"]
    as_float = processor(images=image.to(torch.bfloat16).float())["pixel_values"]
    assert torch.equal(as_bfloat16, as_float)


def test_forward_on_a_batch_of_only_empty_labels_explains(model, processor, pixel_values):
    labels = processor(text=["", "", ""])["labels"]
    with pytest.raises(ValueError, match="Every label of this batch is empty"):
        model(pixel_values, labels=labels)


# --- behaviour the common model tests look for ------------------------------------------------------------------------
def test_from_pretrained_with_output_loading_info(tmp_path, caption_tokenizer):
    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    make_model(caption_tokenizer).save_pretrained(tmp_path)
    model, info = CLIP4STRForSceneTextRecognition.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(model, CLIP4STRForSceneTextRecognition) and model.caption_tokenizer is not None
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"]


def test_hidden_states_and_attentions_are_returned(caption_tokenizer, pixel_values):
    model = make_model(caption_tokenizer, seed=23)
    assert model.vision_model.config._attn_implementation == "sdpa"  # the towers switch to eager for the call
    config = model.config
    patches = (32 // 8) ** 2
    for labels in (None, make_processor(config)(text=WORDS)["labels"]):
        output = model(pixel_values, labels=labels, output_attentions=True, output_hidden_states=True)
        positions = output.logits.shape[1]
        assert len(output.hidden_states) == config.vision_config.num_hidden_layers + 1
        assert output.hidden_states[0].shape == (3, 1 + patches, 64)
        assert [weights.shape for weights in output.attentions] == [(3, 2, 1 + patches, 1 + patches)] * 2
        assert output.text_hidden_states[-1].shape == (3, config.context_length, 64)
        assert output.text_attentions[0].shape == (3, 2, config.context_length, config.context_length)
        assert output.visual_decoder_attentions[0].shape == (3, 2, positions, 1 + patches)
        assert output.cross_decoder_attentions[0].shape == (3, 2, positions, 1 + patches + config.context_length)
        for weights in output.visual_decoder_attentions + output.cross_decoder_attentions:
            assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-5)
    assert model.vision_model.config._attn_implementation == "sdpa"
    # The weights are those the logits were computed with: asking for them does not change the reading.
    plain = model(pixel_values)
    assert (model(pixel_values, output_attentions=True).logits - plain.logits).abs().max() < 1e-5


def test_attention_maps_give_a_heat_map_per_character(caption_tokenizer, pixel_values):
    model = make_model(caption_tokenizer, seed=24, input_size=[16, 64])
    images = torch.nn.functional.interpolate(pixel_values, size=(16, 64))
    output = model(images, output_attentions=True)
    for attentions in (output.visual_decoder_attentions, output.cross_decoder_attentions):
        maps = model.attention_maps(attentions)
        assert maps.shape == (3, output.logits.shape[1], 2, 8)  # 16x64 pixels, 8x8 patches
        assert torch.allclose(maps.sum((-1, -2)), torch.ones(()), atol=1e-5)
        assert (maps >= 0).all()
    # A map is the head-averaged attention on the patches, rescaled: patch order is row-major over the grid.
    weights = output.visual_decoder_attentions[-1].mean(1)[..., 1:]
    expected = weights / weights.sum(-1, keepdim=True)
    assert torch.allclose(model.attention_maps(output.visual_decoder_attentions).flatten(-2), expected, atol=1e-6)


def test_eval_loss_is_the_same_at_every_call(model, processor, pixel_values):
    labels = processor(text=WORDS)["labels"]
    with torch.no_grad():
        losses = {model(pixel_values, labels=labels).loss.item() for _ in range(3)}
    assert len(losses) == 1


def test_fresh_and_weightless_from_pretrained_models_initialise_alike():
    """`cls(config)` and `from_pretrained(None, config=..., state_dict={})` give every tensor the same scheme."""
    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    config = tiny_config()
    torch.manual_seed(0)
    fresh = CLIP4STRForSceneTextRecognition(config).state_dict()
    loaded = CLIP4STRForSceneTextRecognition.from_pretrained(None, config=config, state_dict={}).state_dict()
    assert fresh.keys() == loaded.keys()
    for name, value in fresh.items():
        other = loaded[name]
        if value.is_floating_point() and value.numel() > 1:
            ratio = other.float().std() / value.float().std().clamp_min(1e-12)
            assert (value.std() == 0 and other.std() == 0) or 0.7 < ratio < 1.4, (name, value.std(), other.std())
        else:
            assert torch.equal(value, other), name


def test_input_embeddings_are_the_patch_embedding(caption_tokenizer):
    model = make_model(caption_tokenizer)
    assert model.get_input_embeddings() is model.vision_model.embeddings.patch_embedding
    replacement = torch.nn.Conv2d(3, 64, kernel_size=8, stride=8, bias=False)
    model.set_input_embeddings(replacement)
    assert model.get_input_embeddings() is replacement


def test_derived_token_ids_are_read_only(tmp_path):
    from modeling_clip4str import CLIP4STRConfig

    config = tiny_config(charset="abc")
    config.pad_token_id = 5  # the derived value: accepted, nothing changes
    config.bos_token_id, config.eos_token_id = 4, 0
    for name, wrong in (("pad_token_id", 96), ("bos_token_id", 1), ("eos_token_id", 3)):
        with pytest.raises(ValueError, match=rf"derives `{name}`.*3-character charset.*Change `charset`"):
            setattr(config, name, wrong)
    # A config.json that names the ids loads when they are the derived ones, and fails clearly otherwise.
    config.save_pretrained(tmp_path)
    settings = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(settings, pad_token_id=5, bos_token_id=4)))
    assert CLIP4STRConfig.from_pretrained(tmp_path).pad_token_id == 5
    (tmp_path / "config.json").write_text(json.dumps(dict(settings, pad_token_id=96)))
    with pytest.raises(ValueError, match="derives `pad_token_id`"):
        CLIP4STRConfig.from_pretrained(tmp_path)


def test_offloaded_decoders_read_like_the_model(tmp_path, caption_tokenizer, pixel_values):
    """Decoders placed on "disk" by a device map have their weights loaded for every call (accelerate hooks
    `forward`), so the reading must go through the decoders' `forward` only."""
    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    model = make_model(caption_tokenizer, seed=25)
    model.save_pretrained(tmp_path / "saved")
    expected = model.generate(pixel_values, return_dict_in_generate=True)
    device_map = {name: "cpu" for name in ("vision_model", "visual_projection", "text_model", "text_projection")}
    device_map.update(visual_decoder="disk", cross_decoder="disk")
    offloaded = CLIP4STRForSceneTextRecognition.from_pretrained(
        tmp_path / "saved", device_map=device_map, offload_folder=str(tmp_path / "offload")
    )
    assert offloaded.visual_decoder.pos_queries.device.type == "meta"  # really offloaded
    for refine_iters, decode_ar in ((1, True), (0, True), (2, False)):
        output = offloaded.generate(pixel_values, refine_iters=refine_iters, decode_ar=decode_ar,
                                    return_dict_in_generate=True)
        reference = model.generate(pixel_values, refine_iters=refine_iters, decode_ar=decode_ar,
                                   return_dict_in_generate=True)
        assert torch.equal(output.sequences, reference.sequences)
        assert (output.logits - reference.logits).abs().max() < 1e-5
    assert torch.equal(offloaded.generate(pixel_values), expected.sequences)
    shutil.rmtree(tmp_path / "offload", ignore_errors=True)


def test_attentions_asked_from_several_threads_leave_the_towers_as_they_were(caption_tokenizer, pixel_values):
    """The towers switch to eager attention for a call that returns attentions; calls from several threads must
    neither lose the weights nor leave the towers switched."""
    import threading

    model = make_model(caption_tokenizer, seed=26)
    with torch.no_grad():
        expected = model(pixel_values).logits
    errors = []

    def read(with_attentions: bool) -> None:
        try:
            for _ in range(3):
                with torch.no_grad():
                    output = model(pixel_values, output_attentions=with_attentions)
                assert (output.logits - expected).abs().max() < 1e-5
                assert (output.attentions is not None and len(output.attentions) == 2) == with_attentions
        except Exception as error:  # reported to the main thread, which asserts
            errors.append(error)

    threads = [threading.Thread(target=read, args=(index % 2 == 0,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert model.vision_model.config._attn_implementation == model.text_model.config._attn_implementation == "sdpa"
