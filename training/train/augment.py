"""RandAugment for word crops, as PARSeq and CLIP4STR train with it, implemented on tensors with kornia.

The reference composes timm's RandAugment (the "increasing" magnitude variants, Sharpness removed) with two extra
operations (Gaussian blur and Poisson noise, the latter from imgaug) and applies it to the PIL crop *before* it is
resized to the model's input size. `RandAugmentSTR` draws the same operations with the same magnitudes and the
same probabilities, and computes each one with kornia / torch tensor code.

Each op, with its argument at magnitude m (level = m / 10), and how it is computed here:

- AutoContrast: `kornia.enhance.normalize_min_max` per channel (single-valued channels kept, as PIL does).
- Equalize: `kornia.enhance.equalize`.
- Invert: `kornia.enhance.invert`.
- Rotate, +-30 * level degrees, canvas enlarged to hold the whole crop: `kornia.geometry.transform.warp_affine`.
- PosterizeIncreasing, keep 4 - int(4 * level) bits: `kornia.enhance.posterize`.
- SolarizeIncreasing, invert pixels >= 256 - int(256 * level): `kornia.enhance.solarize`.
- SolarizeAdd, add min(128, int(110 * level)) to pixels below 128: `torch.where` (kornia's `additions` would shift
  every pixel, not only the dark ones).
- ColorIncreasing (saturation), factor max(0.1, 1 +- 0.9 * level): blend with `kornia.color.rgb_to_grayscale`, which
  is PIL's definition (`kornia.enhance.adjust_saturation` works in HSV and gives other colours).
- ContrastIncreasing, same factor: `kornia.enhance.adjust_contrast_with_mean_subtraction` (PIL's definition).
- BrightnessIncreasing, same factor: a multiplication (PIL's Brightness blends with black; kornia's
  `adjust_brightness` adds an offset).
- ShearX / ShearY, +-0.9 * level / +-0.2 * level about the top-left corner: `kornia.geometry.transform.warp_affine`.
- TranslateXRel / TranslateYRel, +-0.10 * level of the width / +-0.30 * level of the height: `warp_affine`.
- GaussianBlur, sigma round(min(4 * level, max(1, 0.02 * longest side))): `kornia.filters.gaussian_blur2d`, edges
  replicated as PIL does.
- PoissonNoise, lam round(min(40 * level, max(1, 0.2 * longest side))) made odd: `torch.poisson` with a random sign
  per pixel, the same noise in every channel (imgaug's `AdditivePoissonNoise`, per_channel=False).

As in the reference: `num_ops` distinct operations are drawn uniformly without replacement, each is then applied
with probability 0.5, "increasing" ops and geometric ops pick a random sign, geometric ops fill with grey
(128, 128, 128) and resample with bilinear or bicubic at random. Rotation enlarges the canvas (the reference rotates
with `expand=True` so no character is cut off), so a rotated crop comes back larger; every other op keeps the size.
Pixels are rounded to 8 bits after every op, as the reference's PIL pipeline does.

Speed: about 0.9 ms per 128x32 crop with the default 3 ops at magnitude 5, single-threaded as in a DataLoader worker
(torch 2.13 CPU, kornia 0.9); the slowest ops are the blur (about 0.9 ms) and the warps (about 0.6 ms).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import kornia
import numpy as np
import torch
from PIL import Image

from modeling_clip4str import to_rgb_image

# Grey fill of the geometric ops (timm's default `img_mean`).
FILL_VALUE = 128
# Maximum arguments at full magnitude (10), as PARSeq's `rand_augment_transform` configures them.
MAX_ROTATE_DEGREES = 30.0
MAX_SHEAR_X = 0.9
MAX_SHEAR_Y = 0.2
MAX_TRANSLATE_X = 0.10  # fraction of the width
MAX_TRANSLATE_Y = 0.30  # fraction of the height
MAX_BLUR_RADIUS = 4.0
MAX_POISSON_LAMBDA = 40.0
# Magnitudes are fractions of this, as in timm.
MAGNITUDE_DENOMINATOR = 10.0

OPERATIONS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "GaussianBlur",
    "PoissonNoise",
)


class RandAugmentSTR:
    r"""
    PARSeq's RandAugment for scene-text crops, on tensors with kornia (see the module docstring for every op).

    Args:
        num_ops (`int`, defaults to 3): operations drawn per image, without repeats.
        magnitude (`float`, defaults to 5): strength on timm's 0..10 scale.
        seed (`int`, *optional*): makes the sequence of augmentations reproducible. In a DataLoader worker the
            worker id is mixed into the seed so workers do not repeat each other. Without a seed the global `random`
            and torch generators are used (which DataLoader seeds differently in every worker).
        op_probability (`float`, defaults to 0.5): chance that each drawn op is applied (timm's `prob`).
        operations (`tuple[str]`, *optional*): restrict the pool of ops (names from `OPERATIONS`).

    Call it on a PIL image (any mode); it returns an RGB PIL image. Only rotation changes the size.

    Example:
        >>> augment = RandAugmentSTR(seed=0)
        >>> augmented = augment(Image.new("RGB", (128, 32), "white"))
    """

    def __init__(
        self,
        num_ops: int = 3,
        magnitude: float = 5,
        seed: int | None = None,
        op_probability: float = 0.5,
        operations: tuple[str, ...] | None = None,
    ):
        operations = tuple(OPERATIONS if operations is None else operations)
        unknown = [name for name in operations if name not in OPERATIONS]
        if unknown:
            raise ValueError(f"Unknown augmentation op(s) {unknown}; choose from {', '.join(OPERATIONS)}.")
        if not operations:
            raise ValueError("`operations` must name at least one op.")
        if not 0 <= num_ops <= len(operations):
            raise ValueError(f"`num_ops` must be between 0 and {len(operations)} (ops are drawn without repeats).")
        if not 0 <= magnitude <= MAGNITUDE_DENOMINATOR:
            raise ValueError(f"`magnitude` must be between 0 and {MAGNITUDE_DENOMINATOR:g}, got {magnitude}.")
        if not 0 <= op_probability <= 1:
            raise ValueError(f"`op_probability` must be between 0 and 1, got {op_probability}.")
        self.num_ops = num_ops
        self.magnitude = float(magnitude)
        self.seed = seed
        self.op_probability = op_probability
        self.operations = operations
        self._ops: dict[str, Callable] = {name: getattr(self, f"_op_{name.lower()}") for name in operations}
        self._rng: random.Random | None = None
        self._generator: torch.Generator | None = None
        self._rng_worker: int | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_ops={self.num_ops}, magnitude={self.magnitude:g}, seed={self.seed}, "
            f"op_probability={self.op_probability}, operations={list(self.operations)})"
        )

    # --- randomness -----------------------------------------------------------------------------------------------
    def _random_sources(self) -> tuple[random.Random | object, torch.Generator | None]:
        """Python and torch random sources for this process (one private pair per DataLoader worker when seeded)."""
        if self.seed is None:
            return random, None
        worker = torch.utils.data.get_worker_info()
        worker_id = -1 if worker is None else worker.id
        if self._rng is None or self._rng_worker != worker_id:
            # Every worker gets a copy of this object: give each its own stream, else they would all augment alike.
            mixed = self.seed * 1_000_003 + worker_id + 1
            self._rng = random.Random(mixed)
            self._generator = torch.Generator().manual_seed(mixed % (2**63))
            self._rng_worker = worker_id
        return self._rng, self._generator

    def __getstate__(self):
        state = self.__dict__.copy()
        # Bound methods and generators are rebuilt in the new process.
        state.pop("_ops")
        state.update(_rng=None, _generator=None, _rng_worker=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._ops = {name: getattr(self, f"_op_{name.lower()}") for name in self.operations}

    # --- the transform --------------------------------------------------------------------------------------------
    def __call__(self, image: Image.Image) -> Image.Image:
        """
        Args:
            image (`PIL.Image.Image`): a word crop, any mode.

        Returns:
            `PIL.Image.Image`: the augmented crop in RGB (larger than the input only if it was rotated).
        """
        if not isinstance(image, Image.Image):
            raise TypeError(f"RandAugmentSTR takes a PIL image, got {type(image).__name__}.")
        rng, generator = self._random_sources()
        chosen = rng.sample(self.operations, self.num_ops)
        applied = [name for name in chosen if self.op_probability >= 1.0 or rng.random() < self.op_probability]
        rgb = to_rgb_image(image)
        if not applied:
            return rgb
        pixels = pil_to_tensor(rgb)
        for name in applied:
            pixels = self._ops[name](pixels, rng, generator)
            # The reference works on 8-bit PIL images: every op sees (and returns) whole grey levels.
            pixels = pixels.clamp(0.0, 1.0).mul(255.0).round().div(255.0)
        return tensor_to_pil(pixels)

    # --- op arguments ---------------------------------------------------------------------------------------------
    @property
    def level(self) -> float:
        return self.magnitude / MAGNITUDE_DENOMINATOR

    @staticmethod
    def _signed(value: float, rng) -> float:
        return -value if rng.random() > 0.5 else value

    def _enhance_factor(self, rng) -> float:
        return max(0.1, 1.0 + self._signed(0.9 * self.level, rng))

    # --- colour ops (x: [1, 3, H, W] float in [0, 1]) -------------------------------------------------------------
    def _op_autocontrast(self, x, rng, generator):
        stretched = kornia.enhance.normalize_min_max(x, 0.0, 1.0)
        flat = x.amax(dim=(-2, -1), keepdim=True) <= x.amin(dim=(-2, -1), keepdim=True)
        return torch.where(flat, x, stretched)  # PIL leaves single-valued channels unchanged

    def _op_equalize(self, x, rng, generator):
        return kornia.enhance.equalize(x)

    def _op_invert(self, x, rng, generator):
        return kornia.enhance.invert(x)

    def _op_posterize(self, x, rng, generator):
        bits = 4 - int(self.level * 4)
        return x if bits >= 8 else kornia.enhance.posterize(x, bits)

    def _op_solarize(self, x, rng, generator):
        threshold = 256 - min(256, int(self.level * 256))
        if threshold >= 256:
            return x
        return kornia.enhance.solarize(x, thresholds=threshold / 255.0 - 1e-6)  # >= threshold (8-bit) is inverted

    def _op_solarizeadd(self, x, rng, generator):
        addition = min(128, int(self.level * 110))
        return torch.where(x < 128 / 255.0 - 1e-6, (x + addition / 255.0).clamp(max=1.0), x)

    def _op_color(self, x, rng, generator):
        factor = self._enhance_factor(rng)
        grey = kornia.color.rgb_to_grayscale(x)
        return (grey + factor * (x - grey)).clamp(0.0, 1.0)

    def _op_contrast(self, x, rng, generator):
        return kornia.enhance.adjust_contrast_with_mean_subtraction(x, self._enhance_factor(rng))

    def _op_brightness(self, x, rng, generator):
        return (x * self._enhance_factor(rng)).clamp(0.0, 1.0)

    # --- geometric ops --------------------------------------------------------------------------------------------
    def _warp(self, x, output_to_input: np.ndarray, size: tuple[int, int], rng) -> torch.Tensor:
        """Resample `x` onto a `size` (height, width) canvas filled with grey.

        `output_to_input` is a 2x3 affine in PIL's convention (the one `Image.transform` takes): it maps output
        coordinates to input coordinates, with pixel centres at +0.5.
        """
        inverse = np.vstack([output_to_input, [0.0, 0.0, 1.0]])
        # kornia indexes pixel centres at integers: shift by half a pixel on both sides so the geometry is PIL's.
        to_centres = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
        from_centres = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
        inverse = from_centres @ inverse @ to_centres
        forward = np.linalg.inv(inverse)[:2]  # kornia wants the input -> output map
        matrix = torch.as_tensor(forward, dtype=x.dtype).unsqueeze(0)
        fill = torch.full((3,), FILL_VALUE / 255.0, dtype=x.dtype)
        mode = rng.choice(("bilinear", "bicubic"))
        return kornia.geometry.transform.warp_affine(
            x, matrix, dsize=size, mode=mode, padding_mode="fill", align_corners=True, fill_value=fill
        )

    def _op_rotate(self, x, rng, generator):
        height, width = x.shape[-2:]
        angle = math.radians(self._signed(MAX_ROTATE_DEGREES * self.level, rng))
        cos, sin = math.cos(angle), math.sin(angle)
        # Output -> input about the centre; a positive angle turns the content counter-clockwise, as PIL's `rotate`.
        inverse = np.array([[cos, -sin, 0.0], [sin, cos, 0.0]])
        cx, cy = width / 2.0, height / 2.0
        inverse[:, 2] = [cx - cos * cx + sin * cy, cy - sin * cx - cos * cy]
        # The enlarged canvas holds the whole rotated crop; it is sized from the turned corners the way PIL sizes it.
        corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], dtype=np.float64)
        turned = corners @ inverse.T
        new_width = int(math.ceil(turned[:, 0].max()) - math.floor(turned[:, 0].min()))
        new_height = int(math.ceil(turned[:, 1].max()) - math.floor(turned[:, 1].min()))
        inverse[:, 2] = inverse[:, :2] @ [-(new_width - width) / 2.0, -(new_height - height) / 2.0] + inverse[:, 2]
        return self._warp(x, inverse, (new_height, new_width), rng)

    def _op_shearx(self, x, rng, generator):
        factor = self._signed(MAX_SHEAR_X * self.level, rng)
        return self._warp(x, np.array([[1.0, factor, 0.0], [0.0, 1.0, 0.0]]), tuple(x.shape[-2:]), rng)

    def _op_sheary(self, x, rng, generator):
        factor = self._signed(MAX_SHEAR_Y * self.level, rng)
        return self._warp(x, np.array([[1.0, 0.0, 0.0], [factor, 1.0, 0.0]]), tuple(x.shape[-2:]), rng)

    def _op_translatex(self, x, rng, generator):
        pixels = self._signed(MAX_TRANSLATE_X * self.level, rng) * x.shape[-1]
        return self._warp(x, np.array([[1.0, 0.0, pixels], [0.0, 1.0, 0.0]]), tuple(x.shape[-2:]), rng)

    def _op_translatey(self, x, rng, generator):
        pixels = self._signed(MAX_TRANSLATE_Y * self.level, rng) * x.shape[-2]
        return self._warp(x, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, pixels]]), tuple(x.shape[-2:]), rng)

    # --- degradations ---------------------------------------------------------------------------------------------
    def _op_gaussianblur(self, x, rng, generator):
        longest = max(x.shape[-2:])
        # Small crops get a smaller radius (PARSeq scales the cap with the image size).
        radius = round(min(MAX_BLUR_RADIUS * self.level, max(1.0, 0.02 * longest)))
        if radius <= 0:
            return x
        kernel = 2 * math.ceil(3 * radius) + 1
        return kornia.filters.gaussian_blur2d(x, (kernel, kernel), (float(radius), float(radius)), "replicate")

    def _op_poissonnoise(self, x, rng, generator):
        longest = max(x.shape[-2:])
        lam = round(min(MAX_POISSON_LAMBDA * self.level, max(1.0, 0.2 * longest))) | 1  # odd, as the reference
        height, width = x.shape[-2:]
        rates = torch.full((1, 1, height, width), float(lam), dtype=torch.float32)
        noise = torch.poisson(rates, generator=generator)
        sign = torch.randint(0, 2, (1, 1, height, width), generator=generator).float().mul_(2.0).sub_(1.0)
        # One noise value per pixel shared by the channels (imgaug's per_channel=False): grain, not colour speckle.
        return (x + (noise * sign / 255.0).to(x.dtype)).clamp(0.0, 1.0)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a float tensor `[1, 3, H, W]` in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_pil(pixels: torch.Tensor) -> Image.Image:
    """A float tensor `[1, 3, H, W]` in [0, 1] as an RGB PIL image."""
    array = pixels[0].clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(array, mode="RGB")


__all__ = ["OPERATIONS", "RandAugmentSTR", "pil_to_tensor", "tensor_to_pil"]
