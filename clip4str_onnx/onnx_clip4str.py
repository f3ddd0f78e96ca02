"""CLIP4STR on ONNX Runtime: predict-and-refine over the graphs that `export_onnx` writes, without PyTorch.

The graphs are the tensor programs (image encoder, caption encoder, each decoder's left-to-right step and its cloze
pass). The reading loop that drives them is `reading_clip4str`'s, the PyTorch model's own; here are the sessions
([`OnnxGraphs`]), the back-end the loop calls ([`OnnxBackend`]: decoding steps and the caption step in numpy, CLIP
BPE ids with the `tokenizers` library), and loading.

This module needs numpy, onnxruntime and tokenizers (and Pillow for [`CLIP4STROnnxProcessor`]). With torch at
hand, `CLIP4STRProcessor.from_pretrained(OUT_DIR)` prepares the images and decodes the output as for the PyTorch
model. An exported directory also carries a copy of this module and of those it imports (`reading_clip4str.py`,
`labels_clip4str.py`, `onnx_description_clip4str.py`, `onnx_processing_clip4str.py`), so it runs where neither this
package nor torch is installed:

    import sys; sys.path.insert(0, "OUT_DIR")
    from onnx_clip4str import CLIP4STROnnxModel, CLIP4STROnnxProcessor
    model, processor = CLIP4STROnnxModel.from_pretrained("OUT_DIR"), CLIP4STROnnxProcessor.from_pretrained("OUT_DIR")
    texts = processor.batch_decode(model.generate(processor(["word.png"])))
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

if __package__:  # clip4str_onnx, beside the model package (whose torch-free reading loop it drives)
    from modeling_clip4str.reading_clip4str import (
        MAX_CACHED_CAPTIONS, CachedCaptionIds, ReadingLoop, check_image_size, check_max_positions, check_pixel_array,
    )

    from .onnx_description_clip4str import (
        CAPTION_ENCODER, CAPTION_TOKENIZER_FILE, DESCRIPTION_FILE, GRAPH_NAMES, IMAGE_ENCODER, PRECISIONS,
        CLIP4STROnnxConfig, cloze_graph, is_exported_directory, read_description, step_graph,
    )
    from .onnx_processing_clip4str import CLIP4STROnnxProcessor
else:  # the copy in an exported directory, imported as a top-level module (no package, no torch)
    from onnx_description_clip4str import (
        CAPTION_ENCODER, CAPTION_TOKENIZER_FILE, DESCRIPTION_FILE, GRAPH_NAMES, IMAGE_ENCODER, PRECISIONS,
        CLIP4STROnnxConfig, cloze_graph, is_exported_directory, read_description, step_graph,
    )
    from onnx_processing_clip4str import CLIP4STROnnxProcessor
    from reading_clip4str import (
        MAX_CACHED_CAPTIONS, CachedCaptionIds, ReadingLoop, check_image_size, check_max_positions, check_pixel_array,
    )

@dataclass
class CLIP4STROnnxGenerateOutput:
    """What `CLIP4STRForSceneTextRecognition.generate(..., return_dict_in_generate=True)` returns, as numpy arrays.

    sequences `[B, T]` (int64; `[P]` after the first `[E]`); logits `[B, T, C + 1]` (final cross-modal); visual_logits
    `[B, T, C + 1]`; char_confidences `[B, T]`; confidences `[B]` (product up to and including the first `[E]`).
    """

    sequences: np.ndarray
    logits: np.ndarray
    visual_logits: np.ndarray
    char_confidences: np.ndarray
    confidences: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name)


@dataclass
class CaptionMemory:
    """The captions of one decoding pass: their ids `[N, S]` and the cross-modal decoder's keys and values of their
    text memory, `[layers, N, heads, S, head_dim]` each."""

    input_ids: np.ndarray
    keys: np.ndarray
    values: np.ndarray


class CaptionIds(CachedCaptionIds):
    """CLIP BPE ids of captions (see [`CachedCaptionIds`]), as numpy arrays, with the `tokenizers` library."""

    def __init__(self, tokenizer, context_length: int, eos_token_id: int, max_cached: int = MAX_CACHED_CAPTIONS):
        super().__init__(max_cached)
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.eos_token_id = eos_token_id

    @classmethod
    def from_file(cls, path: str, context_length: int, eos_token_id: int) -> "CaptionIds":
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(path)
        tokenizer.no_truncation()  # captions are cut here, keeping `<|endoftext|>` last
        tokenizer.no_padding()  # and padded with 0, not with the tokenizer's pad token
        return cls(tokenizer, context_length, eos_token_id)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=True)]

    def _end_id(self) -> int:
        return self.eos_token_id

    def __call__(self, texts: list[str]) -> np.ndarray:
        """`[N, context_length]` int64 ids of `texts`."""
        return self.rows(texts, self.context_length)


class OnnxGraphs:
    """The ONNX Runtime sessions of an exported directory, one per graph, called by name with numpy inputs."""

    def __init__(self, sessions: dict):
        self.sessions = sessions

    @classmethod
    def load(cls, directory: str, files: dict[str, str], num_threads: int | None = None, providers=None,
             session_options=None) -> "OnnxGraphs":
        import onnxruntime

        if session_options is None:
            session_options = onnxruntime.SessionOptions()
            if num_threads is not None:
                session_options.intra_op_num_threads = num_threads
            # The graphs run one after another; parallelism belongs inside each operator.
            session_options.inter_op_num_threads = 1
            # Each session has its own thread pool, and a pool's threads keep spinning for a while after its call
            # returns, taking the cores from the next graph's pool: reading one image went from about 400 to 280 ms
            # (B/16 fp32, 2 cores) with spinning off. Pass `session_options` to choose otherwise.
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = providers or ["CPUExecutionProvider"]
        sessions = {
            name: onnxruntime.InferenceSession(os.path.join(directory, file), session_options, providers=providers)
            for name, file in files.items()
        }
        return cls(sessions)

    def __call__(self, name: str, outputs: list[str], **inputs) -> list[np.ndarray]:
        return self.sessions[name].run(outputs, inputs)


class OnnxBackend:
    """The reading loop's back-end (see `reading_clip4str`) over the sessions: each decoder left to right with cached
    keys and values (its step graph), all positions at once (the step graph at step 0 with every query), refinement
    (its cloze graph), and the caption step (CLIP BPE ids, the `caption_encoder` graph). A memory is the pair of keys
    and values `[layers, B, heads, M, head_dim]`."""

    def __init__(self, graphs: OnnxGraphs, config: CLIP4STROnnxConfig, caption_ids: CaptionIds):
        self.graphs = graphs
        self.config = config
        self.caption_ids = caption_ids

    def image_memories(self, pixel_values):
        names = ["visual_memory_keys", "visual_memory_values", "cross_memory_keys", "cross_memory_values"]
        visual_keys, visual_values, image_keys, image_values = self.graphs(
            IMAGE_ENCODER, names, pixel_values=pixel_values
        )
        return (visual_keys, visual_values), (image_keys, image_values)

    def captions(self, texts: list[str], previous: CaptionMemory | None = None) -> CaptionMemory:
        """The captions through the caption encoder; given those of an earlier pass over the same rows, only the rows
        whose ids changed are encoded again."""
        input_ids = self.caption_ids(texts)
        outputs = ["memory_keys", "memory_values"]
        if previous is None:
            return CaptionMemory(input_ids, *self.graphs(CAPTION_ENCODER, outputs, input_ids=input_ids))
        changed = np.flatnonzero((input_ids != previous.input_ids).any(-1))
        if len(changed) == 0:
            return previous
        new_keys, new_values = self.graphs(CAPTION_ENCODER, outputs, input_ids=input_ids[changed])
        keys, values = previous.keys.copy(), previous.values.copy()
        keys[:, changed], values[:, changed] = new_keys, new_values
        return CaptionMemory(input_ids, keys, values)

    @staticmethod
    def cross_memory(image_memory, captions: CaptionMemory):
        return (
            np.concatenate([image_memory[0], captions.keys], axis=3),
            np.concatenate([image_memory[1], captions.values], axis=3),
        )

    def _step(self, branch: str, tokens: np.ndarray, step: int, query_positions, past, memory):
        """`tokens` `[B, 1]` enter the context at position `step`; the queries of `query_positions` read. Returns
        their logits `[B, Q, C + 1]` and the cache with this step's keys and values appended."""
        logits, keys, values = self.graphs(
            step_graph(branch),
            ["logits", "present_keys", "present_values"],
            tokens=tokens,
            step=np.array([step], dtype=np.int64),
            query_positions=np.asarray(query_positions, dtype=np.int64),
            past_keys=past[0],
            past_values=past[1],
            memory_keys=memory[0],
            memory_values=memory[1],
        )
        return logits, (keys, values)

    def _start(self, memory):
        config = self.config
        batch = memory[0].shape[1]
        shape = (config.decoder_num_layers, batch, config.decoder_num_heads, 0, config.decoder_head_dim)
        empty = (np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32))
        return np.full((batch, 1), config.bos_token_id, dtype=np.int64), empty

    def left_to_right(self, branch: str, memory, num_steps: int, stop_when_finished: bool, attend: bool = False):
        tokens, past = self._start(memory)
        finished = np.zeros(len(tokens), dtype=bool)
        step_logits = []
        for step in range(num_steps):
            logits, past = self._step(branch, tokens, step, [step], past, memory)
            tokens = logits.argmax(-1).astype(np.int64)
            step_logits.append(logits)
            if stop_when_finished and step + 1 < num_steps:
                finished |= tokens[:, 0] == self.config.eos_token_id
                if finished.all():
                    break
        return np.concatenate(step_logits, axis=1), None

    def all_at_once(self, branch: str, memory, num_positions: int, attend: bool = False):
        tokens, past = self._start(memory)
        return self._step(branch, tokens, 0, np.arange(num_positions), past, memory)[0], None

    def cloze(self, branch: str, context: np.ndarray, memory, attend: bool = False):
        (logits,) = self.graphs(
            cloze_graph(branch), ["logits"], context=context, memory_keys=memory[0], memory_values=memory[1]
        )
        return logits, None

    @staticmethod
    def argmax(logits: np.ndarray) -> np.ndarray:
        return logits.argmax(-1).astype(np.int64)

    @staticmethod
    def max_probability(logits: np.ndarray) -> np.ndarray:
        logits = logits.astype(np.float32)
        # The largest probability is exp(0) / sum(exp(logits - max)).
        return (1.0 / np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)).astype(np.float32)

    @staticmethod
    def product(values: np.ndarray, counted: np.ndarray) -> np.ndarray:
        return np.where(counted, values, np.float32(1.0)).prod(-1).astype(np.float32)

    @staticmethod
    def output_ids(ids: np.ndarray, like) -> np.ndarray:
        return ids


