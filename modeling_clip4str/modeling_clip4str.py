"""CLIP4STR: scene text recognition with a CLIP image tower, a CLIP text tower and two character decoders."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPTextModel, CLIPVisionModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .caption_clip4str import (
    CaptionIds,
    CaptionState,
    TextTower,
    caption_state,
    caption_texts,
    distinct_text_memory,
    freeze_text_tower,
    text_memory,
)
from .configuration_clip4str import CLIP4STRConfig
from .decoder_clip4str import CLIP4STRDecoder, MemoryKeyValues
from .permutation_loss_clip4str import PermutedBatch, permutation_loss, permuted_batch
from .permutations_clip4str import caption_memory_mask, cloze_mask, side_by_side_captions
from .saving_clip4str import (
    HUB_KWARGS,
    load_caption_tokenizer,
    name_pipeline_in_config,
    save_beside_weights,
    upload_directory,
)


@dataclass
class CLIP4STROutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, returned with `labels`):
            Permuted-sequence loss of both branches: the sum over orders p of n_p * (CE_visual + w * CE_cross),
            divided by the sum of n_p (n_p: targets of order p).
        logits (`torch.FloatTensor` of shape `[B, positions, C + 1]`):
            Cross-modal logits. With `labels`: those of the left-to-right order (teacher forced). Without: the final
            logits of predict-and-refine, as [`~CLIP4STRForSceneTextRecognition.generate`] computes them.
        visual_logits (`torch.FloatTensor` of shape `[B, positions, C + 1]`):
            The visual branch's logits, likewise.
        image_memory (`torch.FloatTensor` of shape `[B, 1 + patches, D]`):
            Every ViT token after the final LayerNorm and the visual projection.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    visual_logits: torch.FloatTensor | None = None
    image_memory: torch.FloatTensor | None = None


@dataclass
class CLIP4STRGenerateOutput(ModelOutput):
    """
    Args:
        sequences (`torch.LongTensor` of shape `[B, positions]`):
            Predicted character ids; every position after the first `[E]` holds `[P]`.
        logits (`torch.FloatTensor` of shape `[B, positions, C + 1]`): the final cross-modal logits.
        visual_logits (`torch.FloatTensor` of shape `[B, positions, C + 1]`): the visual branch's last logits.
        char_confidences (`torch.FloatTensor` of shape `[B, positions]`):
            Highest softmax probability at each position (the character's, or the `[E]`'s).
        confidences (`torch.FloatTensor` of shape `[B]`):
            Word confidence: the product of `char_confidences` up to and including the first `[E]`.
    """

    sequences: torch.LongTensor | None = None
    logits: torch.FloatTensor | None = None
    visual_logits: torch.FloatTensor | None = None
    char_confidences: torch.FloatTensor | None = None
    confidences: torch.FloatTensor | None = None


class CLIP4STRPreTrainedModel(PreTrainedModel):
    config_class = CLIP4STRConfig
    config: CLIP4STRConfig
    base_model_prefix = "clip4str"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["CLIPEncoderLayer", "CLIP4STRDecoder"]
    # `forward` divides the loss by `num_items_in_batch` when given, so the Trainer must neither divide it again by
    # the accumulation steps nor skip counting (see `permutation_loss_clip4str.num_loss_targets`).
    accepts_loss_kwargs = True

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, CLIP4STRDecoder):
            init.trunc_normal_(module.pos_queries, std=std)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            init.trunc_normal_(module.weight, std=std)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class CLIP4STRForSceneTextRecognition(CLIP4STRPreTrainedModel, GenerationMixin):
    r"""
    CLIP4STR. The visual branch decodes characters from the CLIP image memory; the cross-modal branch encodes the
    visual prediction with the CLIP text tower as a caption and decodes again from image + caption memory.

    The CLIP BPE tokenizer that turns predictions into captions is part of the model: it is read from the
    `caption_tokenizer/` folder of a saved model (or set with [`set_caption_tokenizer`]).
    """

    def __init__(self, config: CLIP4STRConfig, caption_tokenizer=None):
        super().__init__(config)
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.visual_decoder = CLIP4STRDecoder(config)
        self.cross_decoder = CLIP4STRDecoder(config)
        self._caption_ids = CaptionIds(caption_tokenizer)
        self.post_init()
        self._align_generation_config()
        self.freeze_text_layers(config.num_frozen_text_layers)

    def _align_generation_config(self) -> None:
        # `generate` is this class's own, but `Trainer` checks the generation config's special ids against the
        # character tokenizer, and a saved `generation_config.json` should name the ids this model generates.
        if getattr(self, "generation_config", None) is not None:
            for name in ("eos_token_id", "bos_token_id", "pad_token_id"):
                setattr(self.generation_config, name, getattr(self.config, name))

    @property
    def caption_tokenizer(self):
        """The CLIP BPE tokenizer that turns predictions into captions (saved in `caption_tokenizer/`)."""
        return self._caption_ids.tokenizer

    @caption_tokenizer.setter
    def caption_tokenizer(self, tokenizer) -> None:
        self.set_caption_tokenizer(tokenizer)

    def set_caption_tokenizer(self, tokenizer) -> None:
        """Use `tokenizer` (a CLIP BPE tokenizer, e.g. `CLIPTokenizer`) to turn predictions into captions."""
        self._caption_ids = CaptionIds(tokenizer)  # a new cache: calls still running in other threads keep theirs

    def caption_texts(self, logits: torch.Tensor) -> list[str]:
        """Captions of logits `[N, L, C + 1]`: greedy text cut at the first `[E]`, adapted to the caption charset."""
        return caption_texts(logits, self.config.charset, self.config.caption_charset, self.config.eos_token_id)

    def tokenize_captions(self, texts: list[str]) -> torch.LongTensor:
        """CLIP BPE ids `[N, context_length]` of captions, as SPEC builds them (padded with id 0)."""
        return self._caption_ids(texts, self.config.context_length)

    @property
    def _text_tower(self) -> TextTower:
        return TextTower(self.text_model, self.text_projection)

    def freeze_text_layers(self, num_layers: int | None = None) -> None:
        """Freeze the text tower's embeddings and first `num_layers` layers (all of it, with its final LayerNorm and
        projection, when `num_layers` equals its depth); -1 freezes nothing. Other text parameters are unfrozen.
        Defaults to `config.num_frozen_text_layers`, which is set to `num_layers`."""
        num_layers = self.config.num_frozen_text_layers if num_layers is None else num_layers
        freeze_text_tower(self._text_tower, num_layers)
        self.config.num_frozen_text_layers = num_layers

    def encode_image(self, pixel_values: torch.FloatTensor) -> torch.FloatTensor:
        """`[B, 3, H, W]` -> image memory `[B, 1 + patches, D]`: every ViT token, final LayerNorm, projection."""
        expected = self.config.image_input_size
        if tuple(pixel_values.shape[-2:]) != expected:
            raise ValueError(
                f"This model reads {expected[0]}x{expected[1]} images (height x width), got `pixel_values` of "
                f"{pixel_values.shape[-2]}x{pixel_values.shape[-1]}. Prepare them with the model's processor."
            )
        dtype = self.visual_projection.weight.dtype
        hidden = self.vision_model(
            pixel_values=pixel_values.to(dtype), interpolate_pos_encoding=self.config.input_size is not None
        ).last_hidden_state
        return self.visual_projection(self.vision_model.post_layernorm(hidden))

    def encode_text(self, input_ids: torch.LongTensor) -> torch.FloatTensor:
        """Caption ids `[N, context_length]` -> text memory `[N, context_length, D]` (every position, no padding mask:
        the zero-padded positions are part of the memory)."""
        return text_memory(self._text_tower, input_ids)

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs,
    ) -> CLIP4STROutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `[B, 3, H, W]`): from [`CLIP4STRImageProcessor`].
            labels (`torch.LongTensor` of shape `[B, L + 1]`, *optional*):
                Character ids followed by `[E]` (0), padded with `[P]` or -100, as [`CLIP4STRProcessor`] makes them.
                With labels the permuted-sequence loss is computed; without, predict-and-refine runs.
            num_items_in_batch (`int` or `torch.Tensor`, *optional*):
                Divide the summed loss by this many targets instead of this batch's own count: the `Trainer` passes
                [`num_loss_targets`] summed over the global batch (every process and accumulation step), so the loss
                and its gradients do not depend on how that batch is split. In `eval()` mode the orders are drawn
                from a fixed seed, so the loss of the same batch is the same at every call.

        Returns:
            [`CLIP4STROutput`].
        """
        if kwargs:
            raise TypeError(f"Unexpected arguments for CLIP4STR forward: {', '.join(sorted(kwargs))}.")
        _check_pixel_values(pixel_values)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        image_memory = self.encode_image(pixel_values)
        loss = None
        if labels is not None:
            batch = permuted_batch(labels.to(image_memory.device), self.config, seeded=not self.training)
            visual_logits, logits = self._permutation_logits(image_memory, batch)
            loss = permutation_loss(visual_logits, logits, batch.targets, self.config, num_items_in_batch)
            visual_logits, logits = visual_logits[:, 0], logits[:, 0]  # the left-to-right order
        else:
            logits, visual_logits = self._predict(image_memory, self.config.refine_iters, self.config.decode_ar)
        output = CLIP4STROutput(loss=loss, logits=logits, visual_logits=visual_logits, image_memory=image_memory)
        return output if return_dict else output.to_tuple()

    def _permutation_logits(self, image_memory, batch: PermutedBatch):
        """Every order of `batch` through each decoder in one call (memory keys and values projected once per decoder,
        the text tower run once per distinct caption). Returns visual and cross logits `[B, K, L, C + 1]`."""
        masks = dict(query_mask=batch.query_masks, content_mask=batch.content_masks, padding_mask=batch.padding_mask)
        visual_logits = self.visual_decoder(batch.context, self.visual_decoder.memory_key_values(image_memory), **masks)
        # Order k of sample b reads the caption of its own visual logits (row b * K + k), and the image memory
        # detached: the cross-modal loss must not reach the image tower.
        texts = self.caption_texts(visual_logits.detach().flatten(0, 1))
        input_ids = self.tokenize_captions(texts).to(image_memory.device)
        captions_kv = self.cross_decoder.memory_key_values(distinct_text_memory(self._text_tower, input_ids, texts))
        memory_kv = self.cross_decoder.concat_key_values(
            self.cross_decoder.memory_key_values(image_memory.detach()),
            side_by_side_captions(captions_kv, batch.num_orders),
        )
        memory_mask = caption_memory_mask(batch.num_orders, image_memory.shape[1], input_ids.shape[1], input_ids.device)
        cross_logits = self.cross_decoder(batch.context, memory_kv, memory_mask=memory_mask, **masks)
        return visual_logits, cross_logits

    def _cross_memory(self, visual_logits, image_kv: MemoryKeyValues, previous: CaptionState | None = None):
        """Cross-modal memory keys/values for the captions of `visual_logits`, and the caption state that lets a
        later pass skip what did not change."""
        texts = self.caption_texts(visual_logits)
        input_ids = self.tokenize_captions(texts).to(visual_logits.device)
        state = caption_state(self._text_tower, texts, input_ids, previous)
        text_kv = self.cross_decoder.memory_key_values(state.memory)
        return self.cross_decoder.concat_key_values(image_kv, text_kv), state

    def _predict(self, image_memory, refine_iters: int, decode_ar: bool):
        """Predict (visual), cross-check (cross-modal), refine. Returns (cross logits, visual logits)."""
        config = self.config
        batch = image_memory.shape[0]
        num_steps = config.num_decoding_steps
        bos, eos = config.bos_token_id, config.eos_token_id
        visual_kv = self.visual_decoder.memory_key_values(image_memory)
        cross_image_kv = self.cross_decoder.memory_key_values(image_memory)
        start = torch.full((batch, 1), bos, dtype=torch.long, device=image_memory.device)

        if decode_ar:
            visual_logits, _ = self.visual_decoder.decode_autoregressive(visual_kv, num_steps, bos, eos, True)
        else:
            visual_logits = self.visual_decoder(start, visual_kv, queries=self.visual_decoder.pos_queries)
        cross_kv, captions = self._cross_memory(visual_logits, cross_image_kv)
        length = visual_logits.shape[1]
        if decode_ar:
            # Its context is its own predictions. When refinement follows, what comes after every sequence's [E] is
            # masked there, so the loop may stop once all have ended.
            cross_logits, _ = self.cross_decoder.decode_autoregressive(cross_kv, length, bos, eos, refine_iters > 0)
        else:
            cross_logits = self.cross_decoder(start, cross_kv, queries=self.cross_decoder.pos_queries[:, :length])

        if refine_iters > 0:
            mask = cloze_mask(num_steps, device=image_memory.device)
            for _ in range(refine_iters):
                visual_logits = _refine(self.visual_decoder, visual_logits, visual_kv, mask, start, eos)
                cross_kv, captions = self._cross_memory(visual_logits, cross_image_kv, previous=captions)
                cross_logits = _refine(self.cross_decoder, cross_logits, cross_kv, mask, start, eos)
        return cross_logits, visual_logits

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.FloatTensor | None = None,
        refine_iters: int | None = None,
        decode_ar: bool | None = None,
        return_dict_in_generate: bool = False,
        **kwargs,
    ) -> torch.LongTensor | CLIP4STRGenerateOutput:
        r"""
        Read the text of word images: predict (visual branch, left to right), cross-check (cross-modal branch, left to
        right), then `refine_iters` cloze refinement passes of both branches.

        Args:
            pixel_values (`torch.FloatTensor` of shape `[B, 3, H, W]`): from [`CLIP4STRImageProcessor`].
            refine_iters (`int`, *optional*): defaults to `config.refine_iters`.
            decode_ar (`bool`, *optional*): left-to-right (default `config.decode_ar`) or all positions at once.
            return_dict_in_generate (`bool`): return a [`CLIP4STRGenerateOutput`] instead of the ids alone.

        Returns:
            `torch.LongTensor` `[B, positions]` of character ids (`[P]` after the first `[E]`), or
            [`CLIP4STRGenerateOutput`]. Decode them with `processor.batch_decode`.
        """
        pixel_values = _generate_input(pixel_values, kwargs)
        refine_iters = self.config.refine_iters if refine_iters is None else int(refine_iters)
        decode_ar = self.config.decode_ar if decode_ar is None else bool(decode_ar)
        if refine_iters < 0:
            raise ValueError(f"refine_iters must be >= 0, got {refine_iters}.")

        logits, visual_logits = self._predict(self.encode_image(pixel_values), refine_iters, decode_ar)
        sequences = _sequences(logits, self.config.eos_token_id, self.config.pad_token_id)
        if not return_dict_in_generate:
            return sequences
        char_confidences, confidences = _confidences(logits, self.config.eos_token_id)
        return CLIP4STRGenerateOutput(
            sequences=sequences,
            logits=logits,
            visual_logits=visual_logits,
            char_confidences=char_confidences,
            confidences=confidences,
        )

    @classmethod
    def from_clip(cls, pretrained_model_name_or_path, **config_overrides) -> "CLIP4STRForSceneTextRecognition":
        """A new CLIP4STR (fresh decoders) on a Hugging Face CLIP checkpoint: both towers, both projections and its
        BPE tokenizer, e.g. `from_clip("openai/clip-vit-base-patch16")` or a local `CLIPModel` directory.

        `config_overrides` set [`CLIP4STRConfig`] fields (`charset=`, `max_label_length=`, ...). Hub arguments
        (`revision`, `cache_dir`, `token`, `local_files_only`) are passed on to the loaders.
        """
        from transformers import CLIPModel, CLIPTokenizer

        hub_kwargs = {key: config_overrides.pop(key) for key in HUB_KWARGS if key in config_overrides}
        clip = CLIPModel.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        config = CLIP4STRConfig(
            vision_config=clip.config.vision_config.to_dict(),
            text_config=clip.config.text_config.to_dict(),
            projection_dim=clip.config.projection_dim,
            **config_overrides,
        )
        tokenizer = CLIPTokenizer.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        model = cls(config, caption_tokenizer=tokenizer)
        for name in ("vision_model", "text_model", "visual_projection", "text_projection"):
            getattr(model, name).load_state_dict(getattr(clip, name).state_dict())
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        caption_tokenizer = kwargs.pop("caption_tokenizer", None)
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS + ("subfolder",) if key in kwargs}
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model.freeze_text_layers()  # loading replaces parameters, which resets `requires_grad`
        model._align_generation_config()  # directories saved by earlier versions carry the CLIP tower's ids
        if caption_tokenizer is None:
            caption_tokenizer = load_caption_tokenizer(pretrained_model_name_or_path, **hub_kwargs)
        if caption_tokenizer is not None:
            model.set_caption_tokenizer(caption_tokenizer)
        return model

    def save_pretrained(self, save_directory, *args, push_to_hub: bool = False, **kwargs):
        """Save weights and config, the caption tokenizer to `caption_tokenizer/` (which `from_pretrained` reads
        back) and the pipeline code, so the directory also serves `pipeline("image-to-text", trust_remote_code=True)`.
        """
        name_pipeline_in_config(self.config)
        if push_to_hub:  # save everything first, then upload the folder, so the tokenizer goes up with the weights
            upload = {name: kwargs.pop(name, None) for name in ("repo_id", "commit_message", "token", "private")}
            upload["repo_id"] = upload["repo_id"] or os.fspath(save_directory).rstrip("/").split("/")[-1]
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            save_beside_weights(save_directory, self.caption_tokenizer)
        if push_to_hub:
            upload_directory(save_directory, **upload)


