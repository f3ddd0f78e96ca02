"""Configuration of CLIP4STR: two CLIP towers plus a visual and a cross-modal character decoder."""

from __future__ import annotations

import copy

from transformers import CLIPTextConfig, CLIPVisionConfig, PreTrainedConfig

from .reading_clip4str import ReadingSizes


# The 94 printable ASCII characters, in the order that fixes the token ids of every released checkpoint.
CHARSET_94 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
# What the released models feed to the CLIP text encoder (and the 36-character benchmark protocol).
CHARSET_36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def clip_tower_config(hidden_size: int, num_layers: int, **extra) -> dict:
    """Settings of one CLIP tower (vision or text) as the reference builds them: `num_attention_heads` =
    `hidden_size // 64`, MLP width 4x, QuickGELU, LayerNorm eps 1e-5. `extra` adds or overrides fields (e.g.
    `image_size=`, `patch_size=`, `vocab_size=`, or `num_attention_heads=` for a tiny test tower).

    The reference uses these heads and QuickGELU for every release, including the ones started from OpenCLIP weights
    (whose ViT-H/14 normally has 16 heads).
    """
    return {
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": max(1, hidden_size // 64),
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        **extra,
    }


# Shapes of the released CLIP4STR models. Every one uses one decoder layer with 8 heads and MLP ratio 4.
PRESETS: dict[str, dict] = {
    "clip4str-b16": {
        "vision_config": clip_tower_config(768, 12, image_size=224, patch_size=16, projection_dim=512),
        "text_config": clip_tower_config(512, 12, vocab_size=49408, max_position_embeddings=77, projection_dim=512),
        "projection_dim": 512,
    },
    "clip4str-b32": {
        "vision_config": clip_tower_config(768, 12, image_size=224, patch_size=32, projection_dim=512),
        "text_config": clip_tower_config(512, 12, vocab_size=49408, max_position_embeddings=77, projection_dim=512),
        "projection_dim": 512,
    },
    "clip4str-l14": {
        "vision_config": clip_tower_config(1024, 24, image_size=224, patch_size=14, projection_dim=768),
        "text_config": clip_tower_config(768, 12, vocab_size=49408, max_position_embeddings=77, projection_dim=768),
        "projection_dim": 768,
    },
    "clip4str-h14": {
        "vision_config": clip_tower_config(1280, 32, image_size=224, patch_size=14, projection_dim=1024),
        "text_config": clip_tower_config(1024, 24, vocab_size=49408, max_position_embeddings=77, projection_dim=1024),
        "projection_dim": 1024,
    },
}


BENCHMARK_PROTOCOLS = ("pipeline", "reference")
"""The ways `training.evaluate_str` can score a model (its `--protocol`; see the README's Evaluate section)."""


