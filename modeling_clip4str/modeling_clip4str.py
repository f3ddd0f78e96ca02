"""CLIP4STR: scene text recognition with a CLIP image tower, a CLIP text tower and two character decoders."""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPTextModel, CLIPVisionModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_clip4str import CLIP4STRConfig
from .decoder_clip4str import CLIP4STRDecoder, MemoryKeyValues
from .permutations_clip4str import cloze_mask, permutation_masks, sample_permutations

logger = logging.get_logger(__name__)

CAPTION_TOKENIZER_FOLDER = "caption_tokenizer"
_CAPTION_CACHE_SIZE = 100_000
PIPELINE_FILE = "pipeline_clip4str.py"
# Written into config.json so that `pipeline("image-to-text", model=DIR, trust_remote_code=True)` finds the pipeline
# (the copy of PIPELINE_FILE saved beside the weights).
CUSTOM_PIPELINES = {
    "image-to-text": {
        "impl": "pipeline_clip4str.CLIP4STRPipeline",
        "pt": ["AutoModel"],
        "tf": [],
        "type": "multimodal",
    }
}


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


@dataclass
class _CaptionState:
    """What the cross-modal memory of one pass was built from, so the next pass can reuse it.

    texts: the captions; input_ids `[N, S]`; memory `[N, S, D]` (text memory); key_values: per text layer the
    self-attention keys and values `[N, heads, S, head_dim]`.
    """

    texts: list[str]
    input_ids: torch.LongTensor
    memory: torch.FloatTensor
    key_values: list[tuple[torch.Tensor, torch.Tensor]]


