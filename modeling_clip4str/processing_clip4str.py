"""Processor of CLIP4STR: image processor + character tokenizer (labels, decoding)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import ProcessorMixin
from transformers.image_processing_utils import BatchFeature

from .reading_clip4str import counted_positions


class CLIP4STRProcessor(ProcessorMixin):
    r"""
    Everything CLIP4STR needs around the model.

    - `processor(images=...)` gives `pixel_values`; `processor(text=...)` gives `labels` (character ids, `[E]`,
      `[P]` padding); both together give both.
    - `processor.batch_decode(ids)` gives the texts; with `return_confidences=True` (and the output of
      `model.generate(..., return_dict_in_generate=True)`) also per-character and word confidences.

    The CLIP BPE tokenizer that turns predictions into captions is the model's (`model.caption_tokenizer`, saved in
    `caption_tokenizer/`), not the processor's.

    Args:
        image_processor ([`CLIP4STRImageProcessor`]): images to `pixel_values`.
        tokenizer ([`CLIP4STRTokenizer`]): the character vocabulary.
    """

    def __init__(self, image_processor, tokenizer):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer)

    @classmethod
    def from_config(cls, config, normalization: str = "clip") -> "CLIP4STRProcessor":
        """The processor a model of `config` needs: images resized to `config.image_input_size` and normalised as
        `normalization` names (see [`~image_processing_clip4str.NORMALIZATIONS`]), labels encoded with
        `config.charset`."""
        from .image_processing_clip4str import CLIP4STRImageProcessor
        from .tokenization_clip4str import CLIP4STRTokenizer

        height, width = config.image_input_size
        return cls(
            image_processor=CLIP4STRImageProcessor(size={"height": height, "width": width},
                                                   normalization=normalization),
            tokenizer=CLIP4STRTokenizer(charset=config.charset),
        )

    def __call__(
        self,
        images=None,
        text: str | Sequence[str] | None = None,
        return_tensors: str | None = "pt",
        filter_unknown: bool = False,
        max_label_length: int | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            images: one image or a list (PIL images of any mode, arrays, tensors, paths).
            text: the words shown, as training labels.
            return_tensors: only `"pt"` is supported.
            filter_unknown: drop label characters outside the charset instead of raising.
            max_label_length: raise for longer labels (the model's `config.max_label_length`).

        Returns:
            [`BatchFeature`] with `pixel_values` `[B, 3, H, W]` and/or `labels` `[B, L + 1]`.
        """
        if kwargs:
            raise TypeError(f"Unexpected arguments for CLIP4STRProcessor: {', '.join(sorted(kwargs))}.")
        if images is None and text is None:
            raise ValueError("Give `images`, `text` or both.")
        if return_tensors not in ("pt", None):
            raise ValueError("CLIP4STRProcessor returns PyTorch tensors only (return_tensors='pt').")
        data = {}
        if images is not None:
            data.update(self.image_processor(images, return_tensors="pt"))
        if text is not None:
            labels = [text] if isinstance(text, str) else list(text)
            data["labels"] = self.tokenizer.encode_labels(
                labels, filter_unknown=filter_unknown, max_label_length=max_label_length
            )
            if images is not None and len(labels) != len(data["pixel_values"]):
                raise ValueError(f"Got {len(data['pixel_values'])} images but {len(labels)} labels.")
        return BatchFeature(data=data)

    def batch_decode(self, sequences, return_confidences: bool = False, char_confidences=None, **kwargs):
        """Texts of generated ids.

        Args:
            sequences: `[B, T]` ids, or the [`CLIP4STRGenerateOutput`] of
                `model.generate(..., return_dict_in_generate=True)`.
            return_confidences: also return confidences (needs a generate output or `char_confidences`).
            char_confidences: `[B, T]` per-position confidences, when `sequences` is a tensor.

        Returns:
            A list of strings; with `return_confidences`, a dict with `texts`, `confidences` (word: the product of
            the character confidences and the `[E]` one) and `char_confidences` (one float per character).
        """
        confidences = None
        if hasattr(sequences, "sequences"):
            if char_confidences is None:
                char_confidences, confidences = sequences.char_confidences, sequences.confidences
            sequences = sequences.sequences
        if isinstance(sequences, torch.Tensor):
            sequences = sequences.tolist()
        texts = [self.tokenizer.ids_to_text(row) for row in sequences]
        if not return_confidences:
            return texts
        if char_confidences is None:
            raise ValueError(
                "Confidences need the output of `model.generate(..., return_dict_in_generate=True)` or "
                "`char_confidences=`."
            )
        if isinstance(char_confidences, torch.Tensor):
            char_confidences = char_confidences.float().tolist()
        per_char = [list(scores[: len(text)]) for text, scores in zip(texts, char_confidences)]
        if confidences is None:  # as generate computes them, from the per-position ones given
            counted = counted_positions(np.asarray(sequences), self.tokenizer.eos_token_id)
            confidences = np.where(counted, np.asarray(char_confidences, dtype=np.float64), 1.0).prod(-1)
        if isinstance(confidences, torch.Tensor):
            confidences = confidences.float().cpu().numpy()
        per_word = [float(value) for value in np.asarray(confidences)]
        return {"texts": texts, "confidences": per_word, "char_confidences": per_char}

    def decode(self, sequence, **kwargs):
        """Text of one `[T]` id sequence."""
        if isinstance(sequence, torch.Tensor):
            sequence = sequence.tolist()
        return self.tokenizer.ids_to_text(sequence)

    @property
    def model_input_names(self):
        return ["pixel_values", "labels"]


__all__ = ["CLIP4STRProcessor"]
