"""The PyTorch side of reading: the back-end of the reading loop (`reading_clip4str`: the model's decoders, caption
path and tensors behind the interface the loop drives), the check of `pixel_values` tensors, the training pass over
permuted orders, and the attention outputs (eager towers, attention maps)."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import torch

from .caption_clip4str import CaptionState, caption_state, distinct_text_memory
from .loss_clip4str import PermutedBatch
from .permutations_clip4str import caption_memory_mask, cloze_mask, side_by_side_captions
from .reading_clip4str import Reading, check_pixel_array

# Held while a forward pass runs the CLIP towers with eager attention to return their weights.
_ATTENTION_SWITCH = threading.Lock()


def check_pixel_values(pixel_values) -> None:
    """Refuse `pixel_values` that are not a float `[B, 3, H, W]` tensor of finite values (see
    [`check_pixel_array`], which the ONNX reader shares)."""
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"`pixel_values` must be a tensor, got {type(pixel_values).__name__}.")

    def not_finite():
        mask = ~torch.isfinite(pixel_values)
        if not bool(mask.any()):
            return 0, []
        return int(mask.sum()), mask.flatten(1).any(1).nonzero().flatten().tolist()

    check_pixel_array(pixel_values.shape, pixel_values.dtype, pixel_values.is_floating_point(), not_finite)


class TorchBackend:
    """The reading loop's back-end over a `CLIP4STRForSceneTextRecognition` (one per reading: it remembers the device
    of the image memory). The loop's images are `pixel_values`, or with `encoded` their image memory
    `[B, 1 + patches, D]` (the forward pass encodes them itself, for the towers' hidden states)."""

    def __init__(self, model, encoded: bool = False):
        self.model = model
        self.config = model.config
        self.encoded = encoded
        self.device = None

    def _decoder(self, branch: str):
        return self.model.visual_decoder if branch == "visual" else self.model.cross_decoder

    def image_memories(self, images):
        image_memory = images if self.encoded else self.model.encode_image(images)
        self.device = image_memory.device
        model = self.model
        return model.visual_decoder.memory_key_values(image_memory), model.cross_decoder.memory_key_values(image_memory)

    def captions(self, texts, previous=None):
        input_ids = self.model.tokenize_captions(texts).to(self.device)
        return caption_state(self.model._text_tower, texts, input_ids, previous)

    def cross_memory(self, image_memory, captions):
        decoder = self.model.cross_decoder
        return decoder.concat_key_values(image_memory, decoder.memory_key_values(captions.memory))

    def left_to_right(self, branch, memory, num_steps, stop_when_finished, attend):
        config = self.config
        output = self._decoder(branch).decode_autoregressive(
            memory, num_steps, config.bos_token_id, config.eos_token_id, stop_when_finished, output_attentions=attend
        )
        return output[0], (output[2] if attend else None)

    def all_at_once(self, branch, memory, num_positions, attend):
        start = torch.full((memory[0][0].shape[0], 1), self.config.bos_token_id, dtype=torch.long, device=self.device)
        output = self._decoder(branch)(start, memory, num_queries=num_positions, output_attentions=attend)
        return output if attend else (output, None)

    def cloze(self, branch, context, memory, attend):
        context = torch.from_numpy(context).to(self.device)
        mask = cloze_mask(context.shape[1], device=self.device)
        output = self._decoder(branch)(
            context,
            memory,
            num_queries=mask.shape[0],
            query_mask=mask,
            content_mask=mask,
            padding_mask=(context == self.config.eos_token_id).cumsum(-1) > 0,
            output_attentions=attend,
        )
        return output if attend else (output, None)

    @staticmethod
    def argmax(logits) -> np.ndarray:
        return logits.argmax(-1).cpu().numpy()

    @staticmethod
    def max_probability(logits):
        return logits.float().softmax(-1).amax(-1)

    @staticmethod
    def product(values, counted: np.ndarray):
        return values.masked_fill(~torch.from_numpy(counted).to(values.device), 1.0).prod(-1)

    @staticmethod
    def output_ids(ids: np.ndarray, like):
        return torch.from_numpy(ids).to(like.device)


def permutation_reading(model, image_memory, batch: PermutedBatch, output_attentions: bool = False) -> Reading:
    """Every order of `batch` through each decoder of `model` in one call (memory keys and values projected once per decoder,
    the text tower run once per distinct caption). Returns visual and cross logits `[B, K, L, C + 1]`, the
    left-to-right order's caption ids, and (if asked) that order's cross-attentions."""
    masks = dict(query_mask=batch.query_masks, content_mask=batch.content_masks, padding_mask=batch.padding_mask)
    num_orders = batch.num_orders
    visual = model.visual_decoder(
        batch.context, model.visual_decoder.memory_key_values(image_memory), output_attentions=output_attentions,
        **masks,
    )
    visual_logits, visual_attentions = visual if output_attentions else (visual, None)
    # Order k of sample b reads the caption of its own visual logits (row b * K + k), and the image memory
    # detached: the cross-modal loss must not reach the image tower.
    texts = model.caption_texts(visual_logits.detach().flatten(0, 1))
    input_ids = model.tokenize_captions(texts).to(image_memory.device)
    captions_kv = model.cross_decoder.memory_key_values(distinct_text_memory(model._text_tower, input_ids, texts))
    memory_kv = model.cross_decoder.concat_key_values(
        model.cross_decoder.memory_key_values(image_memory.detach()),
        side_by_side_captions(captions_kv, num_orders),
    )
    memory_mask = caption_memory_mask(num_orders, image_memory.shape[1], input_ids.shape[1], input_ids.device)
    cross = model.cross_decoder(
        batch.context, memory_kv, memory_mask=memory_mask, output_attentions=output_attentions, **masks
    )
    cross_logits, cross_attentions = cross if output_attentions else (cross, None)
    captions = CaptionState(texts[::num_orders], input_ids[::num_orders], None, [])
    reading = Reading(cross_logits, visual_logits, captions)
    if output_attentions:
        # The left-to-right order (k = 0) reads the image and the first caption slot of the memory.
        seen = image_memory.shape[1] + input_ids.shape[1]
        reading.visual_attentions = tuple(weights[:, :, 0] for weights in visual_attentions)
        reading.cross_attentions = tuple(weights[:, :, 0, :, :seen] for weights in cross_attentions)
    return reading


@contextmanager
def towers_exposing_attentions(model, output_attentions: bool):
    """Run the CLIP towers with eager attention for this call when attentions are asked for: fused kernels (SDPA,
    flash) compute the same result but do not expose the weights."""
    if not output_attentions:
        yield
        return
    configs = [model.vision_model.config, model.text_model.config]
    # Calls that switch are serialised, so that one cannot restore what another switched (a model shared by
    # threads); calls that do not switch may run meanwhile, with eager attention's same result.
    with _ATTENTION_SWITCH:
        previous = [config._attn_implementation for config in configs]
        for config in configs:
            config._attn_implementation = "eager"
        try:
            yield
        finally:
            for config, implementation in zip(configs, previous):
                config._attn_implementation = implementation


def attention_maps(config, decoder_attentions: tuple[torch.Tensor, ...], layer: int = -1) -> torch.FloatTensor:
    """Where each character position looked in the image, for a model of `config`: a heat map over the patch grid per
    position.

    Args:
        decoder_attentions: `visual_decoder_attentions` or `cross_decoder_attentions` of a [`CLIP4STROutput`]
            (from `model(pixel_values, output_attentions=True)`), per layer `[B, heads, positions, M]`.
        layer: which decoder layer's attention to map (default the last).

    Returns:
        `torch.FloatTensor` `[B, positions, H_patches, W_patches]`: the attention of each position over the image
        patches, averaged over heads; the class token's and the captions' shares are left out and each map is
        rescaled to sum to 1 (a map shows where in the image the position looked, not how much it looked at the
        image).
    """
    weights = decoder_attentions[layer].float().mean(1)  # [B, positions, M]
    patch = config.vision_config.patch_size
    height, width = (size // patch for size in config.image_input_size)
    patches = weights[..., 1 : 1 + height * width]
    patches = patches / patches.sum(-1, keepdim=True).clamp_min(torch.finfo(patches.dtype).tiny)
    return patches.unflatten(-1, (height, width))


__all__ = ["TorchBackend", "attention_maps", "check_pixel_values", "permutation_reading", "towers_exposing_attentions"]
