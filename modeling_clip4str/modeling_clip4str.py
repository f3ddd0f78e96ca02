"""CLIP4STR: scene text recognition with a CLIP image tower, a CLIP text tower and two character decoders."""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import CLIPTextModel, CLIPVisionModel, PreTrainedModel
from transformers import initialization as init

from .backend_clip4str import (
    TorchBackend,
    attention_maps,
    check_pixel_values,
    permutation_reading,
    towers_exposing_attentions,
)
from .caption_clip4str import CaptionIds, TextTower, check_caption_tokenizer, freeze_text_tower, text_memory
from .configuration_clip4str import CLIP4STRConfig
from .decoder_clip4str import CLIP4STRDecoder
from .outputs_clip4str import CLIP4STRGenerateOutput, CLIP4STROutput
from .generation_clip4str import CLIP4STRGenerationMixin, align_generation_config
from .loss_clip4str import permutation_loss, permuted_batch
from .reading_clip4str import ReadingLoop, check_image_size
from .saving_clip4str import (
    HUB_KWARGS,
    attach_caption_tokenizer,
    model_from_clip,
    name_pipeline_in_config,
    save_beside_weights,
    upload_directory,
)


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
    # the accumulation steps nor skip counting (see `loss_clip4str.num_loss_targets`).
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

    @torch.no_grad()
    def initialize_weights(self):
        """Initialise what is not yet initialised, each CLIP tower with CLIP's own scheme, as `__init__` does.

        transformers' version skips, in custom-code models, modules without parameters of their own (a guard for
        remote code that writes weights in place); it would skip CLIP's attention and MLP blocks, whose scheme sets
        their projections, so a model built by `from_pretrained` without weights would differ from `cls(config)`.
        This class writes weights only through `transformers.initialization`, which never overwrites loaded ones.
        """

        def apply(module: nn.Module, initialize) -> None:
            for child in module.children():
                apply(child, child._initialize_weights if isinstance(child, PreTrainedModel) else initialize)
            initialize(module)

        apply(self, self._initialize_weights)