class CLIP4STROnnxModel:
    r"""
    CLIP4STR on ONNX Runtime: the same predict-and-refine as `CLIP4STRForSceneTextRecognition.generate`, from the
    directory that `python -m clip4str_onnx.export_onnx MODEL_DIR OUT_DIR` writes.

    `generate` takes `pixel_values` as the model's processor makes them (a numpy array, or a CPU torch tensor) and
    returns numpy arrays, which `processor.batch_decode` reads as it reads the PyTorch model's tensors.

    Args:
        graphs ([`OnnxGraphs`]): the sessions.
        config ([`CLIP4STROnnxConfig`]): the settings.
        caption_ids ([`CaptionIds`]): the caption tokenizer.
        precision (`str`): which graphs were loaded ("fp32" or "int8").
    """

    def __init__(self, graphs: OnnxGraphs, config: CLIP4STROnnxConfig, caption_ids: CaptionIds, precision: str):
        self.graphs = graphs
        self.config = config
        self.precision = precision
        self.caption_ids = caption_ids
        # `captions` also names the back-end for the caption step (`model.captions.caption_ids`), as it did before.
        self.backend = self.captions = OnnxBackend(graphs, config, caption_ids)
        self.loop = ReadingLoop(self.backend, config)

    @classmethod
    def from_pretrained(cls, directory, precision: str = "fp32", num_threads: int | None = None, providers=None,
                        session_options=None) -> "CLIP4STROnnxModel":
        """Load an exported directory.

        Args:
            directory: what `export_onnx` wrote.
            precision: "fp32", or "int8" when it was exported with `--quantize int8`.
            num_threads: ONNX Runtime threads per operator (default: ONNX Runtime's choice, one per core).
            providers: ONNX Runtime execution providers (default: CPU).
            session_options: an `onnxruntime.SessionOptions`, instead of the one built from `num_threads`.
        """
        directory = os.fspath(directory)
        description = read_description(directory)
        files = {name: graph["files"].get(precision) for name, graph in description["graphs"].items()}
        if precision not in PRECISIONS or any(file is None for file in files.values()):
            available = sorted({p for graph in description["graphs"].values() for p in graph["files"]})
            hint = " Export again with `--quantize int8` to add the int8 graphs." if precision == "int8" else ""
            raise ValueError(f"{directory} has no {precision!r} graphs; it holds {', '.join(available)}.{hint}")
        config = CLIP4STROnnxConfig.from_dict(description["settings"])
        caption_ids = CaptionIds.from_file(
            os.path.join(directory, description.get("caption_tokenizer", CAPTION_TOKENIZER_FILE)),
            config.context_length,
            config.caption_eos_token_id,
        )
        graphs = OnnxGraphs.load(directory, files, num_threads, providers, session_options)
        return cls(graphs, config, caption_ids, precision)

    def generate(
        self,
        pixel_values,
        refine_iters: int | None = None,
        decode_ar: bool | None = None,
        return_dict_in_generate: bool = False,
        max_new_tokens: int | None = None,
    ) -> np.ndarray | CLIP4STROnnxGenerateOutput:
        r"""
        Read the text of word images, as `CLIP4STRForSceneTextRecognition.generate` does (the same loop, see
        `reading_clip4str`): predict (visual branch), cross-check (cross-modal branch), then `refine_iters` cloze
        passes of both. Inputs are checked as the PyTorch model checks them, with the same messages.

        Args:
            pixel_values (`[B, 3, H, W]` float array or CPU tensor): from the model's processor.
            refine_iters (`int`, *optional*): an integer >= 0; defaults to `config.refine_iters`.
            decode_ar (`bool`, *optional*): left-to-right (default `config.decode_ar`) or all positions at once.
            return_dict_in_generate (`bool`): return a [`CLIP4STROnnxGenerateOutput`] instead of the ids alone.
            max_new_tokens (`int`, *optional*): cut the outputs to their first n positions.

        Returns:
            int64 array `[B, T]` of character ids (`[P]` after the first `[E]`), or [`CLIP4STROnnxGenerateOutput`].
            Decode them with `processor.batch_decode`.
        """
        pixel_values = self._check_pixel_values(pixel_values)
        max_positions = check_max_positions([] if max_new_tokens is None else [max_new_tokens])
        output = self.loop.generate(pixel_values, refine_iters, decode_ar, max_positions, return_dict_in_generate)
        return CLIP4STROnnxGenerateOutput(**output) if return_dict_in_generate else output["sequences"]

    def _check_pixel_values(self, pixel_values) -> np.ndarray:
        try:
            array = np.asarray(pixel_values)
        except (TypeError, RuntimeError, ValueError) as error:
            raise TypeError(
                f"`pixel_values` must be a float array (or a CPU tensor without gradients), got "
                f"{type(pixel_values).__name__}: {error}"
            ) from error

        def not_finite():
            mask = ~np.isfinite(array)
            return int(mask.sum()), np.flatnonzero(mask.reshape(len(array), -1).any(1)).tolist()

        is_floating = np.issubdtype(array.dtype, np.floating)
        check_pixel_array(array.shape, getattr(pixel_values, "dtype", array.dtype), is_floating, not_finite)
        check_image_size(array.shape, self.config.image_input_size)
        return np.ascontiguousarray(array, dtype=np.float32)


# The description's names are imported here too, for code that took them from this module.
__all__ = [
    "CaptionIds", "CaptionMemory", "CLIP4STROnnxConfig", "CLIP4STROnnxGenerateOutput", "CLIP4STROnnxModel",
    "CLIP4STROnnxProcessor", "OnnxBackend", "OnnxGraphs", "is_exported_directory", "read_description",
    "DESCRIPTION_FILE", "GRAPH_NAMES", "PRECISIONS",
]
