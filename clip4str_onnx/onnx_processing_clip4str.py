"""Word images to `pixel_values` and character ids to text without torch, as the model's `CLIP4STRProcessor` does
them, for [`~onnx_clip4str.CLIP4STROnnxModel`]; settings come from the exported directory (which carries a copy)."""

from __future__ import annotations

import os

import numpy as np

if __package__:  # clip4str_onnx
    from modeling_clip4str.reading_clip4str import texts_of_ids

    from .onnx_description_clip4str import read_description
else:  # the copy in an exported directory, imported as a top-level module (no package, no torch)
    from onnx_description_clip4str import read_description
    from reading_clip4str import texts_of_ids


class CLIP4STROnnxProcessor:
    r"""
    What a process without torch needs around [`CLIP4STROnnxModel`]: word images to `pixel_values` and character ids
    to text, as the model's `CLIP4STRProcessor` does them (which needs torch). Settings come from the exported
    directory.

    - `processor(images)`: PIL images (any mode, converted to RGB) or image files -> float32 `[B, 3, H, W]`: resized
      straight to the model's size (no aspect ratio kept), scaled to [0, 1], normalised.
    - `processor.batch_decode(sequences)`: the characters up to the first `[E]`; `[B]` and `[P]` skipped.

    Args:
        charset (`str`): the model's characters, in id order (id i is `charset[i - 1]`).
        image_size (`tuple[int, int]`): (height, width).
        resample (`int`): PIL resampling filter (3: bicubic).
        rescale_factor (`float`), image_mean, image_std (`list[float]`): normalisation.
    """

    def __init__(self, charset: str, image_size, resample: int, rescale_factor: float, image_mean, image_std):
        self.charset = charset
        self.image_size = tuple(image_size)
        self.resample = int(resample)
        self.rescale_factor = float(rescale_factor)
        self.image_mean = np.asarray(image_mean, dtype=np.float32)[:, None, None]
        self.image_std = np.asarray(image_std, dtype=np.float32)[:, None, None]

    @classmethod
    def from_pretrained(cls, directory) -> "CLIP4STROnnxProcessor":
        description = read_description(directory)
        return cls(description["settings"]["charset"], **description["preprocessing"])

    def __call__(self, images) -> np.ndarray:
        images = images if isinstance(images, (list, tuple)) else [images]
        if not images:
            raise ValueError("No images were given: the batch is empty.")
        height, width = self.image_size
        arrays = []
        for image in images:
            image = self._rgb(image)
            resized = np.asarray(image.resize((width, height), resample=self.resample)).transpose(2, 0, 1)
            # The same arithmetic as transformers' image processing: rescale in float64, then normalise in float32.
            scaled = (resized.astype(np.float64) * self.rescale_factor).astype(np.float32)
            arrays.append((scaled - self.image_mean) / self.image_std)
        return np.stack(arrays).astype(np.float32)

    @staticmethod
    def _rgb(image):
        from PIL import Image

        if isinstance(image, (str, os.PathLike)):
            with Image.open(image) as opened:
                opened.load()
                image = opened.copy()
        if not isinstance(image, Image.Image):
            raise TypeError(
                f"Pass PIL images or image files, got {type(image).__name__}; the model's own processor (which needs "
                "torch) also reads arrays and tensors."
            )
        if image.getexif().get(0x0112, 1) not in (0, 1):  # a turned camera photo, read upright as the processor does
            from PIL import ImageOps

            image = ImageOps.exif_transpose(image)
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            raise ValueError(
                f"Images of mode {image.mode!r} (16-bit or float) need scaling to 8 bits first; the model's own "
                "processor does it."
            )
        if image.mode in ("LA", "La", "PA"):  # as the model's processor: alpha dropped, palette expanded
            image = image.convert("RGBA")
        return image if image.mode == "RGB" else image.convert("RGB")

    def batch_decode(self, sequences) -> list[str]:
        """Texts of `[B, T]` ids (or of a [`CLIP4STROnnxGenerateOutput`])."""
        return texts_of_ids(np.asarray(getattr(sequences, "sequences", sequences)), self.charset)


__all__ = ["CLIP4STROnnxProcessor"]
