"""What a saved CLIP4STR directory holds besides weights and config: the caption tokenizer (the model's, since
`generate` needs it) and the pipeline code, so that the directory also serves `pipeline(..., trust_remote_code=True)`.
"""

from __future__ import annotations

import copy
import os
import shutil

from transformers.utils import logging

logger = logging.get_logger(__name__)

CAPTION_TOKENIZER_FOLDER = "caption_tokenizer"
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
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "proxies")
_PIPELINE_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), PIPELINE_FILE)


def name_pipeline_in_config(config) -> None:
    """Add the `custom_pipelines` entry to `config` (before it is saved), when the pipeline code is here to copy."""
    if os.path.isfile(_PIPELINE_SOURCE) and not getattr(config, "custom_pipelines", None):
        config.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES)


def save_beside_weights(save_directory, caption_tokenizer) -> None:
    """Write the caption tokenizer to `caption_tokenizer/` and copy the pipeline code into `save_directory`."""
    if caption_tokenizer is not None:
        caption_tokenizer.save_pretrained(os.path.join(save_directory, CAPTION_TOKENIZER_FOLDER))
    if os.path.isfile(_PIPELINE_SOURCE):
        shutil.copy(_PIPELINE_SOURCE, os.path.join(save_directory, PIPELINE_FILE))


def load_caption_tokenizer(path, subfolder: str = "", **hub_kwargs):
    """The tokenizer in `caption_tokenizer/` of a saved model (local or on the Hub), or `None` with a warning."""
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


def attach_caption_tokenizer(model, path, caption_tokenizer=None, hub_kwargs=None) -> None:
    """Give `model`, just loaded from `path`, `caption_tokenizer`, else the one saved in its `caption_tokenizer/`
    folder; a saved one that is not the text tower's is refused, naming the folder."""
    hub_kwargs = hub_kwargs or {}
    if caption_tokenizer is not None:
        model.set_caption_tokenizer(caption_tokenizer)
    elif path is not None:
        saved = load_caption_tokenizer(path, **hub_kwargs)
        if saved is not None:
            try:
                model.set_caption_tokenizer(saved)
            except ValueError as error:
                folder = "/".join(filter(None, [str(path), hub_kwargs.get("subfolder")]))
                raise ValueError(f"{folder}/{CAPTION_TOKENIZER_FOLDER} is broken: {error}") from error


def upload_directory(save_directory, repo_id, commit_message=None, token=None, private=None) -> None:
    """Upload a whole saved directory, once everything (weights, caption tokenizer, code) is in it."""
    from huggingface_hub import create_repo, upload_folder

    repo_id = create_repo(repo_id, exist_ok=True, token=token, private=private).repo_id
    upload_folder(
        repo_id=repo_id,
        folder_path=save_directory,
        commit_message=commit_message or "Upload CLIP4STR model",
        token=token,
    )


def model_from_clip(cls, pretrained_model_name_or_path, caption_tokenizer=None, **config_overrides):
    """A new `cls` model (fresh decoders) on a Hugging Face CLIP checkpoint: both towers, both projections and its
    BPE tokenizer, e.g. `from_clip("openai/clip-vit-base-patch16")` or a local `CLIPModel` directory.

    `caption_tokenizer` replaces the checkpoint's tokenizer (for a CLIP saved without its tokenizer files; a
    tokenizer that is not the text tower's is refused). `config_overrides` set [`CLIP4STRConfig`] fields
    (`charset=`, `max_label_length=`, ...). Hub arguments (`revision`, `cache_dir`, `token`, `local_files_only`)
    are passed on to the loaders.
    """
    from transformers import CLIPModel, CLIPTokenizer

    from .configuration_clip4str import CLIP4STRConfig

    hub_kwargs = {key: config_overrides.pop(key) for key in HUB_KWARGS if key in config_overrides}
    clip = CLIPModel.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
    config = CLIP4STRConfig(
        vision_config=clip.config.vision_config.to_dict(),
        text_config=clip.config.text_config.to_dict(),
        projection_dim=clip.config.projection_dim,
        **config_overrides,
    )
    if caption_tokenizer is None:
        caption_tokenizer = CLIPTokenizer.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
    model = cls(config, caption_tokenizer=caption_tokenizer)
    for name in ("vision_model", "text_model", "visual_projection", "text_projection"):
        getattr(model, name).load_state_dict(getattr(clip, name).state_dict())
    return model



__all__ = [
    "attach_caption_tokenizer",
    "model_from_clip",
    "CAPTION_TOKENIZER_FOLDER",
    "CUSTOM_PIPELINES",
    "HUB_KWARGS",
    "PIPELINE_FILE",
    "load_caption_tokenizer",
    "name_pipeline_in_config",
    "save_beside_weights",
    "upload_directory",
]
