"""A model directory saved by an earlier version of this code (tests/fixtures/saved-tiny-2026-12.tar.xz, made by
tests/fixtures/make_saved_tiny.py before the reading loop left the model class) still loads, with the package's
classes and with its own saved code (trust_remote_code), and reads what it read when it was saved."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import torch

from conftest import CLIP_TOKENIZER, REPO

ARCHIVE = REPO / "tests" / "fixtures" / "saved-tiny-2026-12.tar.xz"


@pytest.fixture()
def saved_directory(tmp_path):
    from transformers import CLIPTokenizer

    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(tmp_path, filter="data")
    directory = tmp_path / "saved-tiny-2026-12"
    # Left out of the archive to keep it small: the reference tokenizer as transformers saves it.
    CLIPTokenizer.from_pretrained(str(CLIP_TOKENIZER)).save_pretrained(directory / "caption_tokenizer")
    return directory


def _check_reads_as_recorded(model, processor, directory):
    record = json.loads((directory / "texts.json").read_text(encoding="utf-8"))
    pixel_values = torch.load(directory / "pixel_values.pt", weights_only=True)
    output = model.generate(pixel_values, return_dict_in_generate=True)
    assert processor.batch_decode(output.sequences) == record["texts"]
    assert output.sequences.tolist() == record["sequences"]
    assert torch.allclose(output.confidences, torch.tensor(record["confidences"]), atol=1e-6)
    other = model.generate(pixel_values, refine_iters=0, decode_ar=False)
    assert processor.batch_decode(other) == record["texts_refine_iters_0_decode_ar_false"]


def test_saved_directory_loads_with_package_classes(saved_directory):
    from transformers import AutoModel, AutoProcessor

    import modeling_clip4str as package

    model = AutoModel.from_pretrained(saved_directory).eval()
    assert isinstance(model, package.CLIP4STRForSceneTextRecognition)
    processor = AutoProcessor.from_pretrained(saved_directory)
    assert isinstance(processor, package.CLIP4STRProcessor)
    _check_reads_as_recorded(model, processor, saved_directory)


REMOTE_SCRIPT = """
import json, sys
import torch
from transformers import AutoModel, AutoProcessor

directory = sys.argv[1]
model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(directory, trust_remote_code=True)
pixel_values = torch.load(directory + "/pixel_values.pt", weights_only=True)
output = model.generate(pixel_values, return_dict_in_generate=True)
print(json.dumps({
    "module": type(model).__module__,
    "texts": processor.batch_decode(output.sequences),
    "sequences": output.sequences.tolist(),
    "confidences": output.confidences.tolist(),
    "texts_refine_iters_0_decode_ar_false": processor.batch_decode(
        model.generate(pixel_values, refine_iters=0, decode_ar=False)
    ),
}))
"""


def test_saved_directory_loads_with_its_own_code(saved_directory, tmp_path):
    copy = tmp_path / "copy-of-saved"
    shutil.copytree(saved_directory, copy)
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_SCRIPT)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="", HF_MODULES_CACHE=str(tmp_path / "modules"))
    # The package hidden (an editable install would still find it), so only the saved code can serve.
    code = "import sys; sys.modules['modeling_clip4str'] = None; sys.argv = sys.argv[1:]; " \
           "exec(open(sys.argv[0]).read())"
    result = subprocess.run(
        [sys.executable, "-c", code, str(script), str(copy)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["module"].startswith("transformers_modules")
    record = json.loads((copy / "texts.json").read_text(encoding="utf-8"))
    for name in ("texts", "sequences", "texts_refine_iters_0_decode_ar_false"):
        assert payload[name] == record[name], name
    assert torch.allclose(torch.tensor(payload["confidences"]), torch.tensor(record["confidences"]), atol=1e-6)
