"""A PNG grid of word crops captioned with the model's reading, its confidence and a right/wrong mark (PIL only)."""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from modeling_clip4str import CHARSET_36
from modeling_clip4str.labels_clip4str import adapt_to_charset

GREEN = (22, 128, 44)
RED = (200, 30, 30)
GREY = (90, 90, 90)


def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans from matplotlib's fonts when available, else PIL's built-in font."""
    try:
        import matplotlib

        path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
        return ImageFont.truetype(path, size)
    except (ImportError, OSError):
        return ImageFont.load_default()


def _as_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    from modeling_clip4str import to_rgb_image  # arrays, tensors, paths, bytes

    return to_rgb_image(image)


def _same_reading(prediction: str, label: str, case_sensitive: bool, charset: str | None) -> bool:
    if case_sensitive:
        return prediction == label
    if charset is None:
        return adapt_to_charset(prediction, CHARSET_36) == adapt_to_charset(label, CHARSET_36)
    prediction, label = (unicodedata.normalize("NFC", text) for text in (prediction, label))
    return adapt_to_charset(prediction, charset) == adapt_to_charset(label, charset)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def save_prediction_grid(
    images: Sequence,
    labels: Sequence[str] | None,
    predictions: Sequence[str],
    confidences: Sequence[float] | None,
    path: str | os.PathLike,
    columns: int = 4,
    cell_width: int = 192,
    image_height: int = 48,
    title: str | None = None,
    case_sensitive: bool = False,
    charset: str | None = None,
) -> Image.Image:
    """Write a grid of `images`, each captioned with its prediction and confidence, to the PNG `path`.

    A correct reading (prediction equals the label under the 36-character protocol, or adapted to `charset` (e.g. a
    Vietnamese model's own) in Unicode NFC, or exactly with `case_sensitive`) gets a green caption and a check mark;
    a wrong one is red with a cross and the true label below. Without `labels` captions are neutral grey. Each cell
    is `cell_width` wide; the crop is scaled to `image_height` (keeping its aspect ratio, at most `cell_width` wide).
    Returns the grid image.
    """
    count = len(images)
    if count == 0:
        raise ValueError("No images to draw.")
    if len(predictions) != count or (labels is not None and len(labels) != count):
        raise ValueError("images, labels and predictions must have the same length.")
    if confidences is not None and len(confidences) != count:
        raise ValueError("confidences must have one value per image.")
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    pad = 6
    font_size = max(11, image_height // 3)
    caption_font, small_font = _font(font_size), _font(max(9, font_size - 3))
    caption_height = 2 * (font_size + 4) + 2
    cell_height = pad + image_height + 4 + caption_height + pad
    title_height = (font_size + 12) if title else 0
    grid = Image.new("RGB", (columns * cell_width, title_height + rows * cell_height), "white")
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((pad, 4), _fit(draw, title, caption_font, columns * cell_width - 2 * pad), fill=(0, 0, 0),
                  font=caption_font)

    num_correct = 0
    for index in range(count):
        row, column = divmod(index, columns)
        x0, y0 = column * cell_width, title_height + row * cell_height
        crop = _as_pil(images[index])
        scale = image_height / crop.height
        width = max(1, min(cell_width - 2 * pad, round(crop.width * scale)))
        crop = crop.resize((width, image_height), Image.Resampling.BICUBIC)
        grid.paste(crop, (x0 + (cell_width - width) // 2, y0 + pad))

        prediction = predictions[index]
        if labels is None:
            color, mark, correct = GREY, "", None
        else:
            correct = _same_reading(prediction, labels[index], case_sensitive, charset)
            num_correct += bool(correct)
            color, mark = (GREEN, "✓") if correct else (RED, "✗")
        confidence = f" {100 * float(confidences[index]):.0f}%" if confidences is not None else ""
        text_y = y0 + pad + image_height + 4
        shown = prediction if prediction else "(empty)"
        caption = _fit(draw, f"{mark} {shown}{confidence}".strip(), caption_font, cell_width - 2 * pad)
        draw.text((x0 + pad, text_y), caption, fill=color, font=caption_font)
        if correct is False:
            draw.text((x0 + pad, text_y + font_size + 4),
                      _fit(draw, f"label: {labels[index]}", small_font, cell_width - 2 * pad),
                      fill=GREY, font=small_font)
        # Cell border in the verdict's colour.
        draw.rectangle((x0 + 1, y0 + 1, x0 + cell_width - 2, y0 + cell_height - 2), outline=color if mark else
                       (220, 220, 220), width=1)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    grid.save(path, format="PNG")
    return grid


__all__ = ["save_prediction_grid"]
