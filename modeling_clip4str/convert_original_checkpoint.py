"""Convert a released CLIP4STR checkpoint (reference implementation) into a Hugging Face model directory.

    python -m modeling_clip4str.convert_original_checkpoint CHECKPOINT OUTPUT_DIR --clip-tokenizer PATH_OR_HUB_ID

CHECKPOINT is a Lightning `.ckpt` (`{"state_dict", "hyper_parameters"}`) or a bare `.pt` state dict. The CLIP
tower shapes are read from the tensors; settings a bare state dict cannot carry default to the released models'
and can be given on the command line (e.g. `--decoder-num-heads 4`).

The saved processor normalises with CLIP's mean and std, as the reference trained and validated the weights
(`--normalization reference-test`: 0.5 per channel, as the reference's test.py and read.py read). Either way the
model records `benchmark_protocol="reference"`, so `training.evaluate_str` scores it as test.py did by default.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
from collections.abc import Mapping

import torch

from .configuration_clip4str import CHARSET_36, CHARSET_94, CLIP4STRConfig, clip_tower_config
from .image_processing_clip4str import NORMALIZATIONS

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
# Keys of the reference that hold nothing this project uses.
_IGNORED_KEYS = {"clip_model.logit_scale"}


class ConversionError(ValueError):
    """The checkpoint cannot be converted; the message says why."""


# --- loading ---------------------------------------------------------------------------------------------------------
# What a file `torch.load` can read starts with: a zip archive (torch.save since 1.6) or a pickle (protocol 2+).
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_OPCODE = b"\x80"


def _check_checkpoint_file(path: str) -> None:
    """Refuse, naming `path`, a file that is missing, empty, or neither a zip archive nor a pickle."""
    if not os.path.exists(path):
        raise ConversionError(f"No checkpoint at {path}: the file does not exist.")
    if not os.path.isfile(path):
        raise ConversionError(f"{path} is not a file (a directory?); give the .ckpt or .pt file itself.")
    if os.path.getsize(path) == 0:
        raise ConversionError(f"{path} is empty (0 bytes): the download or copy did not complete.")
    with open(path, "rb") as handle:
        start = handle.read(4)
    if not (start.startswith(_ZIP_MAGIC) or start.startswith(_PICKLE_PROTOCOL_OPCODE)):
        raise ConversionError(
            f"{path} is not a PyTorch checkpoint: it starts with {start!r}, neither a zip archive (torch.save) nor a "
            "pickle. Is it the right file (not an HTML error page or a text file)?"
        )


def load_checkpoint(path: str, allow_unsafe_pickle: bool = False) -> tuple[dict, dict]:
    """`(state_dict, hyper_parameters)` of a reference checkpoint, loaded with `torch.load(weights_only=True)`.

    A missing, empty, truncated or corrupted file, or one that is not a checkpoint at all, raises
    [`ConversionError`] naming the file and the problem."""
    path = os.fspath(path)
    _check_checkpoint_file(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise ConversionError(f"{path} is corrupted: it cannot be unpickled ({_first_line(error)}).") from error
        if not allow_unsafe_pickle:
            raise ConversionError(
                f"{path} cannot be loaded safely: it holds Python objects beyond tensors and plain containers "
                f"({_first_line(error)}). Loading it would run arbitrary code from the file. If you trust its "
                "source, pass --allow-unsafe-pickle (allow_unsafe_pickle=True)."
            ) from error
        raw = _load_or_explain(path, weights_only=False)
    except Exception as error:  # torch reports damaged files as RuntimeError, EOFError, KeyError, ...
        raise _damaged(path, error) from error
    if not isinstance(raw, Mapping):
        raise ConversionError(f"{path} holds a {type(raw).__name__}, not a checkpoint dictionary.")
    hyper_parameters = raw.get("hyper_parameters") or {}
    if not isinstance(hyper_parameters, Mapping):  # e.g. an argparse.Namespace in an old, unsafely pickled file
        hyper_parameters = vars(hyper_parameters)
    hyper_parameters = dict(hyper_parameters)
    state_dict = raw["state_dict"] if "state_dict" in raw else raw
    state_dict = {key: value for key, value in state_dict.items() if isinstance(value, torch.Tensor)}
    if not state_dict:
        raise ConversionError(f"{path} holds no tensors.")
    return _strip_wrapper_prefix(state_dict), hyper_parameters


def _load_or_explain(path: str, weights_only: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:
        raise _damaged(path, error) from error


def _damaged(path: str, error: Exception) -> ConversionError:
    return ConversionError(
        f"{path} cannot be read as a PyTorch checkpoint; it is probably truncated or corrupted (an incomplete "
        f"download or copy?): {type(error).__name__}: {_first_line(error)}"
    )


def check_finite(state_dict: dict) -> None:
    """Refuse a state dict with NaN or infinite values, naming the tensors that hold them."""
    broken = sorted(
        f"{key} ({int((~torch.isfinite(tensor)).sum())} of {tensor.numel()})"
        for key, tensor in state_dict.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    )
    if broken:
        raise ConversionError(
            f"The checkpoint holds NaN or infinite weights, which would make every reading NaN: {', '.join(broken)}. "
            "Convert a checkpoint from before training diverged."
        )


def _strip_wrapper_prefix(state_dict: dict) -> dict:
    for prefix in ("module.", "model."):
        if all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix) :]: value for key, value in state_dict.items()}
    return state_dict


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


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


# --- weights ------------------------------------------------------------------------------------------------------
_CLIP_LAYER_RENAMES = [
    ("attn.out_proj.", "self_attn.out_proj."),
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
]
_DECODER_RENAMES = [("text_embed.embedding.", "token_embedding.")]


def _split_in_projection(prefix: str, name: str, tensor: torch.Tensor, attention: str) -> dict:
    """A packed `in_proj_weight`/`in_proj_bias` as separate q/k/v projections."""
    kind = "weight" if name.endswith("weight") else "bias"
    query, key, value = tensor.chunk(3, dim=0)
    return {
        f"{prefix}{attention}.q_proj.{kind}": query,
        f"{prefix}{attention}.k_proj.{kind}": key,
        f"{prefix}{attention}.v_proj.{kind}": value,
    }


def convert_state_dict(state_dict: dict) -> dict:
    """Reference (OpenAI CLIP layout + decoders) names and layouts -> this project's."""
    converted: dict[str, torch.Tensor] = {}
    unexpected = []
    for name, tensor in state_dict.items():
        if name in _IGNORED_KEYS:
            continue
        new = _convert_name(name, tensor)
        if new is None:
            unexpected.append(name)
        else:
            converted.update(new)
    if unexpected:
        raise ConversionError(f"Unexpected keys in the checkpoint: {', '.join(sorted(unexpected))}.")
    return converted


