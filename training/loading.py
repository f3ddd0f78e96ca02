"""Loading a saved CLIP4STR and its processor: the one loader of `training/run_str.py` (fine-tuning) and
`training/evaluate_str.py`."""

from __future__ import annotations

from transformers import AutoModel, AutoProcessor

import modeling_clip4str  # noqa: F401  (registers CLIP4STR with the Auto classes)


def load_model_and_processor(model_name_or_path: str, trust_remote_code: bool = False, **hub_kwargs):
    """`AutoModel` and `AutoProcessor` of a CLIP4STR directory or Hub id.

    This package's classes are registered with the Auto classes, so its own code is used unless `trust_remote_code`
    asks for the code saved with the checkpoint. `hub_kwargs` (`cache_dir`, `revision`, `token`) go to both
    `from_pretrained` calls.

    Returns:
        `(model, processor)`, the model in eval mode (as `from_pretrained` leaves it; the Trainer switches modes
        itself).
    """
    model = AutoModel.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs)
    processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs)
    return model, processor


__all__ = ["load_model_and_processor"]