# Arguments that generic callers (pipelines, Seq2SeqTrainer) pass to `generate` and greedy reading has no use for.
_IGNORED_GENERATE_ARGUMENTS = (
    "generation_config", "max_length", "max_new_tokens", "synced_gpus", "do_sample", "attention_mask", "output_scores",
    "output_logits",
)


def _generate_input(pixel_values, kwargs: dict) -> torch.Tensor:
    """The images `generate` reads (`pixel_values`, or `inputs` as generic callers name them), after refusing what
    greedy reading cannot do and dropping what it has no use for."""
    if pixel_values is None:
        pixel_values = kwargs.pop("inputs", None)
    if pixel_values is None:
        raise ValueError("generate needs `pixel_values`.")
    if kwargs.pop("num_beams", 1) not in (None, 1):
        raise NotImplementedError("CLIP4STR decodes greedily; beam search is not supported.")
    for ignored in _IGNORED_GENERATE_ARGUMENTS:
        kwargs.pop(ignored, None)
    if kwargs:
        raise TypeError(f"Unexpected arguments for CLIP4STR generate: {', '.join(sorted(kwargs))}.")
    _check_pixel_values(pixel_values)
    return pixel_values


def _refine(decoder: CLIP4STRDecoder, logits, memory_kv, mask, start, eos: int):
    """One cloze pass over all positions with context `[B]` + argmax(logits) (positions from the first `[E]` on
    hidden)."""
    predicted = logits[:, :-1].argmax(-1)
    length = predicted.shape[1]
    if length < mask.shape[0] - 1:  # shorter left-to-right output (early stop): its tail is padding anyway
        predicted = F.pad(predicted, (0, mask.shape[0] - 1 - length), value=eos)
    context = torch.cat([start, predicted], dim=1)
    padding_mask = (context == eos).cumsum(-1) > 0
    return decoder(
        context,
        memory_kv,
        queries=decoder.pos_queries,
        query_mask=mask,
        content_mask=mask,
        padding_mask=padding_mask,
    )


