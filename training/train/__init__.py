"""Training CLIP4STR with the Hugging Face Trainer: `run_str.py`'s arguments, the Trainer subclass, resumable
checkpoints and augmentation."""
