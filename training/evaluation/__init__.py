"""Evaluation of CLIP4STR readers: the benchmark loop behind `evaluate_str.py`, the comparison protocol and the
`str_accuracy` metric, the reference's benchmark protocols, character confusions, prediction grids, and the model
cards that report the results. Import the submodules; this package imports nothing itself (no torch, no datasets)."""
