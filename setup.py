"""CLIP4STR for Hugging Face transformers: model, processor, pipeline, checkpoint conversion and training."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# torch is pinned loosely on purpose: any 2.x build the user already has (CPU or CUDA) is fine.
CORE = [
    "torch>=2.4,<3",
    "transformers>=5.0,<6",
    "safetensors>=0.4",
    "tokenizers>=0.21",
    "Pillow>=10",
    "numpy>=1.24",
]
TRAINING = [
    "accelerate>=1.0",
    "datasets>=3.0",
    "evaluate>=0.4",
    "lmdb>=1.4",  # the STR community's LMDB training and benchmark sets
    "kornia>=0.8",  # RandAugment-style augmentation on tensors, without torchvision
    "pyyaml>=6",  # YAML argument files for run_str.py
    "matplotlib>=3.8",  # its bundled TrueType fonts render the demo's synthetic word images
    "pretix-fontpack-free>=1.11",  # ~130 open-licence TrueType files (OFL, Apache, UFL) for synth's realistic style
    "wordfreq>=3.0",  # English and Vietnamese word-frequency lists: the realistic style's real words
    "tensorboard>=2.14",  # --report_to tensorboard (transformers' callback writes through torch.utils.tensorboard)
]
# Export to ONNX and read without torch (the clip4str_onnx package: export_onnx, onnx_clip4str); tested with onnx
# 1.23 and onnxruntime 1.32. Exporting uses torch's TorchScript-based exporter, so `onnxscript` is not needed.
ONNX = ["onnx>=1.16", "onnxruntime>=1.18"]
# benchmarks/bench_real.py only: PP-OCRv6 small, the recogniser bundled in the rapidocr wheel (tested with 3.10), as
# the comparison on real word crops. rapidocr leaves the runtime to the user, hence onnxruntime; it reads images with
# OpenCV (the headless build: no GUI libraries). Not needed by the model, training or the demo.
BENCH = ["rapidocr>=3.10,<4", "onnxruntime>=1.18", "opencv-python-headless>=4.8"]
DEV = ["pytest>=8", "pytest-timeout>=2.3", "parameterized>=0.9"]  # parameterized: transformers' common model tests

setup(
    name="clip4str-hf",
    version="0.1.0",
    description="CLIP4STR scene text recognition for Hugging Face transformers",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(
        include=[
            "modeling_clip4str", "modeling_clip4str.*", "clip4str_onnx", "clip4str_onnx.*", "training", "training.*",
        ]
    ),
    package_data={"training": ["evaluation/metrics/*/*.py"]},
    install_requires=CORE,
    extras_require={"training": TRAINING, "onnx": ONNX, "bench": BENCH, "dev": TRAINING + ONNX + DEV},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
