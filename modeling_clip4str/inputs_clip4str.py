"""Checks of what the model is given: its images (`pixel_values`) and its reading settings (`refine_iters`,
`decode_ar`). Each refuses, with a message that says how to fix it, an input the model would otherwise read as
something else."""

from __future__ import annotations

import torch


def check_pixel_values(pixel_values) -> None:
    """Refuse `pixel_values` that are not a float `[B, 3, H, W]` batch of finite values.

    Integer pixels (e.g. uint8 0-255) are raw images, not the normalised values the model reads; a NaN or infinite
    value anywhere turns the whole image's reading into NaN."""
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"`pixel_values` must be a tensor, got {type(pixel_values).__name__}.")
    if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
        raise ValueError(f"`pixel_values` must have shape [B, 3, H, W], got {tuple(pixel_values.shape)}.")
    if pixel_values.shape[0] == 0:
        raise ValueError("`pixel_values` holds no images: the batch is empty.")
    if not pixel_values.is_floating_point():
        raise TypeError(
            f"`pixel_values` must be floating point (normalised with the CLIP mean and std), got {pixel_values.dtype}: "
            "these look like raw pixels. Prepare images with the model's processor: "
            "`processor(images=...)['pixel_values']`."
        )
    not_finite = ~torch.isfinite(pixel_values)
    if bool(not_finite.any()):
        images = not_finite.flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(
            f"`pixel_values` holds {int(not_finite.sum())} NaN or infinite value(s), in image(s) {images} of the batch "
            f"(counting from 0); the model would read them as NaN. Check how these images were loaded and prepared."
        )


def check_refine_iters(refine_iters) -> int:
    """`refine_iters` as given, if it is a non-negative integer (a bool or a float is refused, not truncated)."""
    if isinstance(refine_iters, bool) or not isinstance(refine_iters, int) or refine_iters < 0:
        raise ValueError(f"`refine_iters` must be an integer >= 0, got {refine_iters!r}.")
    return refine_iters


def check_decode_ar(decode_ar) -> bool:
    """`decode_ar` as given, if it is a bool (a string such as 'no' would otherwise count as True)."""
    if not isinstance(decode_ar, bool):
        raise ValueError(f"`decode_ar` must be True or False, got {decode_ar!r}.")
    return decode_ar


__all__ = ["check_decode_ar", "check_pixel_values", "check_refine_iters"]
