"""Convert a released CLIP4STR checkpoint (reference implementation) into a Hugging Face model directory.

    python -m modeling_clip4str.convert_clip4str_original_to_hf CHECKPOINT OUTPUT_DIR --clip-tokenizer PATH_OR_HUB_ID

CHECKPOINT is a Lightning `.ckpt` (`{"state_dict", "hyper_parameters"}`) or a bare `.pt` state dict. The CLIP
tower shapes are read from the tensors; settings a bare state dict cannot carry default to the released models'
and can be given on the command line (e.g. `--decoder-num-heads 4`).

The saved processor normalises with CLIP's mean and std, as the reference trained and validated the weights
(`--normalization reference-test`: 0.5 per channel, as the reference's test.py and read.py read). Either way the
model records `benchmark_protocol="reference"`, so `training.evaluate_str` scores it as test.py did by default.
"""

from __future__ import annotations

import argparse
import re
import sys

import torch

from .configuration_clip4str import CHARSET_36, CHARSET_94, CLIP4STRConfig, clip_tower_config
from .image_processing_clip4str import NORMALIZATIONS
from .original_checkpoint_clip4str import (
    CONVERTED_SETTINGS,
    ConversionError,
    check_finite,
    conversion_setting_origins,
    convert_state_dict,
    infer_setting_origins,
    load_checkpoint,
)