class CLIP4STRConfig(ReadingSizes, PreTrainedConfig):
    r"""
    Configuration of [`CLIP4STRForSceneTextRecognition`]. The defaults are CLIP4STR-B (CLIP ViT-B/16 towers) as
    released; [`CLIP4STRConfig.from_preset`] gives the other released shapes.

    Args:
        vision_config (`dict` or `CLIPVisionConfig`, *optional*):
            The CLIP image tower. Defaults to ViT-B/16 at 224x224 with QuickGELU.
        text_config (`dict` or `CLIPTextConfig`, *optional*):
            The CLIP text tower. Defaults to the 12-layer, 512-wide CLIP text transformer.
        projection_dim (`int`, defaults to 512):
            The joint width `D`: both towers are projected to it and both decoders work at it.
        input_size (`list[int]`, *optional*):
            `[height, width]` of the images the model reads, when they differ from the vision tower's square
            `image_size` (e.g. `[32, 128]` for word images): the tower's position table is then resized (bicubic) to
            the `height / patch x width / patch` grid at every forward. Defaults to the square `image_size`, as the
            released models use.
        decoder_num_heads (`int`, defaults to 8), decoder_mlp_ratio (`int`, defaults to 4),
        decoder_num_layers (`int`, defaults to 1), decoder_dropout (`float`, defaults to 0.1),
        decoder_layer_norm_eps (`float`, defaults to 1e-5):
            Shape of the two PARSeq-style two-stream decoders (visual and cross-modal; same shape, own weights).
        charset (`str`):
            The characters the model reads, in token-id order: `[E]` = 0, `charset[i]` = i + 1, `[B]` = C + 1,
            `[P]` = C + 2. Any Unicode characters may be used.
        max_label_length (`int`, defaults to 25):
            The longest word the model reads; decoding runs `max_label_length + 1` steps.
        context_length (`int`, defaults to 16):
            Number of CLIP BPE positions of the caption fed to the text tower.
        caption_charset (`str`):
            Characters kept when the visual prediction becomes a caption for the text tower. If it has no upper
            case the caption is lower-cased first.
        refine_iters (`int`, defaults to 1):
            Cloze-style refinement passes after left-to-right decoding.
        decode_ar (`bool`, defaults to `True`):
            Left-to-right (autoregressive) decoding; `False` predicts every position at once from `[B]` alone.
        perm_num (`int`, defaults to 6), perm_forward (`bool`), perm_mirrored (`bool`):
            Permuted sequence modelling in training: how many orders, whether the left-to-right order is always
            one of them, and whether sampled orders come with their mirror image.
        cross_loss_weight (`float`, defaults to 1.0):
            Weight of the cross-modal branch's loss.
        num_frozen_text_layers (`int`, *optional*):
            The text tower's token and position embeddings and its first `num_frozen_text_layers` layers are frozen.
            -1 freezes nothing; a value equal to the number of text layers freezes the whole text tower. Defaults to
            6 (the released models' setting) for text towers of 12 layers or more, half the layers otherwise.
        benchmark_protocol (`str`, defaults to `"pipeline"`):
            How `training.evaluate_str` scores this model unless told otherwise (`--protocol auto`): `"reference"`
            reproduces the reference's test.py, which produced the published numbers of the converted checkpoints
            (the converter writes it); `"pipeline"` reads the model as the pipeline and training-time evaluation do
            (its processor, its caption charset), as for models trained with this package.
    """

    model_type = "clip4str"
    sub_configs_defaults = {"vision_config": CLIPVisionConfig, "text_config": CLIPTextConfig}

    vision_config: dict | CLIPVisionConfig | None = None
    text_config: dict | CLIPTextConfig | None = None
    projection_dim: int = 512
    input_size: list[int] | None = None
    decoder_num_heads: int = 8
    decoder_mlp_ratio: int = 4
    decoder_num_layers: int = 1
    decoder_dropout: float = 0.1
    decoder_layer_norm_eps: float = 1e-5
    charset: str = CHARSET_94
    max_label_length: int = 25
    context_length: int = 16
    caption_charset: str = CHARSET_36
    refine_iters: int = 1
    decode_ar: bool = True
    perm_num: int = 6
    perm_forward: bool = True
    perm_mirrored: bool = True
    cross_loss_weight: float = 1.0
    num_frozen_text_layers: int | None = None
    initializer_range: float = 0.02
    benchmark_protocol: str = "pipeline"

    def __post_init__(self, **kwargs):
        preset = PRESETS["clip4str-b16"]
        if self.vision_config is None:
            self.vision_config = copy.deepcopy(preset["vision_config"])
        if self.text_config is None:
            self.text_config = copy.deepcopy(preset["text_config"])
        super().__post_init__(**kwargs)
        if self.num_frozen_text_layers is None:
            depth = self.text_config.num_hidden_layers
            self.num_frozen_text_layers = 6 if depth >= 12 else depth // 2
        self._validate()

    def _validate(self) -> None:
        if self.input_size is not None:
            self.input_size = [int(v) for v in self.input_size]
            patch = self.vision_config.patch_size
            if len(self.input_size) != 2 or any(v < patch or v % patch for v in self.input_size):
                raise ValueError(
                    f"`input_size` must be [height, width], both multiples of the patch size {patch}, got "
                    f"{self.input_size}."
                )
            if self.input_size == [self.vision_config.image_size] * 2:
                self.input_size = None
        if not self.charset:
            raise ValueError("`charset` must hold at least one character.")
        if len(set(self.charset)) != len(self.charset):
            seen, repeated = set(), []
            for char in self.charset:
                if char in seen and char not in repeated:
                    repeated.append(char)
                seen.add(char)
            raise ValueError(f"`charset` lists characters more than once: {''.join(repeated)!r}.")
        if self.max_label_length < 1:
            raise ValueError(f"`max_label_length` must be positive, got {self.max_label_length}.")
        if self.projection_dim % self.decoder_num_heads != 0:
            raise ValueError(
                f"`projection_dim` ({self.projection_dim}) must be divisible by `decoder_num_heads` "
                f"({self.decoder_num_heads})."
            )
        if self.context_length < 2 or self.context_length > self.text_config.max_position_embeddings:
            raise ValueError(
                f"`context_length` must lie in [2, {self.text_config.max_position_embeddings}] (the text tower's "
                f"positions), got {self.context_length}."
            )
        if isinstance(self.refine_iters, bool) or not isinstance(self.refine_iters, int) or self.refine_iters < 0:
            raise ValueError(f"`refine_iters` must be an integer >= 0, got {self.refine_iters!r}.")
        if not isinstance(self.decode_ar, bool):
            raise ValueError(f"`decode_ar` must be True or False, got {self.decode_ar!r}.")
        if self.perm_num < 1:
            raise ValueError(f"`perm_num` must be >= 1, got {self.perm_num}.")
        if self.perm_mirrored and self.perm_num < 2 and not self.perm_forward:
            raise ValueError(
                "With `perm_mirrored=True` and `perm_forward=False`, `perm_num` must be at least 2 (orders come in "
                "mirrored pairs); got 1, which leaves no order to train with."
            )
        if self.benchmark_protocol not in BENCHMARK_PROTOCOLS:
            raise ValueError(
                f"`benchmark_protocol` must be one of {', '.join(BENCHMARK_PROTOCOLS)}, got {self.benchmark_protocol!r}."
            )
        if self.num_frozen_text_layers > self.text_config.num_hidden_layers:
            raise ValueError(
                f"`num_frozen_text_layers` ({self.num_frozen_text_layers}) exceeds the text tower's "
                f"{self.text_config.num_hidden_layers} layers."
            )

    # Special token ids follow from the charset, so they are derived rather than stored. They can still be assigned
    # (generic code does, and a config.json written by other tools may name them) as long as the value is the derived
    # one; any other value would make the model read different ids than it writes, so it is refused.
    @property
    def eos_token_id(self) -> int:
        return 0

    @eos_token_id.setter
    def eos_token_id(self, value) -> None:
        self._check_derived_id("eos_token_id", value, "`[E]` is always id 0")

    @property
    def bos_token_id(self) -> int:
        return len(self.charset) + 1

    @bos_token_id.setter
    def bos_token_id(self, value) -> None:
        self._check_derived_id("bos_token_id", value, "`[B]` is len(charset) + 1")

    @property
    def pad_token_id(self) -> int:
        return len(self.charset) + 2

    @pad_token_id.setter
    def pad_token_id(self, value) -> None:
        self._check_derived_id("pad_token_id", value, "`[P]` is len(charset) + 2")

    def _check_derived_id(self, name: str, value, rule: str) -> None:
        expected = getattr(self, name)
        if value != expected:
            raise ValueError(
                f"CLIP4STR derives `{name}` from the charset ({rule}): it is {expected} for this "
                f"{len(self.charset)}-character charset, so it cannot be set to {value!r}. Change `charset` instead."
            )

    def get_text_config(self, decoder=None, encoder=None) -> "CLIP4STRConfig":
        """The text this model reads and writes is its character sequence, which this config describes (charset,
        `[E]` / `[B]` / `[P]` ids). `text_config` only configures the CLIP tower that encodes captions; handing it out
        here would let `Trainer` and the generation utilities overwrite that tower's BPE token ids with character
        ids."""
        return self

    @property
    def image_input_size(self) -> tuple[int, int]:
        """`(height, width)` of the `pixel_values` the model reads."""
        if self.input_size is not None:
            return tuple(self.input_size)
        return (self.vision_config.image_size, self.vision_config.image_size)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CLIP4STRConfig":
        """Config of a released shape: `"clip4str-b16"`, `"clip4str-b32"`, `"clip4str-l14"` or `"clip4str-h14"`.

        Keyword arguments override top-level fields (e.g. `charset=...`, `decoder_num_heads=4`).
        """
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}.")
        values = copy.deepcopy(PRESETS[name])
        values.update(overrides)
        return cls(**values)


__all__ = ["BENCHMARK_PROTOCOLS", "CLIP4STRConfig", "CHARSET_94", "CHARSET_36", "PRESETS", "clip_tower_config"]
