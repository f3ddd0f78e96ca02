"""The reading loop of CLIP4STR, once for both back-ends: predict (visual branch), cross-check (cross-modal branch on
the caption of the visual prediction), refine; the sequences and confidences of the result; the caption texts; and
the checks of what `generate` is given.

Nothing here imports torch: the loop drives a back-end ([`ReadingBackend`]) that owns the tensors and the graphs, the
PyTorch modules (`backend_clip4str.TorchBackend`) or the ONNX Runtime sessions (`onnx_clip4str.OnnxBackend`). Token
ids cross the interface as numpy arrays (they are few, and the caption step needs them on the host anyway); logits,
memories and confidences stay the back-end's own arrays. An exported ONNX directory carries a copy of this module.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

if __package__:
    from .labels_clip4str import adapt_to_charset
else:  # the copy in an exported ONNX directory, imported as a top-level module (no package, no torch)
    adapt_to_charset = importlib.import_module("labels_clip4str").adapt_to_charset


class ReadingBackend(Protocol):
    """What the loop needs of a back-end. `branch` is "visual" or "cross"; a memory is whatever the back-end's
    decoders read (cross-attention keys and values); `attend` asks a decoder call for its cross-attention weights,
    which it then returns beside the logits (`(logits, attentions)`, else `(logits, None)`)."""

    def image_memories(self, pixel_values) -> tuple[Any, Any]:
        """The visual decoder's memory of the images and the cross-modal decoder's memory of them (without captions)."""

    def captions(self, texts: list[str], previous=None):
        """The encoded captions `texts` (an object with `input_ids`, the ids `[N, S]`); given the captions of an
        earlier pass over the same rows, what did not change is reused."""

    def cross_memory(self, image_memory, captions):
        """The cross-modal decoder's memory: the image's, then the captions'."""

    def left_to_right(self, branch: str, memory, num_steps: int, stop_when_finished: bool, attend: bool):
        """Greedy left to right over at most `num_steps` positions: logits `[B, L, C + 1]`."""

    def all_at_once(self, branch: str, memory, num_positions: int, attend: bool):
        """Every position read from the context `[B]` alone: logits `[B, num_positions, C + 1]`."""

    def cloze(self, branch: str, context: np.ndarray, memory, attend: bool):
        """One refinement pass over all positions with `context` `[B, T]` (`[B]` + the previous prediction)."""

    def argmax(self, logits) -> np.ndarray:
        """Greedy ids of `logits` `[..., C + 1]`, as an int64 numpy array."""

    def max_probability(self, logits):
        """The highest softmax probability per position `[B, T]` (float32)."""

    def product(self, values, counted: np.ndarray):
        """Per row, the product of `values` `[B, T]` where `counted` (bool numpy `[B, T]`) is True."""

    def output_ids(self, ids: np.ndarray, like):
        """`ids` as the back-end returns them (the array type and device of `like`)."""


class ReadingSizes:
    """The sizes a reading follows from the settings (`charset`, `max_label_length`): shared by the model's config and
    the ONNX reader's."""

    @property
    def num_classes(self) -> int:
        """Classes of the output heads: `[E]` and the charset (never `[B]` or `[P]`)."""
        return len(self.charset) + 1

    @property
    def num_decoding_steps(self) -> int:
        """Positions a reading decodes: the longest label and its `[E]`."""
        return self.max_label_length + 1


@dataclass
class Reading:
    """What predict-and-refine computed: final cross-modal and visual logits `[B, positions, C + 1]`, the captions the
    final cross-modal pass read, and (when asked) each decoder's cross-attentions in the pass that gave its logits."""

    logits: Any
    visual_logits: Any
    captions: Any
    visual_attentions: Any = None
    cross_attentions: Any = None


