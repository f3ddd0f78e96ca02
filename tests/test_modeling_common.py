"""transformers' common model and config tests, run on a tiny CLIP4STR.

The mixins (`ModelTesterMixin`, `ConfigTester`) come from the source distribution of the installed transformers
version, which is not a dependency: the module is skipped when that source is absent. Fetch it with

    pip download transformers==$(python -c "import transformers; print(transformers.__version__)") \
        --no-binary :all: --no-deps -d .cache/transformers-src
    tar -xzf .cache/transformers-src/transformers-*.tar.gz -C .cache/transformers-src

and `pip install parameterized`, or point `TRANSFORMERS_TESTS_DIR` at any checkout's `tests/` folder. The source
distribution ships `tests/*.py` but not the test sub-packages; `test_modeling_common` imports two mixins from them and
`test_configuration_common` one dictionary, so empty stand-ins are registered for whatever is missing (the export and
generation test mixins are not run for this model; the dictionary is only read for configs without sub-configs).

Tests that do not apply to an image-to-characters model are skipped, each with its reason.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
import unittest
from pathlib import Path

import pytest
import torch
import transformers

from conftest import REPO

_TESTS_DIR_CANDIDATES = [
    os.environ.get("TRANSFORMERS_TESTS_DIR"),
    REPO / ".cache" / "transformers-src" / f"transformers-{transformers.__version__}" / "tests",
]
TRANSFORMERS_TESTS_DIR = next(
    (Path(path) for path in _TESTS_DIR_CANDIDATES if path and (Path(path) / "test_modeling_common.py").is_file()),
    None,
)
if TRANSFORMERS_TESTS_DIR is None:
    pytest.skip(
        f"transformers {transformers.__version__}'s test sources are not here (set TRANSFORMERS_TESTS_DIR or unpack "
        "its sdist into .cache/transformers-src; see this module's docstring)",
        allow_module_level=True,
    )
pytest.importorskip("parameterized", reason="transformers' common tests need the `parameterized` package")

# The transformers tests are imported as the package `transformers_tests` (this repository has its own `tests`).
_PACKAGE = "transformers_tests"


def _register_package(name: str, path: Path | None) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)] if path is not None else []
    sys.modules[name] = module
    return module


def _stand_in(name: str, **attributes) -> None:
    """An empty module `_PACKAGE.name` when the source lacks it (sdists ship no test sub-packages)."""
    parts = name.split(".")
    if (TRANSFORMERS_TESTS_DIR.joinpath(*parts[:-1]) / f"{parts[-1]}.py").is_file():
        return
    for depth in range(1, len(parts)):
        package = ".".join([_PACKAGE, *parts[:depth]])
        if package not in sys.modules:
            _register_package(package, None)
    module = types.ModuleType(f"{_PACKAGE}.{name}")
    module.__dict__.update(attributes)
    sys.modules[module.__name__] = module


if _PACKAGE not in sys.modules:
    _register_package(_PACKAGE, TRANSFORMERS_TESTS_DIR)
    _stand_in("exporters.test_export", ExportTesterMixin=type("ExportTesterMixin", (), {}))
    _stand_in("generation.test_utils", GenerationTesterMixin=type("GenerationTesterMixin", (), {}))
    _stand_in("utils.test_configuration_utils", config_common_kwargs={})
ModelTesterMixin = importlib.import_module(f"{_PACKAGE}.test_modeling_common").ModelTesterMixin
# test_configuration_common loads `tests/__init__.py` (absent from sdists) through `direct_transformers_import` into a
# module-level name it never uses; hand it the installed package instead while it is imported.
_direct_import = transformers.utils.direct_transformers_import
transformers.utils.direct_transformers_import = lambda path, file="__init__.py": transformers
try:
    ConfigTester = importlib.import_module(f"{_PACKAGE}.test_configuration_common").ConfigTester
finally:
    transformers.utils.direct_transformers_import = _direct_import

from modeling_clip4str import (  # noqa: E402
    CLIP4STRConfig,
    CLIP4STRForSceneTextRecognition,
    CLIP4STRTokenizer,
    clip_tower_config,
)

CHARSET = "abcdefghij0123"
CAPTION_CHARSET = "abcdefghij0123"


def tiny_caption_tokenizer():
    """A CLIP BPE tokenizer with the byte-level base vocabulary only (514 tokens, no merges), so the text tower's
    embedding stays small: the common tests want models under a million parameters."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: index for index, token in enumerate(tokens)}, merges=[])


_CAPTION_TOKENIZER = tiny_caption_tokenizer()


class CLIP4STRWithTinyCaptionTokenizer(CLIP4STRForSceneTextRecognition):
    """CLIP4STR given the tiny caption tokenizer when built from a config alone.

    The mixins build models with `model_class(config)`, and a config cannot carry the caption tokenizer that every
    forward pass needs (a saved model keeps it in `caption_tokenizer/`, which `from_pretrained` reads). Nothing else
    differs from the real class."""

    _auto_class = None  # saving must not copy this test module as the model's remote code

    def __init__(self, config, caption_tokenizer=None):
        super().__init__(config, caption_tokenizer=caption_tokenizer or _CAPTION_TOKENIZER)


