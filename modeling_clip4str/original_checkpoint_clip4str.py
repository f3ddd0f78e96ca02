"""The reference implementation's checkpoint files, for [`~convert_clip4str_original_to_hf`]: loading one safely (a
missing, damaged or unsafe file is refused, naming the problem), its tensor names and layouts in this project's, and
which of the settings a bare state dict cannot carry the checkpoint recorded.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping

import torch

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


# --- settings --------------------------------------------------------------------------------------------------------
CONVERTED_SETTINGS = {
    "decoder_num_heads": "dec_num_heads",
    "charset": "charset_train",
    "caption_charset": "charset_test",
    "max_label_length": "max_label_length",
    "context_length": "context_length",
    "refine_iters": "refine_iters",
}
"""The settings a bare state dict cannot carry, as `{config field: the reference checkpoint's hyper-parameter}`:
what a converted card reports the origin of."""



def infer_setting_origins(
    hyper_parameter_names: Mapping[str, str], hyper_parameters: Mapping, overrides: Mapping
) -> dict[str, str]:
    """Where each config field of `hyper_parameter_names` (`{config field: hyper-parameter name}`) came from:
    "given" (a non-None override), "checkpoint" (present in `hyper_parameters`) or "assumed"."""
    origins = {}
    for field_name, hyper_parameter in hyper_parameter_names.items():
        if overrides.get(field_name) is not None:
            origins[field_name] = "given"
        elif hyper_parameter in hyper_parameters:
            origins[field_name] = "checkpoint"
        else:
            origins[field_name] = "assumed"
    return origins


def conversion_setting_origins(hyper_parameters: Mapping, overrides: Mapping) -> dict[str, str]:
    """Where each of [`CONVERTED_SETTINGS`] came from (see [`infer_setting_origins`]); the longest word, when not
    recorded, is read from the position queries' shape ("weights")."""
    origins = infer_setting_origins(CONVERTED_SETTINGS, hyper_parameters, overrides)
    if origins["max_label_length"] == "assumed":
        origins["max_label_length"] = "weights"
    return origins


__all__ = [
    "CONVERTED_SETTINGS", "ConversionError", "check_finite", "conversion_setting_origins", "convert_state_dict",
    "infer_setting_origins", "load_checkpoint",
]