# --- checks of what `generate` is given -------------------------------------------------------------------------------
def check_refine_iters(refine_iters) -> int:
    """`refine_iters` as given, if it is a non-negative integer (a bool or a float is refused, not truncated)."""
    if isinstance(refine_iters, bool) or not isinstance(refine_iters, (int, np.integer)) or refine_iters < 0:
        raise ValueError(f"`refine_iters` must be an integer >= 0, got {refine_iters!r}.")
    return int(refine_iters)


def check_decode_ar(decode_ar) -> bool:
    """`decode_ar` as given, if it is a bool (a string such as 'no' would otherwise count as True)."""
    if not isinstance(decode_ar, (bool, np.bool_)):
        raise ValueError(f"`decode_ar` must be True or False, got {decode_ar!r}.")
    return bool(decode_ar)


def check_max_positions(lengths) -> int | None:
    """The smaller of the output lengths asked for (`max_new_tokens`, `max_length`), each a positive integer."""
    for length in lengths:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"`max_new_tokens` / `max_length` must be a positive integer, got {length!r}.")
    return int(min(lengths)) if lengths else None


def check_pixel_array(shape, dtype, is_floating: bool, not_finite) -> None:
    """Refuse `pixel_values` that are not a float `[B, 3, H, W]` batch of finite values, given their `shape`, `dtype`
    (as the caller's array names it), whether it is floating point, and `not_finite()`: the number of NaN or infinite
    values and the images (from 0) that hold them.

    Integer pixels (e.g. uint8 0-255) are raw images, not the normalised values the model reads; a NaN or infinite
    value anywhere turns the whole image's reading into NaN."""
    shape = tuple(shape)
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"`pixel_values` must have shape [B, 3, H, W], got {shape}.")
    if shape[0] == 0:
        raise ValueError("`pixel_values` holds no images: the batch is empty.")
    if not is_floating:
        raise TypeError(
            f"`pixel_values` must be floating point (normalised with the CLIP mean and std), got {dtype}: "
            "these look like raw pixels. Prepare images with the model's processor: "
            "`processor(images=...)['pixel_values']`."
        )
    count, images = not_finite()
    if count:
        raise ValueError(
            f"`pixel_values` holds {count} NaN or infinite value(s), in image(s) {images} of the batch "
            f"(counting from 0); the model would read them as NaN. Check how these images were loaded and prepared."
        )


def check_image_size(shape, expected) -> None:
    """Refuse images whose height and width (the last two axes of `shape`) are not the model's `expected`."""
    expected = tuple(expected)
    if tuple(shape[-2:]) != expected:
        raise ValueError(
            f"This model reads {expected[0]}x{expected[1]} images (height x width), got `pixel_values` of "
            f"{shape[-2]}x{shape[-1]}. Prepare them with the model's processor."
        )


# --- ids and texts ----------------------------------------------------------------------------------------------------
def texts_of_ids(ids: np.ndarray, charset: str, eos_token_id: int = 0, caption_charset: str | None = None) -> list[str]:
    """Text of ids `[N, L]` (id i in 1..C is `charset[i - 1]`; others, `[B]` and `[P]`, are skipped) cut at the first
    `[E]`; adapted to `caption_charset` when it is given (the caption of a prediction)."""
    ids = np.asarray(ids)
    is_end = ids == eos_token_id
    lengths = np.where(is_end.any(-1), is_end.argmax(-1), ids.shape[1]).tolist()
    size = len(charset)
    texts = [
        "".join(charset[index - 1] for index in row[:length] if 1 <= index <= size)
        for row, length in zip(ids.tolist(), lengths)
    ]
    return texts if caption_charset is None else [adapt_to_charset(text, caption_charset) for text in texts]


def sequences_of_ids(ids: np.ndarray, eos: int, pad: int) -> np.ndarray:
    """Greedy ids `[B, T]` with `[P]` after the first `[E]`."""
    is_end = ids == eos
    after_end = (np.cumsum(is_end, axis=-1) - is_end) > 0
    return np.where(after_end, pad, ids).astype(np.int64)


