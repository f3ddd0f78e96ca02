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


__all__ = [
    "CAPTION_TOKENIZER_FOLDER",
    "CUSTOM_PIPELINES",
    "HUB_KWARGS",
    "PIPELINE_FILE",
    "load_caption_tokenizer",
    "name_pipeline_in_config",
    "save_beside_weights",
    "upload_directory",
]
