"""The pieces of the realistic style's scenes: colours of a given luminance and polarity, photo-like backgrounds
(gradients, fractal noise, blotches, strokes, big glyphs), perspective maps, curved text, and neighbouring text."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .fonts import load_font


def _luminance(color) -> float:
    r, g, b = (c / 255.0 for c in color[:3])
    return 0.299 * r + 0.587 * g + 0.114 * b


def _color_of_luminance(rng: np.random.Generator, luminance: float, saturated: float) -> tuple[int, int, int]:
    """A colour of the given luminance (0..1): a random hue, vivid with probability `saturated`, else near grey."""
    hue = rng.random()
    saturation = rng.uniform(0.35, 1.0) if rng.random() < saturated else rng.uniform(0.0, 0.12)
    pure = np.array(colorsys.hsv_to_rgb(hue, saturation, 1.0))
    base = float(pure @ _LUMA)
    if luminance <= base:
        rgb = pure * (luminance / base)
    else:  # lighter than the pure hue can be: mix in white
        rgb = pure + (1.0 - pure) * (luminance - base) / max(1.0 - base, 1e-6)
    return tuple(int(round(v)) for v in np.clip(rgb * 255.0, 0, 255))


_LUMA = np.array([0.299, 0.587, 0.114])


def _polarity_colors(rng: np.random.Generator, min_contrast: float, colors: str):
    """(background, text, light_text): light text on a dark background as often as dark text on a light one (with
    `colors="random"`), a luminance gap of at least `min_contrast`, vivid colours about half the time."""
    if colors == "plain":
        return (int(rng.integers(215, 256)),) * 3, (int(rng.integers(0, 45)),) * 3, False
    light_text = colors == "random" and rng.random() < 0.5
    gap = float(rng.uniform(min_contrast, max(min_contrast, 0.9)))
    low = float(rng.uniform(0.0, 1.0 - gap))
    high = float(rng.uniform(low + gap, 1.0))
    dark, light = (low, high)
    background_lum, text_lum = (dark, light) if light_text else (light, dark)
    background = _color_of_luminance(rng, background_lum, 0.45)
    text = _color_of_luminance(rng, text_lum, 0.5)
    return background, text, light_text


def _value_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1] at `height` x `width`: a coarse random grid (`cells` across the height) upsampled."""
    grid_h = max(2, cells)
    grid_w = max(2, int(round(cells * width / max(height, 1))))
    grid = Image.fromarray(rng.random((grid_h, grid_w), dtype=np.float32), "F")
    return np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)