class CLIP4STRPreTrainedModel(PreTrainedModel):
    config_class = CLIP4STRConfig
    config: CLIP4STRConfig
    base_model_prefix = "clip4str"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["CLIPEncoderLayer", "CLIP4STRDecoder"]

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
        # Run the permutations of a training batch through each decoder at once (True) or one after the other.
        self.batch_permutations = True
        self.caption_tokenizer = None
        self._caption_cache: dict[str, list[int]] = {}
        self.post_init()
        self._align_generation_config()
        self.freeze_text_layers(config.num_frozen_text_layers)
        if caption_tokenizer is not None:
            self.set_caption_tokenizer(caption_tokenizer)

    def _align_generation_config(self) -> None:
        # `generate` is this class's own, but `Trainer` checks the generation config's special ids against the
        # character tokenizer, and a saved `generation_config.json` should name the ids this model generates.
        if getattr(self, "generation_config", None) is not None:
            for name in ("eos_token_id", "bos_token_id", "pad_token_id"):
                setattr(self.generation_config, name, getattr(self.config, name))

    # --- captions -------------------------------------------------------------------------------------------------
    def set_caption_tokenizer(self, tokenizer) -> None:
        """Use `tokenizer` (a CLIP BPE tokenizer, e.g. `CLIPTokenizer`) to turn predictions into captions."""
        self.caption_tokenizer = tokenizer
        self._caption_cache = {}

    def _require_caption_tokenizer(self):
        if self.caption_tokenizer is None:
            raise ValueError(
                "This CLIP4STR model has no caption tokenizer, which its cross-modal branch needs. Load the model "
                f"from a directory that has a `{CAPTION_TOKENIZER_FOLDER}/` folder, or call "
                "`model.set_caption_tokenizer(CLIPTokenizer.from_pretrained(...))`."
            )
        return self.caption_tokenizer

    def caption_texts(self, logits: torch.Tensor) -> list[str]:
        """Greedy text of `logits` `[B, L, C + 1]` cut at the first `[E]`, adapted to the caption charset."""
        ids = logits.argmax(-1)
        is_end = ids == self.config.eos_token_id
        lengths = torch.where(is_end.any(-1), is_end.int().argmax(-1), ids.shape[1]).tolist()
        charset, caption_charset = self.config.charset, self.config.caption_charset
        # As the reference: lower-case (or upper-case) the whole word when the caption charset has a single case,
        # then drop what the caption charset lacks.
        lowercase = caption_charset == caption_charset.lower()
        uppercase = not lowercase and caption_charset == caption_charset.upper()
        allowed = set(caption_charset)
        texts = []
        for row, length in zip(ids.tolist(), lengths):
            text = "".join(charset[index - 1] for index in row[:length])
            if lowercase:
                text = text.lower()
            elif uppercase:
                text = text.upper()
            texts.append("".join(char for char in text if char in allowed))
        return texts

    def tokenize_captions(self, texts: list[str]) -> torch.LongTensor:
        """CLIP BPE ids of captions as the reference builds them: `<|startoftext|>` ids `<|endoftext|>`, cut to
        `context_length` (the last kept id becoming `<|endoftext|>`), padded with id 0. Returns `[N, context_length]`.
        """
        tokenizer = self._require_caption_tokenizer()
        context = self.config.context_length
        if len(self._caption_cache) > _CAPTION_CACHE_SIZE:  # bound the memory; emptied before this batch's lookups
            self._caption_cache.clear()
        new = [text for text in dict.fromkeys(texts) if text not in self._caption_cache]
        if new:
            for text, ids in zip(new, tokenizer(new, add_special_tokens=True)["input_ids"]):
                if len(ids) > context:
                    ids = ids[:context]
                    ids[-1] = tokenizer.eos_token_id
                self._caption_cache[text] = ids
        rows = torch.zeros(len(texts), context, dtype=torch.long)
        for index, text in enumerate(texts):
            ids = self._caption_cache[text]
            rows[index, : len(ids)] = torch.tensor(ids)
        return rows

    # --- the two towers -------------------------------------------------------------------------------------------
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
        fully_frozen = not any(p.requires_grad for p in self.text_model.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not fully_frozen):
            hidden = self.text_model(input_ids=input_ids).last_hidden_state
        return self.text_projection(hidden)

    def _text_tower_from(self, input_ids, start: int = 0, past=None):
        """The text tower (inference only) over positions `start:` of `input_ids` `[N, S]`, given the keys and values
        `past` of positions `< start` (the tower is causal, so those positions do not change).

        Returns the text memory of positions `start:` `[N, S - start, D]` and every layer's keys and values of all
        positions.
        """
        text = self.text_model
        length = input_ids.shape[1]
        positions = torch.arange(start, length, device=input_ids.device)
        hidden = text.embeddings.token_embedding(input_ids[:, start:]) + text.embeddings.position_embedding(positions)
        mask = None
        if start > 0:  # query p (absolute position start + i) sees keys 0..p
            mask = torch.ones(length - start, length, dtype=torch.bool, device=input_ids.device).tril(start)
        key_values = []
        for index, layer in enumerate(text.encoder.layers):
            attention = layer.self_attn
            normed = layer.layer_norm1(hidden)
            shape = (hidden.shape[0], hidden.shape[1], attention.num_heads, attention.head_dim)
            query = attention.q_proj(normed).view(shape).transpose(1, 2)
            key = attention.k_proj(normed).view(shape).transpose(1, 2)
            value = attention.v_proj(normed).view(shape).transpose(1, 2)
            if past is not None:
                key = torch.cat([past[index][0][:, :, :start], key], dim=2)
                value = torch.cat([past[index][1][:, :, :start], value], dim=2)
            key_values.append((key, value))
            attended = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, is_causal=mask is None, scale=attention.scale
            )
            hidden = hidden + attention.out_proj(attended.transpose(1, 2).reshape(hidden.shape))
            hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
        return self.text_projection(text.final_layer_norm(hidden)), key_values

    def _caption_state(self, texts: list[str], device, previous: _CaptionState | None = None) -> _CaptionState:
        """Text memory of captions. With the state of an earlier pass, only captions that changed are encoded, and
        only from their first changed token on."""
        input_ids = self.tokenize_captions(texts).to(device)
        if previous is None:
            memory, key_values = self._text_tower_from(input_ids)
            return _CaptionState(texts, input_ids, memory, key_values)
        changed = (input_ids != previous.input_ids).any(-1).nonzero().flatten()
        if len(changed) == 0:
            return previous
        rows = input_ids[changed]
        start = int((rows != previous.input_ids[changed]).int().argmax(-1).min())
        past = [(key[changed], value[changed]) for key, value in previous.key_values]
        tail, new_key_values = self._text_tower_from(rows, start, past)
        memory = previous.memory.clone()
        memory[changed, start:] = tail
        key_values = []
        for (key, value), (new_key, new_value) in zip(previous.key_values, new_key_values):
            key, value = key.clone(), value.clone()
            key[changed], value[changed] = new_key, new_value
            key_values.append((key, value))
        return _CaptionState(texts, input_ids, memory, key_values)

    def encode_captions(self, texts: list[str], device: torch.device, deduplicate: bool = False):
        """Text memory `[N, context_length, D]` of caption texts. With `deduplicate`, each distinct caption is encoded
        once and the result is gathered (the same values, less work)."""
        if not deduplicate:
            return self.encode_text(self.tokenize_captions(texts).to(device))
        distinct = list(dict.fromkeys(texts))
        where = {text: index for index, text in enumerate(distinct)}
        memory = self.encode_text(self.tokenize_captions(distinct).to(device))
        index = torch.tensor([where[text] for text in texts], device=device)
        return memory.index_select(0, index)

    # --- freezing ---------------------------------------------------------------------------------------------------
    def freeze_text_layers(self, num_layers: int | None = None) -> None:
        """Freeze the text tower's embeddings and first `num_layers` layers (all of it, with its final LayerNorm and
        projection, when `num_layers` equals its depth); -1 freezes nothing. Other text parameters are unfrozen."""
        if num_layers is None:
            num_layers = self.config.num_frozen_text_layers
        depth = self.config.text_config.num_hidden_layers
        if num_layers > depth:
            raise ValueError(f"Cannot freeze {num_layers} layers of a {depth}-layer text tower.")
        self.config.num_frozen_text_layers = num_layers
        for name, param in self.text_model.named_parameters():
            if num_layers < 0:
                frozen = False
            elif name.startswith("embeddings."):
                frozen = True
            elif name.startswith("encoder.layers."):
                frozen = int(name.split(".")[2]) < num_layers
            else:
                frozen = num_layers >= depth
            param.requires_grad_(not frozen)
        self.text_projection.weight.requires_grad_(not (num_layers >= depth))

    # --- training ---------------------------------------------------------------------------------------------------
    def _prepare_targets(self, labels: torch.LongTensor) -> torch.LongTensor:
        """`labels` `[B, L+1]` (ids, `[E]`, padding with `[P]` or -100) -> `[B] ids [E] [P]...` trimmed to the batch's
        longest word."""
        config = self.config
        labels = labels.masked_fill(labels == -100, config.pad_token_id)
        ends = labels == config.eos_token_id
        if not bool((ends.sum(-1) == 1).all()):
            raise ValueError("Each row of `labels` must hold exactly one [E] (id 0) after its characters.")
        if bool(((labels < 0) | (labels > config.pad_token_id) | (labels == config.bos_token_id)).any()):
            raise ValueError(f"`labels` must hold character ids 1..{len(config.charset)}, [E] (0) and [P] padding.")
        width = int(ends.int().argmax(-1).max()) + 1
        if width - 1 > config.max_label_length:
            raise ValueError(
                f"A label has {width - 1} characters; this model reads at most {config.max_label_length}."
            )
        labels = labels[:, :width]
        bos = labels.new_full((labels.shape[0], 1), config.bos_token_id)
        return torch.cat([bos, labels], dim=1)

    def permutation_loss(self, image_memory: torch.Tensor, targets: torch.LongTensor):
        """The training loss of SPEC for targets `[B, L+1]` (`[B] chars [E] [P]...`).

        Returns `(loss, visual_logits, cross_logits)`, logits of the left-to-right order `[B, L, C + 1]`.
        """
        config = self.config
        pad, eos = config.pad_token_id, config.eos_token_id
        context, target = targets[:, :-1], targets[:, 1:]
        padding_mask = (context == pad) | (context == eos)  # [E] is never anyone's context
        perms = sample_permutations(
            context.shape[1] - 1, config.perm_num, config.perm_forward, config.perm_mirrored, device=targets.device
        )
        content_masks, query_masks = permutation_masks(perms)
        # The first two orders (left-to-right, right-to-left) also learn [E]; the others ignore it.
        perm_targets = target.unsqueeze(1).repeat(1, len(perms), 1)
        perm_targets[:, 2:] = perm_targets[:, 2:].masked_fill(perm_targets[:, 2:] == eos, pad)

        if self.batch_permutations:
            visual_logits, cross_logits = self._permutation_logits_batched(
                image_memory, context, query_masks, content_masks, padding_mask
            )
        else:
            visual_logits, cross_logits = self._permutation_logits_looped(
                image_memory, context, query_masks, content_masks, padding_mask
            )
        total = F.cross_entropy(visual_logits.flatten(0, 2), perm_targets.flatten(), ignore_index=pad, reduction="sum")
        total = total + config.cross_loss_weight * F.cross_entropy(
            cross_logits.flatten(0, 2), perm_targets.flatten(), ignore_index=pad, reduction="sum"
        )
        num_targets = (perm_targets != pad).sum()
        return total / num_targets, visual_logits[:, 0], cross_logits[:, 0]

    def _permutation_logits_batched(self, image_memory, context, query_masks, content_masks, padding_mask):
        """All K orders through each decoder in one call: memory keys/values projected once per decoder, the text
        tower run once per distinct caption. Returns visual and cross logits `[B, K, L, C + 1]`."""
        visual_kv = self.visual_decoder.memory_key_values(image_memory)
        visual_logits = self.visual_decoder(
            context, visual_kv, query_mask=query_masks, content_mask=content_masks, padding_mask=padding_mask
        )
        # The cross-modal loss must not reach the image tower.
        cross_image_kv = self.cross_decoder.memory_key_values(image_memory.detach())
        cross_logits = self._cross_permutation_logits(
            visual_logits, context, cross_image_kv, query_masks, content_masks, padding_mask
        )
        return visual_logits, cross_logits

    def _permutation_logits_looped(self, image_memory, context, query_masks, content_masks, padding_mask):
        """The orders one after another, as the reference computes them: each pass projects its memories again and
        encodes every caption. Kept as the baseline of `benchmarks/bench_train_step.py`; same result as batched."""
        visual_all, cross_all = [], []
        image_memory_detached = image_memory.detach()
        for k in range(len(query_masks)):
            masks = dict(query_mask=query_masks[k], content_mask=content_masks[k], padding_mask=padding_mask)
            visual_logits = self.visual_decoder(context, self.visual_decoder.memory_key_values(image_memory), **masks)
            texts = self.caption_texts(visual_logits.detach())
            text_memory = self.encode_captions(texts, context.device)
            cross_memory = torch.cat([image_memory_detached, text_memory], dim=1)
            cross_logits = self.cross_decoder(context, self.cross_decoder.memory_key_values(cross_memory), **masks)
            visual_all.append(visual_logits)
            cross_all.append(cross_logits)
        return torch.stack(visual_all, dim=1), torch.stack(cross_all, dim=1)

    def _cross_permutation_logits(self, visual_logits, context, cross_image_kv, query_masks, content_masks, padding_mask):
        """Cross-modal logits `[B, K, L, C+1]`: each order reads the image and the caption of its own visual logits."""
        batch, num_groups = visual_logits.shape[:2]
        texts = self.caption_texts(visual_logits.detach().flatten(0, 1))  # row b * K + k
        text_memory = self.encode_captions(texts, context.device, deduplicate=True)  # [B*K, S, D]
        text_kv = self.cross_decoder.memory_key_values(text_memory)
        length = text_memory.shape[1]
        # Lay the K captions of a sample side by side after its image tokens; order k may only see caption k.
        grouped_text_kv = [
            (k.view(batch, num_groups, *k.shape[1:]).transpose(1, 2).flatten(2, 3),
             v.view(batch, num_groups, *v.shape[1:]).transpose(1, 2).flatten(2, 3))
            for k, v in text_kv
        ]
        memory_kv = self.cross_decoder.concat_key_values(cross_image_kv, grouped_text_kv)
        memory_mask = None
        if num_groups > 1:
            image_tokens = cross_image_kv[0][0].shape[2]
            hidden = torch.ones(num_groups, num_groups, dtype=torch.bool, device=context.device)
            hidden = hidden.fill_diagonal_(False).repeat_interleave(length, dim=1)
            memory_mask = torch.zeros(num_groups, image_tokens + num_groups * length, device=context.device)
            memory_mask[:, image_tokens:].masked_fill_(hidden, float("-inf"))
        return self.cross_decoder(
            context,
            memory_kv,
            query_mask=query_masks,
            content_mask=content_masks,
            padding_mask=padding_mask,
            memory_mask=memory_mask,
        )

    # --- inference --------------------------------------------------------------------------------------------------
    def _cross_memory(self, visual_logits, image_kv: MemoryKeyValues, previous: _CaptionState | None = None):
        """Cross-modal memory keys/values for the captions of `visual_logits`, and the caption state that lets a
        later pass skip what did not change."""
        state = self._caption_state(self.caption_texts(visual_logits), visual_logits.device, previous)
        text_kv = self.cross_decoder.memory_key_values(state.memory)
        return self.cross_decoder.concat_key_values(image_kv, text_kv), state

    def _predict(self, image_memory, refine_iters: int, decode_ar: bool):
        """Predict (visual), cross-check (cross-modal), refine. Returns (cross logits, visual logits)."""
        config = self.config
        batch = image_memory.shape[0]
        num_steps = config.num_decoding_steps
        bos, eos, pad = config.bos_token_id, config.eos_token_id, config.pad_token_id
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
                visual_logits = self._refine(self.visual_decoder, visual_logits, visual_kv, mask, start, eos, pad)
                cross_kv, captions = self._cross_memory(visual_logits, cross_image_kv, previous=captions)
                cross_logits = self._refine(self.cross_decoder, cross_logits, cross_kv, mask, start, eos, pad)
        return cross_logits, visual_logits

    @staticmethod
    def _refine(decoder, logits, memory_kv, mask, start, eos, pad):
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

    # --- public API -------------------------------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.FloatTensor,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CLIP4STROutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `[B, 3, H, W]`): from [`CLIP4STRImageProcessor`].
            labels (`torch.LongTensor` of shape `[B, L + 1]`, *optional*):
                Character ids followed by `[E]` (0), padded with `[P]` or -100, as [`CLIP4STRProcessor`] makes them.
                With labels the permuted-sequence loss is computed; without, predict-and-refine runs.

        Returns:
            [`CLIP4STROutput`].
        """
        # The Trainer passes the batch's token count; the loss here is normalised as the reference does (SPEC).
        kwargs.pop("num_items_in_batch", None)
        if kwargs:
            raise TypeError(f"Unexpected arguments for CLIP4STR forward: {', '.join(sorted(kwargs))}.")
        _check_pixel_values(pixel_values)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        image_memory = self.encode_image(pixel_values)
        loss = None
        if labels is not None:
            targets = self._prepare_targets(labels.to(image_memory.device))
            loss, visual_logits, logits = self.permutation_loss(image_memory, targets)
        else:
            logits, visual_logits = self._predict(image_memory, self.config.refine_iters, self.config.decode_ar)
        output = CLIP4STROutput(loss=loss, logits=logits, visual_logits=visual_logits, image_memory=image_memory)
        return output if return_dict else output.to_tuple()

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
        if pixel_values is None:
            pixel_values = kwargs.pop("inputs", None)
        if pixel_values is None:
            raise ValueError("generate needs `pixel_values`.")
        if kwargs.pop("num_beams", 1) not in (None, 1):
            raise NotImplementedError("CLIP4STR decodes greedily; beam search is not supported.")
        # Arguments that generic callers (pipelines, Seq2SeqTrainer) pass and greedy reading has no use for.
        for ignored in ("generation_config", "max_length", "max_new_tokens", "synced_gpus", "do_sample",
                        "attention_mask", "output_scores", "output_logits"):
            kwargs.pop(ignored, None)
        if kwargs:
            raise TypeError(f"Unexpected arguments for CLIP4STR generate: {', '.join(sorted(kwargs))}.")
        _check_pixel_values(pixel_values)
        refine_iters = self.config.refine_iters if refine_iters is None else int(refine_iters)
        decode_ar = self.config.decode_ar if decode_ar is None else bool(decode_ar)
        if refine_iters < 0:
            raise ValueError(f"refine_iters must be >= 0, got {refine_iters}.")

        image_memory = self.encode_image(pixel_values)
        logits, visual_logits = self._predict(image_memory, refine_iters, decode_ar)
        sequences = self._sequences(logits)
        if not return_dict_in_generate:
            return sequences
        char_confidences, confidences = self._confidences(logits)
        return CLIP4STRGenerateOutput(
            sequences=sequences,
            logits=logits,
            visual_logits=visual_logits,
            char_confidences=char_confidences,
            confidences=confidences,
        )

    def _sequences(self, logits: torch.Tensor) -> torch.LongTensor:
        ids = logits.argmax(-1)
        after_end = (ids == self.config.eos_token_id).cumsum(-1) - (ids == self.config.eos_token_id).int() > 0
        return ids.masked_fill(after_end, self.config.pad_token_id)

    def _confidences(self, logits: torch.Tensor):
        char_confidences = logits.float().softmax(-1).amax(-1)
        ids = logits.argmax(-1)
        is_end = (ids == self.config.eos_token_id).int()
        counted = (is_end.cumsum(-1) - is_end) == 0  # up to and including the first [E]
        confidences = char_confidences.masked_fill(~counted, 1.0).prod(-1)
        return char_confidences, confidences

    # --- construction and persistence --------------------------------------------------------------------------------
    @classmethod
    def from_clip(cls, pretrained_model_name_or_path, **config_overrides) -> "CLIP4STRForSceneTextRecognition":
        """A new CLIP4STR (fresh decoders) on a Hugging Face CLIP checkpoint: both towers, both projections and its
        BPE tokenizer, e.g. `from_clip("openai/clip-vit-base-patch16")` or a local `CLIPModel` directory.

        `config_overrides` set [`CLIP4STRConfig`] fields (`charset=`, `max_label_length=`, ...). Hub arguments
        (`revision`, `cache_dir`, `token`, `local_files_only`) are passed on to the loaders.
        """
        from transformers import CLIPModel, CLIPTokenizer

        hub_kwargs = {key: config_overrides.pop(key) for key in _HUB_KWARGS if key in config_overrides}
        clip = CLIPModel.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        tokenizer = CLIPTokenizer.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        config = CLIP4STRConfig(
            vision_config=clip.config.vision_config.to_dict(),
            text_config=clip.config.text_config.to_dict(),
            projection_dim=clip.config.projection_dim,
            **config_overrides,
        )
        model = cls(config)
        model.vision_model.load_state_dict(clip.vision_model.state_dict())
        model.text_model.load_state_dict(clip.text_model.state_dict())
        model.visual_projection.load_state_dict(clip.visual_projection.state_dict())
        model.text_projection.load_state_dict(clip.text_projection.state_dict())
        model.set_caption_tokenizer(tokenizer)
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        caption_tokenizer = kwargs.pop("caption_tokenizer", None)
        hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS + ("subfolder",) if key in kwargs}
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model.freeze_text_layers()  # loading replaces parameters, which resets `requires_grad`
        model._align_generation_config()  # directories saved by earlier versions carry the CLIP tower's ids
        if caption_tokenizer is None:
            caption_tokenizer = _load_caption_tokenizer(pretrained_model_name_or_path, **hub_kwargs)
        if caption_tokenizer is not None:
            model.set_caption_tokenizer(caption_tokenizer)
        return model

    def save_pretrained(self, save_directory, *args, push_to_hub: bool = False, **kwargs):
        """Save weights and config, the caption tokenizer to `caption_tokenizer/` (which `from_pretrained` reads
        back) and the pipeline code, so the directory also serves `pipeline("image-to-text", trust_remote_code=True)`.
        """
        pipeline_source = os.path.join(os.path.dirname(os.path.abspath(__file__)), PIPELINE_FILE)
        if os.path.isfile(pipeline_source) and not getattr(self.config, "custom_pipelines", None):
            self.config.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES)
        if push_to_hub:
            # Save everything first, then upload the folder, so the tokenizer goes up with the weights.
            repo_id = kwargs.pop("repo_id", None) or os.fspath(save_directory).rstrip("/").split("/")[-1]
            commit_message = kwargs.pop("commit_message", None)
            token = kwargs.pop("token", None)
            private = kwargs.pop("private", None)
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            if self.caption_tokenizer is not None:
                self.caption_tokenizer.save_pretrained(os.path.join(save_directory, CAPTION_TOKENIZER_FOLDER))
            if os.path.isfile(pipeline_source):
                shutil.copy(pipeline_source, os.path.join(save_directory, PIPELINE_FILE))
        if push_to_hub:
            from huggingface_hub import create_repo, upload_folder

            repo_id = create_repo(repo_id, exist_ok=True, token=token, private=private).repo_id
            upload_folder(
                repo_id=repo_id,
                folder_path=save_directory,
                commit_message=commit_message or "Upload CLIP4STR model",
                token=token,
            )


_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "proxies")


def _load_caption_tokenizer(path, subfolder: str = "", **hub_kwargs):
    from transformers import AutoTokenizer

    folder = f"{subfolder}/{CAPTION_TOKENIZER_FOLDER}" if subfolder else CAPTION_TOKENIZER_FOLDER
    try:
        return AutoTokenizer.from_pretrained(path, subfolder=folder, **hub_kwargs)
    except (OSError, ValueError) as error:
        logger.warning(
            f"No caption tokenizer found in {path}/{folder} ({error}). Set one with `model.set_caption_tokenizer` "
            "before reading images."
        )
        return None


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
