"""CLIP4STR for Hugging Face transformers.

Importing this package registers CLIP4STR with the Auto classes (`AutoConfig`, `AutoModel`, `AutoTokenizer`,
`AutoImageProcessor`, `AutoProcessor`) and the `"scene-text-recognition"` pipeline task. Saved models also carry
their code, so they load with `trust_remote_code=True` where this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoProcessor,
    AutoTokenizer,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_clip4str import CHARSET_36, CHARSET_94, PRESETS, CLIP4STRConfig, clip_tower_config
from .image_processing_clip4str import CLIP4STRImageProcessor, load_image, to_rgb_image
from .modeling_clip4str import (
    CLIP4STRForSceneTextRecognition,
    CLIP4STRGenerateOutput,
    CLIP4STROutput,
    CLIP4STRPreTrainedModel,
)
from .pipeline_clip4str import CLIP4STRPipeline
from .processing_clip4str import CLIP4STRProcessor
from .tokenization_clip4str import CLIP4STRTokenizer, UnknownCharacterError

__version__ = "0.1.0"

PIPELINE_TASK = "scene-text-recognition"

AutoConfig.register(CLIP4STRConfig.model_type, CLIP4STRConfig, exist_ok=True)
AutoModel.register(CLIP4STRConfig, CLIP4STRForSceneTextRecognition, exist_ok=True)
AutoTokenizer.register(CLIP4STRConfig, slow_tokenizer_class=CLIP4STRTokenizer, exist_ok=True)
AutoImageProcessor.register(CLIP4STRConfig, image_processor_classes={"pil": CLIP4STRImageProcessor}, exist_ok=True)
AutoProcessor.register(CLIP4STRConfig, CLIP4STRProcessor, exist_ok=True)
if PIPELINE_TASK not in PIPELINE_REGISTRY.get_supported_tasks():
    PIPELINE_REGISTRY.register_pipeline(
        PIPELINE_TASK, pipeline_class=CLIP4STRPipeline, pt_model=AutoModel, type="multimodal"
    )

# Saved models get `auto_map` entries and a copy of these modules, for `trust_remote_code=True` loading.
CLIP4STRConfig.register_for_auto_class()
CLIP4STRForSceneTextRecognition.register_for_auto_class("AutoModel")
CLIP4STRTokenizer.register_for_auto_class("AutoTokenizer")
CLIP4STRImageProcessor.register_for_auto_class("AutoImageProcessor")
CLIP4STRProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "CHARSET_36",
    "CHARSET_94",
    "PRESETS",
    "PIPELINE_TASK",
    "CLIP4STRConfig",
    "CLIP4STRForSceneTextRecognition",
    "CLIP4STRGenerateOutput",
    "CLIP4STRImageProcessor",
    "CLIP4STROutput",
    "CLIP4STRPipeline",
    "CLIP4STRPreTrainedModel",
    "CLIP4STRProcessor",
    "CLIP4STRTokenizer",
    "UnknownCharacterError",
    "clip_tower_config",
    "load_image",
    "to_rgb_image",
]