class CLIP4STRForSceneTextRecognition(CLIP4STRPreTrainedModel, CLIP4STRGenerationMixin):
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
        self._caption_ids = CaptionIds(None)
        self.post_init()
        if caption_tokenizer is not None:
            self.set_caption_tokenizer(caption_tokenizer)
        align_generation_config(self)
        self.freeze_text_layers(config.num_frozen_text_layers)

    @property
    def caption_tokenizer(self):
        """The CLIP BPE tokenizer that turns predictions into captions (saved in `caption_tokenizer/`)."""
        return self._caption_ids.tokenizer

    @caption_tokenizer.setter
    def caption_tokenizer(self, tokenizer) -> None:
        self.set_caption_tokenizer(tokenizer)

    def set_caption_tokenizer(self, tokenizer) -> None:
        """Use `tokenizer` (a CLIP BPE tokenizer, e.g. `CLIPTokenizer`) to turn predictions into captions.

        Every way of building or loading a model passes its tokenizer through here, which refuses one that is not the
        text tower's (vocabulary size, start and end ids; see [`check_caption_tokenizer`]), naming where it came
        from."""
        if tokenizer is not None:
            check_caption_tokenizer(tokenizer, self.config.text_config)
        self._caption_ids = CaptionIds(tokenizer)  # a new cache: calls still running in other threads keep theirs

    def get_input_embeddings(self) -> nn.Module:
        """The image tower's patch embedding (a `Conv2d`): the first layer the model's input meets."""
        return self.vision_model.embeddings.patch_embedding

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.vision_model.embeddings.patch_embedding = value

    def caption_texts(self, logits: torch.Tensor) -> list[str]:
        """Captions of logits `[N, L, C + 1]`: greedy text cut at the first `[E]`, adapted to the caption charset."""
        return ReadingLoop(TorchBackend(self), self.config).caption_texts(logits)

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
        return self._encode_image(pixel_values)[0]

    def _encode_image(self, pixel_values, output_attentions: bool = False, output_hidden_states: bool = False):
        """Image memory `[B, 1 + patches, D]` and the image tower's output (hidden states and attentions if asked)."""
        check_image_size(pixel_values.shape, self.config.image_input_size)
        dtype = self.visual_projection.weight.dtype
        tower = self.vision_model(
            pixel_values=pixel_values.to(dtype),
            interpolate_pos_encoding=self.config.input_size is not None,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return self.visual_projection(self.vision_model.post_layernorm(tower.last_hidden_state)), tower

    def encode_text(self, input_ids: torch.LongTensor) -> torch.FloatTensor:
        """Caption ids `[N, context_length]` -> text memory `[N, context_length, D]` (every position, no padding mask:
        the zero-padded positions are part of the memory)."""
        return text_memory(self._text_tower, input_ids)

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
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
            output_attentions (`bool`, *optional*):
                Return the towers' self-attentions and the decoders' cross-attentions (see [`CLIP4STROutput`]). For
                this call the towers run with eager attention, whose weights fused kernels (SDPA) do not expose.
                Defaults to `config.output_attentions`.
            output_hidden_states (`bool`, *optional*):
                Return the towers' hidden states. Defaults to `config.output_hidden_states`.
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
        check_pixel_values(pixel_values)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        with towers_exposing_attentions(self, output_attentions):
            return self._forward(pixel_values, labels, output_attentions, output_hidden_states, return_dict,
                                 num_items_in_batch)

    def _forward(self, pixel_values, labels, output_attentions, output_hidden_states, return_dict, num_items_in_batch):
        image_memory, image_tower = self._encode_image(pixel_values, output_attentions, output_hidden_states)
        loss = None
        if labels is not None:
            labels = labels.to(image_memory.device)
            _check_labels_have_characters(labels, self.config)
            batch = permuted_batch(labels, self.config, seeded=not self.training)
            reading = permutation_reading(self, image_memory, batch, output_attentions)
            loss = permutation_loss(
                reading.visual_logits, reading.logits, batch.targets, self.config, num_items_in_batch
            )
            reading.visual_logits, reading.logits = reading.visual_logits[:, 0], reading.logits[:, 0]  # left to right
        else:
            loop = ReadingLoop(TorchBackend(self, encoded=True), self.config)
            reading = loop.predict(image_memory, self.config.refine_iters, self.config.decode_ar, output_attentions)
        text_tower = None
        if output_attentions or output_hidden_states:
            text_tower = self.text_model(
                input_ids=reading.captions.input_ids,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
            )
        output = CLIP4STROutput(
            loss=loss,
            logits=reading.logits,
            visual_logits=reading.visual_logits,
            image_memory=image_memory,
            hidden_states=image_tower.hidden_states if output_hidden_states else None,
            attentions=image_tower.attentions if output_attentions else None,
            text_hidden_states=text_tower.hidden_states if output_hidden_states else None,
            text_attentions=text_tower.attentions if output_attentions else None,
            visual_decoder_attentions=reading.visual_attentions,
            cross_decoder_attentions=reading.cross_attentions,
        )
        return output if return_dict else output.to_tuple()

    def attention_maps(self, decoder_attentions: tuple[torch.Tensor, ...], layer: int = -1) -> torch.FloatTensor:
        """Where each character position looked in the image: `[B, positions, H_patches, W_patches]` heat maps of
        `decoder_attentions` (from `model(pixel_values, output_attentions=True)`); see [`attention_maps`]."""
        return attention_maps(self.config, decoder_attentions, layer)

    @classmethod
    def from_clip(cls, pretrained_model_name_or_path, caption_tokenizer=None, **config_overrides):
        """A new CLIP4STR (fresh decoders) on a Hugging Face CLIP checkpoint; see [`model_from_clip`]."""
        return model_from_clip(cls, pretrained_model_name_or_path, caption_tokenizer, **config_overrides)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        caption_tokenizer = kwargs.pop("caption_tokenizer", None)
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS + ("subfolder",) if key in kwargs}
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if kwargs.get("output_loading_info") else loaded
        model.freeze_text_layers()  # loading replaces parameters, which resets `requires_grad`
        align_generation_config(model)  # directories saved by earlier versions carry the CLIP tower's ids
        attach_caption_tokenizer(model, pretrained_model_name_or_path, caption_tokenizer, hub_kwargs)
        return loaded

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


def _check_labels_have_characters(labels: torch.LongTensor, config) -> None:
    """Refuse a batch whose labels are all empty: no order of an empty word can be taught."""
    is_char = (labels > config.eos_token_id) & (labels < config.bos_token_id)
    if not bool(is_char.any()):
        raise ValueError(
            "Every label of this batch is empty (no character before `[E]`), so there is nothing to learn from it. "
            "Drop samples with empty labels before batching (the training data's label rule does)."
        )


__all__ = [
    "CLIP4STRPreTrainedModel",
    "CLIP4STRForSceneTextRecognition",
    "CLIP4STROutput",
    "CLIP4STRGenerateOutput",
]