# Reference settings whose other values change the architecture or the computation this project implements.
_REQUIRED_HYPERPARAMETERS = {
    "use_language_model": True,
    "use_share_dim": True,
    "clip_cls_eot_feature": False,
    "cross_token_embeding": False,
    "cross_gt_context": True,
    "cross_cloze_mask": False,
    "image_detach": True,
}
# --- configuration ------------------------------------------------------------------------------------------------
def _count_layers(state_dict: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(match.group(1)) for key in state_dict if (match := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def _require(state_dict: dict, key: str) -> torch.Tensor:
    if key not in state_dict:
        raise ConversionError(f"The checkpoint lacks {key!r}; is it a CLIP4STR checkpoint with ViT towers?")
    return state_dict[key]


def _check_width(state_dict: dict, tower: str, width: int, tensors: dict[str, int]) -> None:
    """Every tensor of `tensors` (key -> the axis that carries the tower's width) must agree with `width`."""
    if width < 1:
        raise ConversionError(f"The {tower} tower's width is {width}; the checkpoint's tensors are damaged.")
    for key, axis in tensors.items():
        shape = tuple(_require(state_dict, key).shape)
        if len(shape) <= axis or shape[axis] != width:
            raise ConversionError(
                f"The {tower} tower's tensors disagree on its width: {key} has shape {shape}, but the tower is "
                f"{width} wide; the checkpoint is damaged or not a CLIP4STR checkpoint."
            )


def infer_config(state_dict: dict, hyper_parameters: dict, **overrides) -> CLIP4STRConfig:
    """The config of a reference checkpoint: tower shapes from the tensors, the rest from its hyper-parameters (or
    the released defaults), then `overrides` (config field names)."""
    for name, expected in _REQUIRED_HYPERPARAMETERS.items():
        if name in hyper_parameters and hyper_parameters[name] != expected:
            raise ConversionError(
                f"The checkpoint was trained with {name}={hyper_parameters[name]!r}; only {name}={expected!r} "
                "(the released CLIP4STR setting) is supported."
            )
    conv = _require(state_dict, "clip_model.visual.conv1.weight")
    vision_width, patch = conv.shape[0], conv.shape[-1]
    num_patches = _require(state_dict, "clip_model.visual.positional_embedding").shape[0] - 1
    grid = round(num_patches**0.5)
    if grid * grid != num_patches:
        raise ConversionError(f"The image tower has {num_patches} patch positions, not a square grid.")
    vision_layers = _count_layers(state_dict, "clip_model.visual.transformer.resblocks.")
    token_embedding = _require(state_dict, "clip_model.token_embedding.weight")
    if token_embedding.dim() != 2:
        raise ConversionError(f"clip_model.token_embedding.weight has shape {tuple(token_embedding.shape)}, not 2-D.")
    text_width = token_embedding.shape[1]
    text_layers = _count_layers(state_dict, "clip_model.transformer.resblocks.")
    positions = _require(state_dict, "clip_model.positional_embedding").shape[0]
    projection_dim = _require(state_dict, "clip_model.visual.proj").shape[1]
    vision_mlp = _require(state_dict, "clip_model.visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0]
    text_mlp = _require(state_dict, "clip_model.transformer.resblocks.0.mlp.c_fc.weight").shape[0]

    _check_width(state_dict, "image", vision_width, {
        "clip_model.visual.class_embedding": 0,
        "clip_model.visual.positional_embedding": 1,
        "clip_model.visual.ln_post.weight": 0,
        "clip_model.visual.proj": 0,
    })
    _check_width(state_dict, "text", text_width, {
        "clip_model.ln_final.weight": 0,
        "clip_model.ln_final.bias": 0,
        "clip_model.positional_embedding": 1,
        "clip_model.text_projection": 0,
    })
    pos_queries = _require(state_dict, "visual_decoder.pos_queries")
    decoder_layers = _count_layers(state_dict, "visual_decoder.layers.")
    decoder_mlp = _require(state_dict, "visual_decoder.layers.0.linear1.weight").shape[0]
    num_classes = _require(state_dict, "visual_decoder.head.weight").shape[0]

    hp = hyper_parameters
    values = {
        "vision_config": clip_tower_config(
            vision_width,
            vision_layers,
            intermediate_size=vision_mlp,
            image_size=grid * patch,
            patch_size=patch,
            projection_dim=projection_dim,
        ),
        "text_config": clip_tower_config(
            text_width,
            text_layers,
            intermediate_size=text_mlp,
            vocab_size=token_embedding.shape[0],
            max_position_embeddings=positions,
            projection_dim=projection_dim,
        ),
        "projection_dim": projection_dim,
        "decoder_num_layers": decoder_layers,
        "decoder_mlp_ratio": decoder_mlp // projection_dim,
        "decoder_num_heads": hp.get("dec_num_heads", 8),
        "decoder_dropout": hp.get("dropout", 0.1),
        "charset": hp.get("charset_train", CHARSET_94),
        "caption_charset": hp.get("charset_test", CHARSET_36),
        "max_label_length": hp.get("max_label_length", pos_queries.shape[1] - 1),
        "context_length": hp.get("context_length", 16),
        "refine_iters": hp.get("refine_iters", 1),
        "decode_ar": hp.get("decode_ar", True),
        "perm_num": hp.get("perm_num", 6),
        "perm_forward": hp.get("perm_forward", True),
        "perm_mirrored": hp.get("perm_mirrored", True),
        "cross_loss_weight": hp.get("cross_loss_w", 1.0),
        "num_frozen_text_layers": min(hp.get("text_freeze_nlayer", 6), text_layers),
        # The published numbers of these weights are test.py's: evaluate_str reproduces it unless told otherwise.
        "benchmark_protocol": "reference",
    }
    values.update({key: value for key, value in overrides.items() if value is not None})
    if decoder_mlp % projection_dim:
        raise ConversionError(f"Decoder MLP width {decoder_mlp} is not a multiple of the joint width {projection_dim}.")
    if values["max_label_length"] + 1 != pos_queries.shape[1]:
        raise ConversionError(
            f"max_label_length={values['max_label_length']} needs {values['max_label_length'] + 1} position queries, "
            f"the checkpoint has {pos_queries.shape[1]}."
        )
    if len(values["charset"]) + 1 != num_classes:
        raise ConversionError(
            f"The charset has {len(values['charset'])} characters but the checkpoint's heads predict {num_classes} "
            f"classes (charset + [E]); give the charset it was trained with (--charset)."
        )
    try:
        return CLIP4STRConfig(**values)
    except ValueError as error:
        raise ConversionError(f"The checkpoint's settings do not make a valid CLIP4STR config: {error}") from error


def build_model(state_dict: dict, config: CLIP4STRConfig):
    """A `CLIP4STRForSceneTextRecognition` holding the converted weights; fails on missing, unexpected or mis-shaped
    keys, naming them."""
    from .modeling_clip4str import CLIP4STRForSceneTextRecognition

    converted = convert_state_dict(state_dict)
    model = CLIP4STRForSceneTextRecognition(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    mismatched = sorted(
        f"{key} (checkpoint {tuple(converted[key].shape)}, model {tuple(expected[key].shape)})"
        for key in set(expected) & set(converted)
        if converted[key].shape != expected[key].shape
    )
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected: " + ", ".join(unexpected))
    if mismatched:
        problems.append("mis-shaped: " + ", ".join(mismatched))
    if problems:
        raise ConversionError("The checkpoint does not fit the inferred model; " + "; ".join(problems) + ".")
    model.load_state_dict({key: value.to(expected[key].dtype) for key, value in converted.items()}, strict=True)
    return model.eval()


def convert(
    checkpoint: str,
    output_dir: str | None = None,
    clip_tokenizer: str = "openai/clip-vit-base-patch16",
    allow_unsafe_pickle: bool = False,
    normalization: str = "clip",
    **config_overrides,
):
    """Convert `checkpoint`; save model (with its caption tokenizer) and processor to `output_dir` if given. Returns
    `(model, processor)`. `normalization` names the processor's mean and std ("clip" or "reference-test", see
    [`~image_processing_clip4str.NORMALIZATIONS`]). Every problem with the checkpoint (missing, damaged or not a checkpoint; NaN or infinite
    weights; shapes that do not fit) or with the CLIP tokenizer (missing files, not CLIP's) raises
    [`ConversionError`] naming the file, tensor or id."""
    from transformers import CLIPTokenizer

    from .processing_clip4str import CLIP4STRProcessor

    state_dict, hyper_parameters = load_checkpoint(checkpoint, allow_unsafe_pickle=allow_unsafe_pickle)
    check_finite(state_dict)
    config = infer_config(state_dict, hyper_parameters, **config_overrides)
    model = build_model(state_dict, config)
    try:
        model.set_caption_tokenizer(CLIPTokenizer.from_pretrained(clip_tokenizer))
    except (OSError, ValueError) as error:
        raise ConversionError(
            f"Could not use {clip_tokenizer!r} as the caption tokenizer: {error} Pass --clip-tokenizer with a folder "
            "holding a CLIP BPE tokenizer (vocab.json and merges.txt, or tokenizer.json; every CLIP model has the "
            "same one), or a Hub id when online."
        ) from error
    processor = CLIP4STRProcessor.from_config(config, normalization=normalization)
    origins = conversion_setting_origins(hyper_parameters, config_overrides)
    _say_what_was_assumed(config, origins)
    if output_dir is not None:
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        write_model_card(output_dir, config, checkpoint, origins, clip_tokenizer,
                         processor.image_processor.normalization)
    return model, processor


def write_model_card(output_dir, config, checkpoint, setting_origins, clip_tokenizer, normalization) -> None:
    """The converted model's README.md (the card writer lives with the training code's, imported only here)."""
    from training.evaluation.model_card import write_converted_model_card

    write_converted_model_card(output_dir, config, checkpoint, setting_origins=setting_origins,
                               clip_tokenizer=clip_tokenizer, normalization=normalization)


def _say_what_was_assumed(config, setting_origins: dict[str, str]) -> None:
    """Print the settings that neither the checkpoint recorded nor the caller gave (a bare state dict records none):
    the released models' values were used for them, and a model trained otherwise would read wrongly."""
    assumed = [name for name, origin in setting_origins.items() if origin == "assumed"]
    if assumed:
        values = ", ".join(f"{name}={getattr(config, name)!r}" for name in assumed)
        print(
            f"Assumed (not recorded in the checkpoint, not given): {values}. These are the released models' "
            "settings; pass them on the command line (e.g. --decoder-num-heads) if the checkpoint was trained "
            "otherwise.",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modeling_clip4str.convert_clip4str_original_to_hf",
        description="Convert a released CLIP4STR checkpoint (.ckpt or .pt) into a Hugging Face model directory.",
    )
    parser.add_argument("checkpoint", help="the reference checkpoint: Lightning .ckpt or bare .pt state dict")
    parser.add_argument("output_dir", help="where to write the model, processor and tokenizers")
    parser.add_argument(
        "--clip-tokenizer",
        default="openai/clip-vit-base-patch16",
        help="directory or Hub id of a CLIP BPE tokenizer (vocab.json + merges.txt or tokenizer.json); all CLIP "
        "models share it (default: %(default)s)",
    )
    parser.add_argument(
        "--allow-unsafe-pickle",
        action="store_true",
        help="load a checkpoint that needs arbitrary unpickling (only for files from a source you trust)",
    )
    parser.add_argument(
        "--normalization",
        choices=sorted(NORMALIZATIONS),
        default="clip",
        help="what the saved processor normalises with: 'clip' (CLIP's mean and std, as the reference trained and "
        "validated the weights) or 'reference-test' (0.5 per channel, as the reference's test.py and read.py read) "
        "(default: %(default)s)",
    )
    group = parser.add_argument_group("settings a bare state dict cannot carry (default: the released models')")
    group.add_argument("--decoder-num-heads", type=int, help="decoder attention heads (released: 8)")
    group.add_argument("--charset", help="the training charset, in token-id order (released: 94 ASCII characters)")
    group.add_argument("--caption-charset", help="characters kept in captions (released: 36 lowercase alphanumerics)")
    group.add_argument("--max-label-length", type=int, help="longest word (released: 25)")
    group.add_argument("--context-length", type=int, help="caption BPE positions (released: 16)")
    group.add_argument("--refine-iters", type=int, help="refinement passes (released: 1)")
    args = parser.parse_args(argv)
    overrides = {
        "decoder_num_heads": args.decoder_num_heads,
        "charset": args.charset,
        "caption_charset": args.caption_charset,
        "max_label_length": args.max_label_length,
        "context_length": args.context_length,
        "refine_iters": args.refine_iters,
    }
    try:
        model, _ = convert(
            args.checkpoint,
            args.output_dir,
            clip_tokenizer=args.clip_tokenizer,
            allow_unsafe_pickle=args.allow_unsafe_pickle,
            normalization=args.normalization,
            **overrides,
        )
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    config = model.config
    print(
        f"Converted {args.checkpoint} -> {args.output_dir}: image {config.vision_config.image_size}px patch "
        f"{config.vision_config.patch_size}, vision {config.vision_config.hidden_size}x"
        f"{config.vision_config.num_hidden_layers}, text {config.text_config.hidden_size}x"
        f"{config.text_config.num_hidden_layers}, D={config.projection_dim}, {len(config.charset)} characters."
    )
    return 0


__all__ = [
    "CONVERTED_SETTINGS", "ConversionError", "build_model", "check_finite", "convert", "convert_state_dict",
    "infer_config", "infer_setting_origins", "load_checkpoint", "main",
]


if __name__ == "__main__":
    sys.exit(main())
