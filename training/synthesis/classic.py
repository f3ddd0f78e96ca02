"""Rendering one word crop: [`render_word`], in the classic style (the demos' look: plain, gradient or near-white
backgrounds, mild distortions) or, with `style="realistic"`, through [`~training.synthesis.realistic`]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .fonts import DEFAULT_CHARSET, available_fonts, font_coverage, load_font, realistic_fonts
from .realistic import _render_realistic
from .scenes import _luminance

LAYOUTS = ("tight", "left", "free")
STYLES = ("classic", "realistic")
"""How images look: "classic" (the demos' recipe: plain or gradient backgrounds, mild distortions) or "realistic"
(textured photo-like scenes, either polarity, outlines, shadows, perspective, curves, JPEG: [`render_word`])."""
COLOR_MODES = ("random", "dark-on-light", "plain")



def _contrasting_colors(rng: np.random.Generator, min_contrast: float, colors: str = "random"):
    """Background and text colours whose luminances differ by at least `min_contrast` (0..1).

    `colors`: "random" (any hues, either polarity), "dark-on-light" (any hues, text darker than the background),
    "plain" (near-black text on a near-white background)."""
    if colors == "plain":
        return (int(rng.integers(225, 256)),) * 3, (int(rng.integers(0, 40)),) * 3
    for _ in range(100):
        background = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if rng.random() < 0.3:  # plenty of plain light / dark backgrounds too
            grey = int(rng.integers(0, 50)) if rng.random() < 0.3 else int(rng.integers(200, 256))
            background = (grey, grey, grey)
        foreground = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if colors == "dark-on-light" and _luminance(foreground) > _luminance(background):
            background, foreground = foreground, background
        if abs(_luminance(background) - _luminance(foreground)) >= min_contrast:
            return background, foreground
    lum = _luminance(background)
    return background, ((0, 0, 0) if lum > 0.5 else (255, 255, 255))


def _background(rng: np.random.Generator, size, color, gradients: bool = True) -> Image.Image:
    width, height = size
    base = np.empty((height, width, 3), dtype=np.float32)
    base[:] = color
    if gradients and rng.random() < 0.4:  # a soft linear gradient
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-6
        ys, xs = np.mgrid[0:height, 0:width]
        ramp = (xs / max(width - 1, 1) - 0.5) * direction[0] + (ys / max(height - 1, 1) - 0.5) * direction[1]
        base += ramp[..., None] * rng.uniform(-40, 40, size=3)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def render_word(
    text: str,
    seed: int | Sequence[int] | None = None,
    *,
    rng: np.random.Generator | None = None,
    fonts: Sequence[str] | None = None,
    font: str | None = None,
    image_height: int = 32,
    image_width: int = 128,
    augment: float = 1.0,
    min_contrast: float = 0.35,
    layout: str = "tight",
    colors: str = "random",
    layout_engine: str | None = None,
    style: str = "classic",
    return_mask: bool = False,
):
    """Render `text` as an RGB word crop of `image_width` x `image_height`.

    The style is drawn from `rng` (or a generator seeded with `seed`): a font among `fonts` (default: every matplotlib
    font that covers the text's characters) or the given `font`, font size, text and background colours (luminance
    difference >= `min_contrast`), an optional gradient, outline or shadow, a small rotation and shear, random
    padding (the word is cropped to its ink, padded and resized to the output size, as real crops are), blur,
    JPEG-like softness and Gaussian noise. `augment` in [0, 1] scales the strength of the geometric and noise
    distortions (0 gives clean, upright renderings). `layout_engine`: Pillow's text layout, "basic" or "raqm" (default:
    Pillow's choice, see [`~training.synthesis.fonts.default_layout_engine`]).

    `style="realistic"` draws a scene instead of a clean rendering: light text on a dark background as often as dark
    on light (with `colors="random"`), vivid or grey colours, a textured photo-like background (gradient, fractal
    noise, blotches, strokes and edges, big glyphs of other text, sometimes the edge of the panel with another scene
    beyond), outlines, drop shadows, colour gradients and translucency in the text, fragments of neighbouring lines
    and words at the crop's edges, curved text (arc or wave), rotation, shear and perspective, crops that sometimes
    cut into the ink, uneven light, contrast changes, down-and-up scaling, Gaussian or motion blur, noise and JPEG
    compression; `augment` scales the geometry and the camera effects (its default font pool is
    [`~training.synthesis.fonts.realistic_fonts`]). `return_mask`: return `(image, mask)`, the mask (L, output size) being
    where the text's fill lies before the camera effects, e.g. to measure the text's and the background's colours.

    `fonts` and `font` are used as given: [`generate_dataset`] passes for each word only the fonts that cover it.
    """
    if not text:
        raise ValueError("Cannot render an empty word.")
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}.")
    if style not in STYLES:
        raise ValueError(f"Unknown style {style!r}; use one of {', '.join(STYLES)}.")
    if rng is None:
        rng = np.random.default_rng(seed)
    if font is None:
        if not fonts:
            if style == "realistic":
                fonts = tuple(f for f in realistic_fonts() if set(text) - {" "} <= font_coverage(f, text))
            else:
                needed = DEFAULT_CHARSET if set(text) <= set(DEFAULT_CHARSET) else "".join(sorted(set(text)))
                fonts = available_fonts(needed)
        if not fonts:
            raise ValueError(f"No font covers every character of {text!r}.")
        font = fonts[int(rng.integers(len(fonts)))]
    if colors not in COLOR_MODES:
        raise ValueError(f"Unknown colors {colors!r}; use one of {', '.join(COLOR_MODES)}.")
    if style == "realistic":
        image, mask = _render_realistic(text, rng, font, image_height, image_width, augment, min_contrast, layout,
                                        colors, layout_engine)
        return (image, mask) if return_mask else image
    if return_mask:
        raise ValueError("return_mask is only available with style='realistic'.")
    background, foreground = _contrasting_colors(rng, min_contrast, colors)

    # Draw large on a roomy canvas, then crop to the ink: the output resolution comes from the final resize.
    size = int(rng.integers(30, 46))
    pil_font = load_font(font, size, layout_engine)
    spacing = float(rng.uniform(-0.04, 0.12)) * size if rng.random() < 0.3 else 0.0
    left, top, right, bottom = pil_font.getbbox(text)
    text_width = right - left + int(max(spacing, 0) * len(text)) + 2
    margin_x, margin_y = size // 3 + 4, size // 3 + 4 + text_width // 8  # room for shear and rotation
    canvas_size = (text_width + 2 * margin_x, (bottom - top) + 2 * margin_y)
    mask = Image.new("L", canvas_size, 0)
    draw = ImageDraw.Draw(mask)
    stroke = int(rng.integers(1, 3)) if rng.random() < 0.1 else 0
    if spacing:
        x = margin_x - left
        for char in text:
            draw.text((x, margin_y - top), char, font=pil_font, fill=255, stroke_width=stroke, stroke_fill=255)
            x += pil_font.getlength(char) + spacing
    else:
        draw.text((margin_x - left, margin_y - top), text, font=pil_font, fill=255, stroke_width=stroke,
                  stroke_fill=255)

    # Small rotation and shear of the text mask.
    angle = float(rng.normal(0, 2.5)) * augment
    shear = float(rng.normal(0, 0.12)) * augment if rng.random() < 0.5 else 0.0
    if shear:
        mask = mask.transform(mask.size, Image.Transform.AFFINE,
                              (1, shear, -shear * mask.size[1] / 2, 0, 1, 0), resample=Image.Resampling.BILINEAR)
    if abs(angle) > 0.05:
        mask = mask.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False)

    box = mask.getbbox() or (0, 0, mask.size[0], mask.size[1])
    if layout != "tight":
        # Vertical extent from the font's ascender-to-descender height, not the word's ink, so that every word of a
        # font is drawn at the same scale whatever letters it has.
        _, ref_top, _, ref_bottom = pil_font.getbbox("bdfhklgjpqy0")
        box = (box[0], min(box[1], margin_y - top + ref_top), box[2], max(box[3], margin_y - top + ref_bottom))
    ink_w, ink_h = box[2] - box[0], box[3] - box[1]
    # Random padding around the ink (fractions of the ink height), more on the long side for short words.
    pad = lambda low, high: int(round(rng.uniform(low, high) * ink_h))  # noqa: E731
    pad_top, pad_bottom = pad(0.02, 0.3 * augment + 0.05), pad(0.02, 0.3 * augment + 0.05)
    pad_left, pad_right = pad(0.02, 0.4 * augment + 0.05), pad(0.02, 0.4 * augment + 0.05)
    crop_h = ink_h + pad_top + pad_bottom
    target_aspect = image_width / image_height
    crop_w = ink_w + pad_left + pad_right
    if crop_w < target_aspect * crop_h:
        # Short word. "tight": widen by a random part of the gap (the rest is stretched), word anywhere;
        # "left": fill the whole gap on the right (no stretching, the word starts near the left edge);
        # "free": fill the whole gap, the word anywhere.
        gap = target_aspect * crop_h - crop_w
        extra = int(gap * rng.uniform(0.0, 1.0)) if layout == "tight" else int(round(gap))
        share = 0.0 if layout == "left" else rng.uniform()
        pad_left += int(extra * share)
        pad_right += extra - int(extra * share)
    crop = (box[0] - pad_left, box[1] - pad_top, box[2] + pad_right, box[3] + pad_bottom)
    mask = mask.crop(crop)

    plain = colors == "plain"
    image = _background(rng, mask.size, background, gradients=not plain)
    ink = Image.new("RGB", mask.size, foreground)
    if not plain and rng.random() < 0.15:  # a shadow or outline in a third colour
        shadow_color = tuple(int(v) for v in rng.integers(0, 256, size=3))
        offset = int(rng.integers(1, 4))
        shadow = mask.transform(mask.size, Image.Transform.AFFINE, (1, 0, -offset, 0, 1, -offset))
        image.paste(Image.new("RGB", mask.size, shadow_color), (0, 0), shadow)
    image.paste(ink, (0, 0), mask)

    image = image.resize((image_width, image_height), Image.Resampling.BILINEAR)
    if rng.random() < 0.4 * augment:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))
    if rng.random() < 0.5 * augment:
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels + rng.normal(0, rng.uniform(2, 12), size=pixels.shape)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return image
