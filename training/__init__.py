"""Training, data and evaluation code for CLIP4STR (used by `run_str.py` and `evaluate_str.py`)."""
