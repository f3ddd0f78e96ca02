"""The realistic style of [`~training.synthesis.classic.render_word`]: a word crop that looks photographed (see
`training/synth.py` for what it draws)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .fonts import load_font
from .scenes import (
    _color_of_luminance,
    _curve,
    _luminance,
    _map_points,
    _neighbour_text,
    _polarity_colors,
    _scene,
    _shifted,
    _solve_homography,
    _value_noise,
)


def _render_realistic(text, rng, font, image_height, image_width, augment, min_contrast, layout, colors,
                      layout_engine):
    """The realistic style (see [`render_word`]). Returns the image and the text's coverage mask (L, output size)."""
    background, foreground, light_text = _polarity_colors(rng, min_contrast, colors)
    gap = abs(_luminance(background) - _luminance(foreground))

    # --- the text and its neighbours, large, as masks packed in one RGB image: R fill, G outline, B neighbours ---
    size = int(rng.integers(24, 42))
    pil_font = load_font(font, size, layout_engine)
    spacing = float(rng.uniform(-0.03, 0.25)) * size if rng.random() < 0.25 else 0.0
    left, top, right, bottom = pil_font.getbbox(text)
    ascent, descent = pil_font.getmetrics()
    line_height = ascent + descent
    text_width = right - left + int(max(spacing, 0.0) * len(text)) + 2
    # Room for the neighbours' edges only: the crop is mapped from the canvas, and what lies outside it is blank.
    margin_x, margin_y = int(line_height * 0.8), int(line_height * 0.7)
    canvas = (text_width + 2 * margin_x, (bottom - top) + 2 * margin_y)
    origin = (margin_x - left, margin_y - top)
    outline = int(rng.integers(1, max(2, size // 12) + 1)) if rng.random() < 0.2 else 0
    bold = 1 if rng.random() < 0.1 else 0
    channels = [Image.new("L", canvas, 0) for _ in range(3)]
    fill_draw, outline_draw = ImageDraw.Draw(channels[0]), ImageDraw.Draw(channels[1])

    def draw_word(draw, stroke):
        if spacing:
            x = origin[0]
            for char in text:
                draw.text((x, origin[1]), char, font=pil_font, fill=255, stroke_width=stroke, stroke_fill=255)
                x += pil_font.getlength(char) + spacing
        else:
            draw.text(origin, text, font=pil_font, fill=255, stroke_width=stroke, stroke_fill=255)

    draw_word(fill_draw, bold)
    if outline:
        draw_word(outline_draw, bold + outline)
    neighbours = rng.random() < 0.35
    side_gaps = {}  # side -> distance (canvas pixels) from the word's ink to a neighbouring word's
    if neighbours:  # lines above and below, words to the left and right: their edges show in a real crop
        draw = ImageDraw.Draw(channels[2])
        ink = channels[0].getbbox() or (0, 0, canvas[0], canvas[1])
        for side in ("above", "below", "left", "right"):
            if rng.random() < 0.5:
                continue
            other = _neighbour_text(rng, text)
            if side in ("above", "below"):
                step = line_height * rng.uniform(1.0, 1.45) * (-1 if side == "above" else 1)
                position = (origin[0] + rng.uniform(-0.5, 0.5) * text_width, origin[1] + step)
            else:
                space = pil_font.getlength(" ") * rng.uniform(0.8, 2.0) + 1
                other_left, _, other_right, _ = pil_font.getbbox(other)
                x = ink[0] - space - other_right if side == "left" else ink[2] + space - other_left
                position = (x, origin[1])
                side_gaps[side] = space
            draw.text(position, other, font=pil_font, fill=255)
    packed = Image.merge("RGB", channels)

    # --- geometry: a curve, then one perspective map for rotation, shear and perspective ---
    if rng.random() < 0.15 * augment:
        packed = _curve(packed, rng, float(rng.uniform(0.1, 0.35)) * line_height * augment)
    width, height = packed.size
    ink = packed.getchannel(1 if outline else 0).getbbox() or (0, 0, width, height)
    text_w, text_h = max(ink[2] - ink[0], 1), max(ink[3] - ink[1], 1)
    angle = np.deg2rad(rng.normal(0, 3.0) if rng.random() < 0.85 else rng.uniform(-15, 15)) * augment
    # A long word turns less: its slant across the crop stays within 1.5 text heights (else the crop's height is
    # mostly slant, and the letters come out a few pixels high).
    limit_angle = max(np.deg2rad(2.0), float(np.arctan(1.5 * text_h / text_w)))
    angle = float(np.clip(angle, -limit_angle, limit_angle))
    shear = float(rng.normal(0, 0.15)) * augment if rng.random() < 0.4 else 0.0
    corners = np.array([(0, 0), (width, 0), (width, height), (0, height)], dtype=np.float64)
    moved = corners - corners.mean(axis=0)
    moved[:, 0] += shear * moved[:, 1]
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = moved @ rotation.T
    if rng.random() < 0.5 * augment:  # perspective: each corner moves by up to a fraction of the text height
        moved += rng.uniform(-1, 1, size=(4, 2)) * (bottom - top) * 0.35 * augment
    to_scene = _solve_homography(moved, corners)  # canvas -> the warped plane
    to_canvas = _solve_homography(corners, moved)  # and back

    # --- the crop, in the warped plane: the word's ink, padded (sometimes cut a little), wider for short words ---
    quad = _map_points(to_scene, [(ink[0], ink[1]), (ink[2], ink[1]), (ink[2], ink[3]), (ink[0], ink[3])])
    box = (*quad.min(axis=0), *quad.max(axis=0))
    ink_w, ink_h = box[2] - box[0], box[3] - box[1]

    def pad(low, high, cut):  # fractions of the text's own height, not of the slanted box's
        if rng.random() < cut:
            return -rng.uniform(0.0, low) * text_h
        return rng.uniform(0.02, high) * text_h

    # Cuts stay within 5% of the ink height: a descender's tip or an accent's edge, never a full stop.
    pad_top, pad_bottom = pad(0.05, 0.05 + 0.3 * augment, 0.08 * augment), pad(0.05, 0.05 + 0.3 * augment,
                                                                                0.08 * augment)
    char_w = text_w / max(len(text), 1)
    cut = min(0.1, 0.25 * char_w / text_h)
    pad_left = pad(cut, 0.05 + 0.5 * augment, 0.05 * augment)
    pad_right = pad(cut, 0.05 + 0.5 * augment, 0.05 * augment)
    # A neighbouring word shows only in part: the crop ends within a third of a character past the space.
    limit = {side: gap_px + 0.3 * char_w for side, gap_px in side_gaps.items()}
    pad_left, pad_right = min(pad_left, limit.get("left", pad_left)), min(pad_right, limit.get("right", pad_right))
    crop_h = ink_h + pad_top + pad_bottom
    crop_w = ink_w + pad_left + pad_right
    target_aspect = image_width / image_height
    if crop_w < target_aspect * crop_h:
        gap_w = target_aspect * crop_h - crop_w
        extra = gap_w * rng.uniform(0.0, 1.0) if layout == "tight" else gap_w
        share = 0.0 if layout == "left" else rng.uniform()
        if side_gaps:  # widen only where no neighbour would come in whole
            room_left = limit.get("left", 1e9) - pad_left
            room_right = limit.get("right", 1e9) - pad_right
            extra = min(extra, room_left + room_right)
            share = min(1.0, room_left / max(extra, 1)) if room_right < extra else min(share, room_left / max(extra, 1))
        pad_left += extra * share
        pad_right += extra * (1.0 - share)
        crop_w = ink_w + pad_left + pad_right
    x0, y0, x1, y1 = box[0] - pad_left, box[1] - pad_top, box[2] + pad_right, box[3] + pad_bottom
    # One perspective map from the output straight back to the canvas: only the crop's pixels are computed, at about
    # the crop's own resolution (at most 4x the output's), then scaled down to the output with filtering.
    work = (int(np.clip(round(x1 - x0), image_width, 4 * image_width)),
            int(np.clip(round(y1 - y0), image_height, 3 * image_height)))
    source = _map_points(to_canvas, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    target = [(0, 0), (work[0], 0), (work[0], work[1]), (0, work[1])]
    masks = packed.transform(work, Image.Transform.PERSPECTIVE, _solve_homography(source, target),
                             resample=Image.Resampling.BILINEAR)
    if work != (image_width, image_height):
        masks = masks.resize((image_width, image_height), Image.Resampling.BILINEAR)
    masks = np.asarray(masks, dtype=np.float32) / 255.0
    fill, ring, others = masks[..., 0:1], masks[..., 1:2], masks[..., 2:3]

    # --- the scene behind the text ---
    amplitude = 255.0 * gap * float(rng.uniform(0.1, 0.45)) * (0.3 + 0.7 * augment)
    glyphs = "".join(c for c in text if not c.isspace())
    image = _scene(rng, image_height, image_width, background, amplitude, font, glyphs, layout_engine)
    if rng.random() < 0.12:  # the sign's edge: outside a panel around the text lies a crop of another scene
        other_color = _color_of_luminance(rng, rng.random(), 0.5)
        other = _scene(rng, image_height, image_width, other_color, 255.0 * rng.uniform(0.1, 0.4), font, glyphs,
                       layout_engine, busy=True)
        ys, xs = np.nonzero(fill[..., 0] > 0.3)
        if len(xs):
            panel = Image.new("L", (image_width, image_height), 0)
            margin_x_out = rng.uniform(0.05, 1.5, size=2) * image_height
            margin_y_out = rng.uniform(0.02, 0.6, size=2) * image_height
            ImageDraw.Draw(panel).rounded_rectangle(
                (xs.min() - margin_x_out[0], ys.min() - margin_y_out[0], xs.max() + margin_x_out[1],
                 ys.max() + margin_y_out[1]), radius=int(rng.integers(0, image_height // 3 + 1)), fill=255)
            inside = np.asarray(panel.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float32)[..., None] / 255.0
            image = image * inside + other * (1.0 - inside)

    # --- the text: shadow, neighbours, outline, fill ---
    text_color = np.asarray(foreground, dtype=np.float32)
    if rng.random() < 0.2:  # a vertical gradient between two colours of about the same luminance
        second = np.asarray(_color_of_luminance(rng, _luminance(foreground), 0.6), dtype=np.float32)
        ramp = np.linspace(0.0, 1.0, image_height, dtype=np.float32)[:, None, None]
        text_color = text_color + (second - text_color) * ramp
    body = np.maximum(fill, ring)
    if rng.random() < 0.2:  # a drop shadow (soft or hard) or an extrusion
        dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
        dx, dy = (dx or 1), (dy or 1)
        shadow = _shifted(body[..., 0], dx, dy)
        if rng.random() < 0.5:
            shadow_image = Image.fromarray((shadow * 255).astype(np.uint8), "L")
            shadow = np.asarray(shadow_image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5)))),
                                dtype=np.float32) / 255.0
        shadow_lum = _luminance(foreground) - 0.6 if light_text else _luminance(background) - 0.5
        shadow_color = np.asarray(_color_of_luminance(rng, float(np.clip(shadow_lum, 0.0, 1.0)), 0.3), np.float32)
        strength = float(rng.uniform(0.5, 1.0))
        image = image + (shadow_color - image) * (shadow[..., None] * strength)
    if neighbours:
        neighbour_color = text_color if rng.random() < 0.7 else np.asarray(
            _color_of_luminance(rng, _luminance(foreground), 0.5), dtype=np.float32)
        image = image + (neighbour_color - image) * others
    if outline:
        outline_lum = (_luminance(foreground) + (0.5 if not light_text else -0.5)) if rng.random() < 0.5 else (
            _luminance(background) + (-0.45 if not light_text else 0.45))
        outline_color = np.asarray(_color_of_luminance(rng, float(np.clip(outline_lum, 0, 1)), 0.5), np.float32)
        image = image + (outline_color - image) * ring
    opacity = float(rng.uniform(0.75, 1.0)) if rng.random() < 0.2 else 1.0
    image = image + (text_color - image) * (fill * opacity)

    # --- light and camera: illumination, contrast, resolution, blur, noise, JPEG ---
    if rng.random() < 0.4 * augment:
        light = 1.0 + (_value_noise(rng, image_height, image_width, 2) - 0.5) * rng.uniform(0.2, 0.6)
        image = image * light[..., None]
    if rng.random() < 0.3 * augment:  # washed out or harsh
        contrast = rng.uniform(0.6, 1.25)
        image = (image - 128.0) * contrast + 128.0 + rng.uniform(-20, 20)
    result = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
    # At most two of the three strong losses (resolution, blur, JPEG), so that the word stays legible.
    losses = rng.random(3) < np.array([0.3, 0.35, 0.45]) * augment
    if losses.all():
        losses[int(rng.integers(3))] = False
    if losses[0]:  # low resolution: down and back up
        factor = rng.uniform(0.45, 0.85)
        small = (max(4, int(image_width * factor)), max(4, int(image_height * factor)))
        result = result.resize(small, Image.Resampling.BILINEAR).resize(
            (image_width, image_height), Image.Resampling.BILINEAR if rng.random() < 0.7 else Image.Resampling.NEAREST)
    if losses[1]:
        if rng.random() < 0.3:  # motion blur along a short horizontal or vertical line
            kernel = [0.0] * 9
            for index in ((3, 4, 5) if rng.random() < 0.6 else (1, 4, 7)):
                kernel[index] = 1.0
            result = result.filter(ImageFilter.Kernel((3, 3), kernel, scale=3))
        else:
            result = result.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    if rng.random() < 0.6 * augment:
        pixels = np.asarray(result, dtype=np.float32)
        sigma = rng.uniform(2, 10) * augment
        shape = pixels.shape[:2] + ((1,) if rng.random() < 0.5 else (3,))
        pixels = pixels + rng.normal(0, sigma, size=shape).astype(np.float32)
        result = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if losses[2]:
        buffer = io.BytesIO()
        result.save(buffer, format="JPEG", quality=int(rng.integers(15, 80)))
        result = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    mask = Image.fromarray((np.clip(fill[..., 0], 0, 1) * 255).astype(np.uint8), "L")
    return result, mask