def _scene(rng: np.random.Generator, height: int, width: int, color, amplitude: float, font, glyphs: str,
           layout_engine, busy: bool = False) -> np.ndarray:
    """A photo-like background, float RGB: a base colour under a gradient, fractal noise, soft blotches, strokes and
    edges, and large out-of-focus glyphs (parts of other text), each with some probability (`busy`: strokes and
    glyphs always, for the other scenes seen beyond a panel's edge). `amplitude` (0..255) bounds how far the texture
    strays from the base colour, so the text keeps its contrast."""
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = color
    if rng.random() < 0.6:  # a gradient: light falling across the surface
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-6
        ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
        xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :] * (width / max(height, 1)) * 0.25
        ramp = xs * direction[0] + ys * direction[1]
        image += ramp[..., None] * (rng.uniform(-1.0, 1.0, size=3).astype(np.float32) * amplitude * 1.5)
    if rng.random() < 0.65:  # fractal noise: paper, concrete, wood, foliage
        noise = np.zeros((height, width), dtype=np.float32)
        weight_sum = 0.0
        for octave in range(int(rng.integers(1, 4))):
            weight = 0.5 ** octave
            noise += weight * _value_noise(rng, height, width, int(rng.integers(2, 6)) * 2 ** octave)
            weight_sum += weight
        noise = noise / weight_sum - 0.5
        tint = rng.uniform(0.5, 1.0, size=3).astype(np.float32) if rng.random() < 0.5 else np.ones(3, np.float32)
        image += noise[..., None] * tint * (amplitude * 2.0 * rng.uniform(0.4, 1.0))
    layer = None
    if rng.random() < 0.3:  # soft blotches: stains, leaves, light spots
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        for _ in range(int(rng.integers(1, 5))):
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            rx, ry = rng.uniform(2, height * 1.2), rng.uniform(2, height * 0.8)
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.integers(80, 256)))
        layer = layer.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 4.0))))
        shade = np.asarray(layer, dtype=np.float32)[..., None] / 255.0
        image += shade * (rng.uniform(-1.0, 1.0, size=3).astype(np.float32) * amplitude * 1.5)
    if busy or rng.random() < 0.3:  # strokes and edges: cables, frames, the border of a panel
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.5:  # a straight edge near the top or bottom
                y = float(rng.uniform(0, height * 0.2) if rng.random() < 0.5 else rng.uniform(height * 0.8, height))
                points = [(0, y + rng.normal(0, 1.5)), (width, y + rng.normal(0, 1.5))]
            else:
                points = [(float(rng.uniform(-10, width + 10)), float(rng.uniform(-10, height + 10)))
                          for _ in range(int(rng.integers(2, 4)))]
            draw.line(points, fill=int(rng.integers(120, 256)), width=int(rng.integers(1, 4)))
        stroke = np.asarray(layer, dtype=np.float32)[..., None] / 255.0
        stroke_color = np.asarray(_color_of_luminance(rng, rng.random(), 0.4), dtype=np.float32)
        strength = rng.uniform(0.3, 1.0) * min(1.0, amplitude / 60.0 + 0.3)
        image = image * (1 - stroke * strength) + stroke_color * stroke * strength
    if glyphs and (busy or rng.random() < 0.2):  # big glyphs of other text, low contrast
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        for _ in range(int(rng.integers(1, 3))):
            size = int(rng.integers(max(8, height), max(9, int(height * 2.5))))
            char = glyphs[int(rng.integers(len(glyphs)))]
            draw.text((float(rng.uniform(-size * 0.5, width)), float(rng.uniform(-size * 0.8, height * 0.5))), char,
                      font=load_font(font, size, layout_engine), fill=int(rng.integers(100, 256)))
        layer = layer.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.5))))
        glyph = np.asarray(layer, dtype=np.float32)[..., None] / 255.0
        image += glyph * (rng.uniform(-1.0, 1.0, size=3).astype(np.float32) * amplitude)
    return image


def _solve_homography(source, target) -> tuple[float, ...]:
    """The 8 coefficients PIL's perspective transform wants: the map from each `target` corner back to its `source`
    corner (PIL asks, for each output pixel, where to read)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return tuple(float(c) for c in np.linalg.solve(np.asarray(rows, dtype=np.float64), np.asarray(rhs)))


def _map_points(coefficients, points) -> np.ndarray:
    """Points through a perspective map given as PIL's 8 coefficients."""
    a, b, c, d, e, f, g, h = coefficients
    points = np.asarray(points, dtype=np.float64)
    x, y = points[:, 0], points[:, 1]
    denominator = g * x + h * y + 1.0
    return np.stack([(a * x + b * y + c) / denominator, (d * x + e * y + f) / denominator], axis=1)


def _curve(image: Image.Image, rng: np.random.Generator, amount: float) -> Image.Image:
    """Bend the text along an arc or a wave (vertical offsets per column), as on bottles, badges and flags."""
    width, height = image.size
    strips = 16
    arc = rng.random() < 0.6
    phase = rng.uniform(0, 2 * np.pi)
    periods = rng.uniform(0.5, 1.5)

    def offset(x):
        t = x / max(width, 1)
        return amount * ((2 * t - 1) ** 2 - 0.5) if arc else amount * np.sin(2 * np.pi * periods * t + phase)

    mesh = []
    for i in range(strips):
        x0, x1 = int(round(i * width / strips)), int(round((i + 1) * width / strips))
        d0, d1 = offset(x0), offset(x1)
        # output box -> input quad (upper-left, lower-left, lower-right, upper-right)
        mesh.append(((x0, 0, x1, height), (x0, d0, x0, height + d0, x1, height + d1, x1, d1)))
    return image.transform(image.size, Image.Transform.MESH, mesh, resample=Image.Resampling.BILINEAR)


def _shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = mask[ys, xs]
    return out


def _neighbour_text(rng: np.random.Generator, text: str) -> str:
    """Other text of the same sign or page, made of the word's own characters (so the font surely draws them)."""
    characters = [c for c in text if not c.isspace()] or ["x"]
    length = int(rng.integers(3, 16))
    return "".join(characters[int(i)] for i in rng.integers(0, len(characters), size=length))
