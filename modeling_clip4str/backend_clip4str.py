"""The PyTorch back-end of the reading loop (`reading_clip4str`): the model's decoders, caption path and tensors behind
the interface the loop drives, and the check of `pixel_values` tensors."""

from __future__ import annotations

import numpy as np
import torch

from .caption_clip4str import caption_state
from .permutations_clip4str import cloze_mask
from .reading_clip4str import check_pixel_array


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


__all__ = ["TorchBackend", "check_pixel_values"]
