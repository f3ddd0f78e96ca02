"""Image processor of CLIP4STR: any image to RGB, resized straight to the model's size (no aspect ratio kept, no crop)
with PIL bicubic, scaled to [0, 1], normalised with the CLIP mean and std (or, as a named option, with the 0.5 per
channel that the reference's test and reading scripts use: [`NORMALIZATIONS`])."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling
from transformers.processing_utils import ImagesKwargs

NORMALIZATIONS = {
    "clip": (list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)),
    "reference-test": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
}
"""Named normalisations, `name: (image_mean, image_std)`. The reference trains and validates on CLIP-normalised images
("clip"), but its `test.py` (which produced the published benchmark numbers) and its `read.py` normalise with 0.5 per
channel ("reference-test")."""



class CLIP4STRImagesKwargs(ImagesKwargs, total=False):
    """The usual image-processing flags, and `normalization`: a name of [`NORMALIZATIONS`]."""

    normalization: str


def normalization_values(name: str) -> tuple[list[float], list[float]]:
    """`(image_mean, image_std)` of a name in [`NORMALIZATIONS`]; an unknown name raises `ValueError` listing them."""
    if name not in NORMALIZATIONS:
        raise ValueError(
            f"Unknown normalization {name!r}; choose one of {', '.join(NORMALIZATIONS)} (or give `image_mean` and "
            "`image_std`)."
        )
    return NORMALIZATIONS[name]


_RESAMPLE_NAMES = {
    "nearest": PILImageResampling.NEAREST,
    "bilinear": PILImageResampling.BILINEAR,
    "bicubic": PILImageResampling.BICUBIC,
    "lanczos": PILImageResampling.LANCZOS,
    "box": PILImageResampling.BOX,
    "hamming": PILImageResampling.HAMMING,
}


_ORIENTATION_TAG = 0x0112  # EXIF: how a camera's stored pixels turn to show the photo upright


def load_image(source, timeout: float | None = None) -> Image.Image:
    """Open a path, encoded bytes or an http(s) URL as a fully decoded PIL image, turned upright as its EXIF
    orientation says (as transformers' `load_image` does, so a photo reads the same by path, bytes, PIL image or
    URL). A file that fails to decode raises `ValueError` naming it; `timeout` bounds a URL request (seconds)."""
    import io

    if isinstance(source, str) and source.startswith(("http://", "https://")):
        from urllib.request import urlopen

        with urlopen(source, timeout=timeout) as response:  # raises for HTTP errors; follows redirects
            name, handle = source, io.BytesIO(response.read())
    elif isinstance(source, (bytes, bytearray)):
        name, handle = "<bytes>", io.BytesIO(source)
    else:
        name, handle = os.fspath(source), os.fspath(source)
    try:
        image = Image.open(handle)
        image.load()
    except FileNotFoundError:
        raise
    except Exception as error:  # PIL raises several types for broken files (OSError, SyntaxError, ValueError...)
        raise ValueError(f"Could not read image {name}: {error}") from error
    return upright(image)


def upright(image: Image.Image) -> Image.Image:
    """`image` turned as its EXIF orientation tag says (a new image; `image` itself when it has no such turn)."""
    if image.getexif().get(_ORIENTATION_TAG, 1) in (0, 1):
        return image
    return ImageOps.exif_transpose(image)


def to_rgb_image(image) -> Image.Image:
    """Any PIL image, HWC/CHW/HW numpy array or torch tensor (uint8, uint16 or float in [0, 1], any float dtype
    including bfloat16) as an 8-bit RGB image.

    Paths, bytes and URLs are read with [`load_image`]; a PIL image is turned upright as its EXIF orientation says,
    as [`load_image`] does. PIL modes are converted the way the reference's `Image.convert("RGB")` does (alpha is dropped, palettes are
    expanded), except high-bit-depth modes, which PIL would clip at 255: those are scaled to 8 bits instead.

    Float images must hold values in [0, 1] (up to half an 8-bit level of rounding either side). Anything else raises
    `ValueError` rather than being clipped: values below 0 or above 1 are what an already normalised image holds
    (give those straight to the model as `pixel_values`), and a float image in 0-255 must be converted to uint8 (or
    divided by 255) first. NaN or infinite values raise as well.
    """
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        image = load_image(image)
    elif isinstance(image, Image.Image):
        image = upright(image)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.is_floating_point() and image.dtype not in (torch.float16, torch.float32, torch.float64):
            image = image.float()  # numpy has no bfloat16 (nor float8)
        image = image.numpy()
    if isinstance(image, np.ndarray):
        return Image.fromarray(_array_to_uint8_hwc(image), mode="RGB")
    if not isinstance(image, Image.Image):
        raise TypeError(
            f"Unsupported image type {type(image).__name__}: pass PIL images, numpy arrays, torch tensors or paths."
        )
    if image.width < 1 or image.height < 1:
        raise ValueError(f"Image has no pixels (size {image.size}).")
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_array_to_uint8_hwc(np.asarray(image)), mode="RGB")
    if image.mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")


def _array_to_uint8_hwc(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"Expected an image array of 2 or 3 dimensions, got shape {array.shape}.")
    # Channels-first arrays (as torch tensors usually are) have a small first axis and a larger last one.
    if array.shape[0] in (1, 2, 3, 4) and array.shape[-1] not in (1, 2, 3, 4):
        array = np.moveaxis(array, 0, -1)
    channels = array.shape[-1]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"Expected 1 to 4 colour channels, got shape {array.shape}.")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"Image has no pixels (shape {array.shape}).")
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == np.bool_:
        pixels = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        pixels = np.clip(np.rint(_unit_range(array) * 255.0), 0, 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        peak = int(array.max()) if array.size else 0
        if peak <= 255:
            pixels = array.astype(np.uint8)
        else:  # 16-bit range (also used by PIL's 32-bit 'I' mode for 16-bit PNGs)
            pixels = np.clip(np.rint(array.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"Unsupported image dtype {array.dtype}.")
    if channels in (1, 2):  # grey (+ alpha)
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    elif channels == 4:  # drop alpha, as PIL's RGBA -> RGB does
        pixels = pixels[:, :, :3]
    return np.ascontiguousarray(pixels)


# Float pixels within half an 8-bit level outside [0, 1] round to 0 or 255 anyway; beyond that they are not [0, 1] data.
_UNIT_RANGE_TOLERANCE = 0.5 / 255


def _unit_range(array: np.ndarray) -> np.ndarray:
    """A float image as float64, after checking that it holds finite values in [0, 1]."""
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(
            f"The float image holds {int((~np.isfinite(values)).sum())} NaN or infinite value(s); fix its source."
        )
    low, high = float(values.min()), float(values.max())
    if low < -_UNIT_RANGE_TOLERANCE or high > 1 + _UNIT_RANGE_TOLERANCE:
        hint = (
            "it looks already normalised: give it to the model as `pixel_values` instead"
            if low < 0
            else "for 0-255 pixels convert the image to uint8 (or divide it by 255) first"
        )
        raise ValueError(
            f"Float images must hold values in [0, 1], this one spans [{low:.3g}, {high:.3g}]; {hint}. (Clipping it "
            "would read a different image.)"
        )
    return values


class CLIP4STRImageProcessor(PilBackend):
    r"""
    Prepares word crops for CLIP4STR exactly like the reference: convert to RGB, resize straight to `size` (no aspect
    ratio kept, no crop) with PIL bicubic, scale to [0, 1], normalise with the CLIP mean and std. The steps are
    transformers' PIL image-processing steps, so the usual flags apply, at construction or per call (`do_resize`,
    `size`, `resample`, `do_rescale`, `rescale_factor`, `do_normalize`, `image_mean`, `image_std`).

    Accepts PIL images of any mode, numpy arrays and torch tensors (HWC or CHW; uint8, uint16 or float in [0, 1]),
    file paths and raw bytes, one at a time or in a list; see [`to_rgb_image`]. A float image outside [0, 1] (e.g.
    one already normalised) raises `ValueError` instead of being clipped.

    Args:
        size (`dict` or `int`, defaults to `{"height": 224, "width": 224}`): the model's input size.
        resample (`str` or `PILImageResampling`, defaults to `"bicubic"`): PIL resampling filter.
        image_mean, image_std (`list[float]`): normalisation, CLIP's by default.
        normalization (`str`, *optional*): a name of [`NORMALIZATIONS`] instead of `image_mean` and `image_std`:
            `"clip"` (the default) or `"reference-test"` (0.5 per channel, as the reference's test.py and read.py
            read). Only the mean and std it stands for are saved; [`normalization`] names them again.
    """

    model_input_names = ["pixel_values"]
    size = {"height": 224, "width": 224}
    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    rescale_factor = 1 / 255

    valid_kwargs = CLIP4STRImagesKwargs

    def __init__(self, normalization: str | None = None, **kwargs):
        if normalization is not None:
            mean, std = normalization_values(normalization)
            for name, value in (("image_mean", mean), ("image_std", std)):
                given = kwargs.get(name)
                if given is not None and not _same_values(given, value):
                    raise ValueError(
                        f"`normalization={normalization!r}` means {name}={value}, but {name}={list(given)} was given "
                        "too: give one or the other."
                    )
                kwargs[name] = value
        super().__init__(**kwargs)

    @classmethod
    def from_dict(cls, image_processor_dict: dict, **kwargs):
        # A normalisation named when loading (`from_pretrained(path, normalization=...)`) replaces the saved values.
        if kwargs.get("normalization") is not None:
            image_processor_dict = {
                key: value for key, value in image_processor_dict.items() if key not in ("image_mean", "image_std")
            }
        return super().from_dict(image_processor_dict, **kwargs)

    @property
    def normalization(self) -> str | None:
        """The name in [`NORMALIZATIONS`] of this processor's mean and std, or `None` for other values."""
        for name, (mean, std) in NORMALIZATIONS.items():
            if _same_values(self.image_mean, mean) and _same_values(self.image_std, std):
                return name
        return None

    def _standardize_kwargs(self, resample=None, normalization=None, **kwargs) -> dict:
        if normalization is not None:  # for this call only
            kwargs["image_mean"], kwargs["image_std"] = normalization_values(normalization)
        # Saved configs name the filter ("bicubic"); the PIL backend needs the enum and would silently fall back to
        # bilinear for a name.
        if isinstance(resample, str):
            if resample.lower() not in _RESAMPLE_NAMES:
                raise ValueError(f"Unknown resample filter {resample!r}; choose one of {', '.join(_RESAMPLE_NAMES)}.")
            resample = _RESAMPLE_NAMES[resample.lower()]
        elif resample is not None:
            resample = PILImageResampling(int(resample))
        return super()._standardize_kwargs(resample=resample, **kwargs)

    def preprocess(self, images, **kwargs) -> BatchFeature:
        """
        Args:
            images: one image or a sequence of images (see the class docstring for the accepted kinds).
            return_tensors: `"pt"` (default), `"np"` or `None` (a list of numpy arrays).
            kwargs: the flags of the class docstring, for this call only.

        Returns:
            `BatchFeature` with `pixel_values` of shape `[B, 3, height, width]`.
        """
        kwargs.setdefault("return_tensors", "pt")
        return super().preprocess(images, **kwargs)

    def _prepare_images_structure(self, images, expected_ndims: int = 3) -> list:
        batch = _as_list(images)
        if len(batch) == 0:
            raise ValueError("No images were given: the batch is empty.")
        return batch

    def process_image(self, image, **kwargs) -> np.ndarray:
        """One image of any accepted kind as an 8-bit RGB array `[3, height, width]` (channels first)."""
        return np.asarray(to_rgb_image(image)).transpose(2, 0, 1)

    def to_normalized_array(self, image) -> np.ndarray:
        """One image as a float32 array `[3, height, width]`, as the model reads it."""
        return self.preprocess([image], return_tensors=None)["pixel_values"][0]


def _same_values(values, expected) -> bool:
    values = [values] * len(expected) if isinstance(values, (int, float)) else list(values)
    return len(values) == len(expected) and all(abs(float(a) - b) < 1e-9 for a, b in zip(values, expected))


def _as_list(images) -> list:
    if isinstance(images, (list, tuple)):
        return list(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images.unbind(0))
    return [images]


__all__ = [
    "CLIP4STRImageProcessor",
    "NORMALIZATIONS",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "load_image",
    "normalization_values",
    "to_rgb_image",
    "upright",
]
