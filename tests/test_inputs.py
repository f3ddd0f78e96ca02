"""Bad and unusual input: image modes and sizes, broken files, labels outside the charset, empty batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_model, make_processor, tiny_config, word_image


@pytest.fixture(scope="module")
def processor(caption_tokenizer):
    return make_processor(tiny_config())


def _sixteen_bit():
    ramp = np.tile(np.linspace(0, 65535, 64), (20, 1)).astype(np.uint16)  # dark left, bright right
    return Image.fromarray(ramp)


@pytest.mark.parametrize(
    "make",
    [
        lambda: word_image("grey", mode="L"),
        lambda: word_image("alpha", mode="RGBA"),
        lambda: word_image("palette", mode="P"),
        lambda: word_image("la", mode="LA"),
        lambda: word_image("bw", mode="1"),
        lambda: word_image("cmyk", mode="CMYK"),
        _sixteen_bit,
        lambda: Image.new("RGB", (1, 1), (10, 20, 30)),
        lambda: Image.new("RGB", (1, 2000), (10, 20, 30)),
        lambda: Image.new("RGB", (2000, 1), (10, 20, 30)),
        lambda: np.zeros((20, 60, 3), dtype=np.uint8),
        lambda: np.zeros((20, 60), dtype=np.uint8),
        lambda: torch.rand(3, 20, 60),
    ],
)
def test_any_image_becomes_pixel_values(processor, make):
    pixel_values = processor(images=make())["pixel_values"]
    assert pixel_values.shape == (1, 3, 32, 32)
    assert torch.isfinite(pixel_values).all()


def test_sixteen_bit_image_is_scaled_not_clipped(processor):
    pixels = processor.image_processor.to_normalized_array(_sixteen_bit())
    # Clipping at 255 would turn almost the whole ramp white; scaling keeps a dark left edge.
    assert pixels[0, :, 0].mean() < pixels[0, :, -1].mean() - 1.0


def test_rgba_drops_alpha_like_the_reference(processor):
    image = Image.new("RGBA", (8, 8), (200, 100, 50, 0))
    ours = processor.image_processor.to_normalized_array(image)
    reference = processor.image_processor.to_normalized_array(image.convert("RGB"))
    assert np.array_equal(ours, reference)


def test_image_processor_flags_work_per_call(processor):
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    from modeling_clip4str import CLIP4STRImageProcessor

    image_processor = processor.image_processor
    image = word_image("flags")  # 96x32
    normalized = image_processor(image)["pixel_values"]
    scaled = image_processor(image, do_normalize=False)["pixel_values"]
    assert 0.0 <= scaled.min() and scaled.max() <= 1.0
    mean, std = torch.tensor(OPENAI_CLIP_MEAN)[:, None, None], torch.tensor(OPENAI_CLIP_STD)[:, None, None]
    assert (normalized - (scaled - mean) / std).abs().max() < 1e-5
    raw = image_processor(image, do_rescale=False, do_normalize=False)["pixel_values"]
    assert (raw.float() / 255 - scaled).abs().max() < 1e-6
    assert image_processor(image, size={"height": 16, "width": 64})["pixel_values"].shape == (1, 3, 16, 64)
    assert image_processor(image, do_resize=False)["pixel_values"].shape == (1, 3, 32, 96)
    assert image_processor.size["height"] == 32  # per-call settings leave the processor as it was
    # Saved configurations name the filter; a name gives the same pixels as the enum.
    named = CLIP4STRImageProcessor.from_dict({**image_processor.to_dict(), "resample": "bicubic"})
    assert torch.equal(named(image)["pixel_values"], normalized)
    assert not torch.equal(image_processor(image, resample="bilinear")["pixel_values"], normalized)
    with pytest.raises(ValueError, match="Unknown resample filter"):
        CLIP4STRImageProcessor(resample="cubic")


def test_truncated_file_raises_error_naming_it(processor, tmp_path):
    good = tmp_path / "good.png"
    word_image("hello").save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match="broken.png"):
        processor(images=str(broken))


def test_non_image_file_raises_error_naming_it(processor, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image")
    with pytest.raises(ValueError, match="notes.txt"):
        processor(images=[str(text)])


def test_paths_are_read(processor, tmp_path):
    path = tmp_path / "word.jpg"
    word_image("word").save(path)
    assert processor(images=[str(path), path])["pixel_values"].shape == (2, 3, 32, 32)


def test_label_outside_charset_raises_clearly(processor):
    from modeling_clip4str import UnknownCharacterError

    with pytest.raises(UnknownCharacterError, match="café"):
        processor(text=["café"])
    filtered = processor(text=["café"], filter_unknown=True)["labels"]
    assert processor.tokenizer.batch_decode(filtered) == ["caf"]


def test_label_too_long_raises(processor):
    with pytest.raises(ValueError, match="at most 12"):
        processor(text=["a" * 13], max_label_length=12)


def test_model_rejects_labels_longer_than_it_reads(caption_tokenizer, processor):
    model = make_model(caption_tokenizer)
    batch = processor(images=[word_image("x")], text=["abcdefghijklmn"])
    with pytest.raises(ValueError, match="at most 12"):
        model(**batch)


def test_empty_batches_raise(processor, caption_tokenizer):
    with pytest.raises(ValueError, match="empty"):
        processor(images=[])
    with pytest.raises(ValueError, match="empty"):
        processor(text=[])
    model = make_model(caption_tokenizer)
    with pytest.raises(ValueError, match="empty"):
        model.generate(torch.zeros(0, 3, 32, 32))


def test_mismatched_images_and_labels_raise(processor):
    with pytest.raises(ValueError, match="2 images but 1 labels"):
        processor(images=[word_image("a"), word_image("b")], text=["a"])


def test_generate_without_caption_tokenizer_says_how_to_fix():
    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    model = CLIP4STRForSceneTextRecognition(tiny_config()).eval()
    with pytest.raises(ValueError, match="set_caption_tokenizer"):
        model.generate(torch.zeros(1, 3, 32, 32))


def test_wrong_pixel_values_shape_raises(caption_tokenizer):
    model = make_model(caption_tokenizer)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model.generate(torch.zeros(3, 32, 32))


def test_rectangular_input_size(tmp_path, caption_tokenizer):
    """A model reading 16x64 word images with a tower built for 32x32 squares (patch 8): its 4x4 position table is
    resized to the 2x8 grid; training, generation and save / load follow the configured size."""
    from modeling_clip4str import CLIP4STRForSceneTextRecognition

    model = make_model(caption_tokenizer, input_size=[16, 64])
    assert model.config.image_input_size == (16, 64)
    processor = make_processor(model.config)
    processor.image_processor.size = {"height": 16, "width": 64}
    batch = processor(images=[word_image("wide"), word_image("words")], text=["wide", "words"])
    assert batch["pixel_values"].shape == (2, 3, 16, 64)
    memory = model.encode_image(batch["pixel_values"])
    assert memory.shape[1] == 1 + 2 * 8  # class token + the 2x8 patches

    model.train()
    loss = model(**batch).loss
    loss.backward()
    grad = model.vision_model.embeddings.position_embedding.weight.grad
    assert torch.isfinite(loss) and grad is not None and grad[1:].abs().sum() > 0  # the table itself learns
    model.eval()

    ids = model.generate(batch["pixel_values"])
    model.save_pretrained(tmp_path / "wide")
    reloaded = CLIP4STRForSceneTextRecognition.from_pretrained(tmp_path / "wide").eval()
    assert reloaded.config.input_size == [16, 64]
    assert torch.equal(reloaded.generate(batch["pixel_values"]), ids)

    with pytest.raises(ValueError, match="16x64"):
        model.generate(torch.zeros(1, 3, 32, 32))


def test_input_size_validation():
    with pytest.raises(ValueError, match="multiples of the patch size"):
        tiny_config(input_size=[12, 64])
    with pytest.raises(ValueError, match="height, width"):
        tiny_config(input_size=[16])
    assert tiny_config(input_size=[32, 32]).input_size is None  # the tower's own square size
    assert tiny_config().image_input_size == (32, 32)


def test_a_photo_reads_upright_by_path_bytes_pil_image_and_url(processor, tmp_path, monkeypatch):
    """A camera JPEG stores its pixels turned and says so in EXIF (orientation 6: turn 90 degrees clockwise to
    view). Every way of handing it over reads the upright word, as transformers' `load_image` does for URLs."""
    import io
    import urllib.request

    from modeling_clip4str import load_image

    upright = word_image("up", size=(64, 24))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote: 24 wide, 64 high
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    stored.save(path, format="JPEG", quality=95, exif=exif)
    data = path.read_bytes()

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Response(data))
    assert load_image(str(path)).size == (64, 24)
    readings = [processor(images=source)["pixel_values"]
                for source in (str(path), data, Image.open(path), "https://example.invalid/photo.jpg")]
    for pixels in readings[1:]:
        assert torch.equal(pixels, readings[0])
    # The same pixels as the upright word itself, up to JPEG's losses.
    assert (readings[0] - processor(images=upright)["pixel_values"]).abs().mean() < 0.1
    opened = Image.open(path)
    processor(images=opened)
    assert opened.size == (24, 64)  # the caller's image is left as it was