class CLIP4STRModelTester:
    """Builds the tiny CLIP4STR config and inputs of the common tests (32x32 images, 8x8 patches, 2-layer towers)."""

    def __init__(self, parent, batch_size=2, image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, is_training=True):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = 3
        self.hidden_size = hidden_size  # of the image tower, whose hidden states and attentions the tests inspect
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.is_training = is_training
        self.seq_length = (image_size // patch_size) ** 2 + 1  # patches and the class token
        # `hidden_states` (image tower) and `text_hidden_states` (text tower).
        self.num_hidden_states_types = 2
        tower = dict(num_attention_heads=num_attention_heads, intermediate_size=2 * hidden_size)
        self.vision_config = clip_tower_config(
            hidden_size, num_hidden_layers, image_size=image_size, patch_size=patch_size, **tower
        )
        self.text_config = clip_tower_config(
            hidden_size, num_hidden_layers, vocab_size=len(_CAPTION_TOKENIZER), max_position_embeddings=16,
            bos_token_id=_CAPTION_TOKENIZER.bos_token_id, eos_token_id=_CAPTION_TOKENIZER.eos_token_id,
            pad_token_id=_CAPTION_TOKENIZER.eos_token_id, **tower,
        )

    def get_config(self) -> CLIP4STRConfig:
        return CLIP4STRConfig(
            vision_config=self.vision_config,
            text_config=self.text_config,
            projection_dim=16,
            decoder_num_heads=2,
            decoder_dropout=0.0,
            charset=CHARSET,
            caption_charset=CAPTION_CHARSET,
            max_label_length=5,
            context_length=8,
            perm_num=4,
            num_frozen_text_layers=1,
        )

    def prepare_config_and_inputs(self):
        pixel_values = torch.randn(self.batch_size, self.num_channels, self.image_size, self.image_size)
        return self.get_config(), pixel_values

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}

    def labels(self):
        words = ["ab1", "j0c"] + ["e"] * (self.batch_size - 2)
        return CLIP4STRTokenizer(charset=CHARSET).encode_labels(words[: self.batch_size])


def _not_applicable(reason: str):
    return unittest.skip(reason=reason)


class CLIP4STRModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (CLIP4STRWithTinyCaptionTokenizer,)
    # The image tower's inputs are pixels: there are no token embeddings to resize.
    test_resize_embeddings = False
    test_resize_position_embeddings = False
    # Reading loops over characters with data-dependent stops; `torch.export` is not a supported use.
    test_torch_exportable = False
    # Checked on purpose, though the mixin only runs it by default for models added since 2023.
    test_can_init_all_missing_weights_before_2023 = True
    _is_composite = True

    # `generate` is the model's own greedy reader (tested in test_robustness and test_decoder); transformers'
    # `generate` tests exercise GenerationMixin's decoding strategies, which this model refuses by design.
    all_generative_model_classes = ()

    def setUp(self):
        self.model_tester = CLIP4STRModelTester(self)
        self.config_tester = ConfigTester(self, config_class=CLIP4STRConfig, has_text_modality=False)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels:
            inputs["labels"] = self.model_tester.labels()
        return inputs

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model_get_set_embeddings(self):
        """Image models expose their patch embedding (a convolution, not an `nn.Embedding`)."""
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = CLIP4STRWithTinyCaptionTokenizer(config)
        self.assertIsInstance(model.get_input_embeddings(), torch.nn.Conv2d)
        replacement = torch.nn.Conv2d(3, self.model_tester.hidden_size, kernel_size=8, stride=8, bias=False)
        model.set_input_embeddings(replacement)
        self.assertIs(model.get_input_embeddings(), replacement)
        self.assertIsNone(model.get_output_embeddings())

    def test_training_loss_backpropagates(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = CLIP4STRWithTinyCaptionTokenizer(config).train()
        loss = model(**self._prepare_for_class(inputs, CLIP4STRWithTinyCaptionTokenizer, return_labels=True)).loss
        loss.backward()
        self.assertTrue(torch.isfinite(loss))
        self.assertIsNotNone(model.visual_decoder.head.weight.grad)

    def test_model_forward_default_config_values(self):
        """The mixin's version, where it applies: a config written without the common attributes (`pad_token_id`,
        `eos_token_id`, `bos_token_id`, `sep_token_id`, `tie_word_embeddings`) builds a model that runs.

        Two of the mixin's steps do not apply and are left out. (1) It sets every special id to 0 afterwards:
        CLIP4STR derives `[E]` = 0, `[B]` = C + 1 and `[P]` = C + 2 from the charset and refuses any other value
        (test_robustness::test_derived_token_ids_are_read_only), which is what failed with "derives `pad_token_id`".
        (2) It also drops the text tower's ids: those are the caption tokenizer's start and end ids, which building
        the model checks them against, so without them (CLIP's defaults, 49406 and 49407) the tiny tokenizer is
        rightly refused; they are kept. The mixin then runs a forward pass only for base models listed in
        `MODEL_MAPPING_NAMES`, which this image-to-characters model is not; this version runs it."""
        common = ("pad_token_id", "eos_token_id", "bos_token_id", "sep_token_id", "tie_word_embeddings")
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        settings = config.to_diff_dict()
        for name in common:
            settings.pop(name, None)
            settings["vision_config"].pop(name, None)
        config = CLIP4STRConfig(**settings)
        charset_size = len(CHARSET)
        self.assertEqual(
            (config.eos_token_id, config.bos_token_id, config.pad_token_id), (0, charset_size + 1, charset_size + 2)
        )
        model = CLIP4STRWithTinyCaptionTokenizer(config).eval()
        with torch.no_grad():
            logits = model(**inputs).logits
        self.assertEqual(logits.shape[0], self.model_tester.batch_size)
        self.assertEqual(logits.shape[-1], config.num_classes)

    @_not_applicable("the model reads pixel_values; it has no inputs_embeds")
    def test_inputs_embeds(self):
        pass

    @_not_applicable("the model reads pixel_values; it has no input_ids or inputs_embeds")
    def test_inputs_embeds_matches_input_ids(self):
        pass