def _sequences(logits: torch.Tensor, eos: int, pad: int) -> torch.LongTensor:
    """Greedy ids of `logits` `[B, T, C + 1]`, `[P]` after the first `[E]`."""
    ids = logits.argmax(-1)
    after_end = (ids == eos).cumsum(-1) - (ids == eos).int() > 0
    return ids.masked_fill(after_end, pad)


def _confidences(logits: torch.Tensor, eos: int):
    """Per position the highest probability `[B, T]`, and per word their product up to and including the first
    `[E]` `[B]`."""
    char_confidences = logits.float().softmax(-1).amax(-1)
    is_end = (logits.argmax(-1) == eos).int()
    counted = (is_end.cumsum(-1) - is_end) == 0
    confidences = char_confidences.masked_fill(~counted, 1.0).prod(-1)
    return char_confidences, confidences


def _check_pixel_values(pixel_values) -> None:
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"`pixel_values` must be a tensor, got {type(pixel_values).__name__}.")
    if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
        raise ValueError(f"`pixel_values` must have shape [B, 3, H, W], got {tuple(pixel_values.shape)}.")
    if pixel_values.shape[0] == 0:
        raise ValueError("`pixel_values` holds no images: the batch is empty.")


__all__ = [
    "CLIP4STRPreTrainedModel",
    "CLIP4STRForSceneTextRecognition",
    "CLIP4STROutput",
    "CLIP4STRGenerateOutput",
]