def counted_positions(ids: np.ndarray, eos: int) -> np.ndarray:
    """The positions a word confidence counts: up to and including the first `[E]`."""
    is_end = ids == eos
    return (np.cumsum(is_end, axis=-1) - is_end) == 0


def cloze_context(ids: np.ndarray, num_steps: int, bos: int, eos: int) -> np.ndarray:
    """Refinement context `[B, num_steps]`: `[B]` + the prediction `ids` but its last position, padded with `[E]`
    when a left-to-right pass stopped early (its tail is hidden anyway)."""
    predicted = ids[:, :-1]
    missing = num_steps - 1 - predicted.shape[1]
    if missing > 0:
        predicted = np.pad(predicted, ((0, 0), (0, missing)), constant_values=eos)
    start = np.full((len(ids), 1), bos, dtype=np.int64)
    return np.concatenate([start, predicted.astype(np.int64)], axis=1)


MAX_CACHED_CAPTIONS = 100_000


# --- caption ids -----------------------------------------------------------------------------------------------------
class CachedCaptionIds:
    r"""
    CLIP BPE ids of captions as SPEC builds them: `<|startoftext|>` + BPE ids + `<|endoftext|>`, cut to
    `context_length` (the last kept id becoming `<|endoftext|>`), padded with id 0. Subclasses say how a tokenizer
    encodes (`_encode`) and which id ends a caption (`_end_id`).

    Ids are remembered per text (a reader sees the same words again and again). One instance may serve several
    threads at once: a lock guards the cache and the tokenizer (fast tokenizers must not be called from two threads
    at once), and each call builds its rows from its own mapping, so a thread that empties the cache meanwhile cannot
    take ids from under another. The cache is emptied when it would grow past `max_cached` captions.
    """

    def __init__(self, max_cached: int = MAX_CACHED_CAPTIONS):
        self.max_cached = max_cached
        self._cache: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def __getstate__(self):  # a lock can be neither pickled nor deep-copied (copies of the model need both)
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _encode(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def _end_id(self) -> int:
        raise NotImplementedError

    def rows(self, texts: list[str], context_length: int) -> np.ndarray:
        """`[N, context_length]` int64 ids of `texts`."""
        ids_of = self._ids_of(list(dict.fromkeys(texts)))
        rows = np.zeros((len(texts), context_length), dtype=np.int64)
        for index, text in enumerate(texts):
            ids = ids_of[text]
            if len(ids) > context_length:
                ids = ids[: context_length - 1] + [self._end_id()]
            rows[index, : len(ids)] = ids
        return rows

    def _ids_of(self, distinct: list[str]) -> dict[str, list[int]]:
        """Full BPE ids (start and end tokens included, not cut) of each of `distinct`."""
        with self._lock:
            ids_of = {text: self._cache[text] for text in distinct if text in self._cache}
            missing = [text for text in distinct if text not in ids_of]
            if missing:
                encoded = dict(zip(missing, self._encode(missing)))
                if len(self._cache) + len(encoded) > self.max_cached:
                    self._cache.clear()
                self._cache.update(encoded)
                ids_of.update(encoded)
        return ids_of


# --- the loop ---------------------------------------------------------------------------------------------------------
class ReadingLoop:
    """Predict, cross-check and refine over `backend`, for a model of `config` (`charset`, `caption_charset`,
    `num_decoding_steps` and the special ids)."""

    def __init__(self, backend: ReadingBackend, config):
        self.backend = backend
        self.config = config

    def caption_texts(self, logits) -> list[str]:
        """Captions of logits `[N, L, C + 1]`: greedy text cut at the first `[E]`, adapted to the caption charset."""
        config = self.config
        return texts_of_ids(self.backend.argmax(logits), config.charset, config.eos_token_id, config.caption_charset)

    def _captions(self, visual_logits, previous=None):
        return self.backend.captions(self.caption_texts(visual_logits), previous)

    def _first_pass(self, branch: str, memory, length: int, decode_ar: bool, stop: bool, attend: bool):
        if decode_ar:
            return self.backend.left_to_right(branch, memory, length, stop, attend)
        return self.backend.all_at_once(branch, memory, length, attend)

    def predict(self, pixel_values, refine_iters: int, decode_ar: bool, output_attentions: bool = False) -> Reading:
        """Predict (visual), cross-check (cross-modal), refine `refine_iters` times."""
        backend, config = self.backend, self.config
        num_steps, bos, eos = config.num_decoding_steps, config.bos_token_id, config.eos_token_id
        visual_memory, image_memory = backend.image_memories(pixel_values)
        # Attention weights are only kept from the pass that gives each branch's final logits.
        attend = output_attentions and refine_iters == 0
        visual_logits, visual_attentions = self._first_pass("visual", visual_memory, num_steps, decode_ar, True, attend)
        captions = self._captions(visual_logits)
        # The cross-modal branch runs as many steps as the visual one did. When refinement follows, what comes after
        # every word's [E] is masked there, so its left-to-right loop may stop once all have ended.
        cross_memory = backend.cross_memory(image_memory, captions)
        length = visual_logits.shape[1]
        cross_logits, cross_attentions = self._first_pass("cross", cross_memory, length, decode_ar, refine_iters > 0,
                                                          attend)
        for index in range(refine_iters):
            attend = output_attentions and index == refine_iters - 1
            context = cloze_context(backend.argmax(visual_logits), num_steps, bos, eos)
            visual_logits, attentions = backend.cloze("visual", context, visual_memory, attend)
            visual_attentions = attentions if attend else visual_attentions
            captions = self._captions(visual_logits, previous=captions)
            cross_memory = backend.cross_memory(image_memory, captions)
            context = cloze_context(backend.argmax(cross_logits), num_steps, bos, eos)
            cross_logits, attentions = backend.cloze("cross", context, cross_memory, attend)
            cross_attentions = attentions if attend else cross_attentions
        return Reading(cross_logits, visual_logits, captions, visual_attentions, cross_attentions)

    def generate(self, pixel_values, refine_iters=None, decode_ar=None, max_positions: int | None = None,
                 with_confidences: bool = False) -> dict:
        """Read `pixel_values` (checked by the back-end's caller): `sequences` `[B, T]` (`[P]` after the first `[E]`),
        and with `with_confidences` also `logits`, `visual_logits`, `char_confidences` and `confidences`, all cut
        to `max_positions` positions."""
        config = self.config
        refine_iters = check_refine_iters(config.refine_iters if refine_iters is None else refine_iters)
        decode_ar = check_decode_ar(config.decode_ar if decode_ar is None else decode_ar)
        reading = self.predict(pixel_values, refine_iters, decode_ar)
        logits, visual_logits = reading.logits, reading.visual_logits
        if max_positions is not None:
            logits, visual_logits = logits[:, :max_positions], visual_logits[:, :max_positions]
        ids = self.backend.argmax(logits)
        output = {"sequences": self.backend.output_ids(sequences_of_ids(ids, config.eos_token_id,
                                                                        config.pad_token_id), logits)}
        if with_confidences:
            char_confidences = self.backend.max_probability(logits)
            output.update(
                logits=logits,
                visual_logits=visual_logits,
                char_confidences=char_confidences,
                confidences=self.backend.product(char_confidences, counted_positions(ids, config.eos_token_id)),
            )
        return output


__all__ = [
    "CachedCaptionIds",
    "MAX_CACHED_CAPTIONS",
    "Reading",
    "ReadingBackend",
    "ReadingLoop",
    "ReadingSizes",
    "check_decode_ar",
    "check_image_size",
    "check_max_positions",
    "check_pixel_array",
    "check_refine_iters",
    "cloze_context",
    "counted_positions",
    "sequences_of_ids",
    "texts_of_ids",
]