def _convert_name(name: str, tensor: torch.Tensor) -> dict | None:
    fixed = {
        "clip_model.visual.class_embedding": "vision_model.embeddings.class_embedding",
        "clip_model.visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
        "clip_model.visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
        "clip_model.token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "clip_model.positional_embedding": "text_model.embeddings.position_embedding.weight",
    }
    if name in fixed:
        return {fixed[name]: tensor}
    if name == "clip_model.visual.proj":  # applied as x @ proj
        return {"visual_projection.weight": tensor.t().contiguous()}
    if name == "clip_model.text_projection":
        return {"text_projection.weight": tensor.t().contiguous()}
    for old, new in (
        ("clip_model.visual.ln_pre.", "vision_model.pre_layrnorm."),
        ("clip_model.visual.ln_post.", "vision_model.post_layernorm."),
        ("clip_model.ln_final.", "text_model.final_layer_norm."),
    ):
        if name.startswith(old) and name[len(old) :] in ("weight", "bias"):
            return {new + name[len(old) :]: tensor}
    for old, new in (
        ("clip_model.visual.transformer.resblocks.", "vision_model.encoder.layers."),
        ("clip_model.transformer.resblocks.", "text_model.encoder.layers."),
    ):
        if name.startswith(old):
            index, rest = name[len(old) :].split(".", 1)
            prefix = f"{new}{index}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                return _split_in_projection(prefix, rest, tensor, "self_attn")
            for before, after in _CLIP_LAYER_RENAMES:
                if rest.startswith(before) and rest[len(before) :] in ("weight", "bias"):
                    return {prefix + after + rest[len(before) :]: tensor}
            return None
    for branch in ("visual_decoder.", "cross_decoder."):
        if name.startswith(branch):
            rest = name[len(branch) :]
            match = re.match(r"layers\.(\d+)\.(self_attn|cross_attn)\.(in_proj_weight|in_proj_bias)$", rest)
            if match:
                return _split_in_projection(f"{branch}layers.{match.group(1)}.", match.group(3), tensor, match.group(2))
            for before, after in _DECODER_RENAMES:
                if rest.startswith(before):
                    rest = after + rest[len(before) :]
            return {branch + rest: tensor}
    return None


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
    _say_what_was_assumed(config, hyper_parameters, config_overrides)
    if output_dir is not None:
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        from .model_card_clip4str import write_converted_model_card

        write_converted_model_card(output_dir, config, checkpoint, hyper_parameters=hyper_parameters,
                                   overrides=config_overrides, clip_tokenizer=clip_tokenizer,
                                   normalization=processor.image_processor.normalization)
    return model, processor


def _say_what_was_assumed(config, hyper_parameters: Mapping, overrides: Mapping) -> None:
    """Print the settings that neither the checkpoint recorded nor the caller gave (a bare state dict records none):
    the released models' values were used for them, and a model trained otherwise would read wrongly."""
    from .model_card_clip4str import CONVERTED_SETTINGS, infer_setting_origins

    origins = infer_setting_origins(CONVERTED_SETTINGS, hyper_parameters, overrides)
    assumed = [name for name, origin in origins.items() if origin == "assumed" and name != "max_label_length"]
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
        prog="python -m modeling_clip4str.convert_original_checkpoint",
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


if __name__ == "__main__":
    sys.exit(main())
