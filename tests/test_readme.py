"""The code blocks of README.md and docs/*.md: every fenced ```python and ```bash block is classified by an HTML
comment on the line before it, and the runnable ones run offline against tiny local stand-ins (docs/TESTING.md).

    <!-- runnable -->                  run in the quick suite
    <!-- runnable: slow -->            run, as a test marked slow (it trains or exports)
    <!-- not runnable: REASON -->      not run, for REASON

Blocks run in a scratch folder that holds what the documentation assumes (see `workspace`), after SUBSTITUTIONS.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import CLIP_TOKENIZER, REFERENCE, REPO, png_bytes_of, word_image, write_lmdb

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# What the documentation names and a test cannot download or afford, and the tiny local thing used instead.
# `clip4str-b16` needs no entry: the workspace holds the tiny reference checkpoint converted under that name.
SUBSTITUTIONS = {
    "clip4str_base16x16_d70bde1f2d.ckpt": str(REFERENCE / "reference.ckpt"),  # the released checkpoint
    "openai/clip-vit-base-patch16": str(CLIP_TOKENIZER),  # a CLIP BPE tokenizer (--clip-tokenizer)
    "org/clip4str-b16": "clip4str-b16",  # a Hub id: the same model, from the local folder
    "--max-steps 1000": "--max-steps 2",  # a fine-tuning run: two steps
    "--per-device-train-batch-size 32": "--per-device-train-batch-size 4 --dataloader-num-workers 0",
}

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<language>[A-Za-z]*)\s*$")
MARK = re.compile(r"^\s*<!--\s*(?P<kind>runnable|not runnable)\s*(?::\s*(?P<note>.*?))?\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    kind: str | None  # "runnable", "not runnable" or None (unclassified)
    note: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def slow(self) -> bool:
        return self.kind == "runnable" and self.note == "slow"


def extract_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").split("\n")
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent = opening["indent"]
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if opening["language"] in ("python", "bash"):
            previous = index - 1
            while previous >= 0 and not lines[previous].strip():
                previous -= 1
            mark = MARK.match(lines[previous]) if previous >= 0 else None
            body = [line[len(indent):] if line.startswith(indent) else line for line in lines[index + 1:end]]
            blocks.append(Block(page, index + 1, opening["language"], "\n".join(body) + "\n",
                                mark["kind"] if mark else None, (mark["note"] or "") if mark else ""))
        index = end + 1
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in extract_blocks(page)]
RUNNABLE = [block for block in ALL_BLOCKS if block.kind == "runnable"]


def test_every_block_is_classified():
    unclassified = [block.name for block in ALL_BLOCKS if block.kind is None]
    assert not unclassified, f"code blocks without <!-- runnable --> or <!-- not runnable: REASON -->: {unclassified}"
    no_reason = [block.name for block in ALL_BLOCKS if block.kind == "not runnable" and not block.note]
    assert not no_reason, f"not runnable without a reason: {no_reason}"
    odd = [block.name for block in RUNNABLE if block.note not in ("", "slow")]
    assert not odd, f"runnable takes no note but 'slow': {odd}"
    readme = [block for block in ALL_BLOCKS if block.page.name == "README.md"]
    assert sum(block.kind == "runnable" for block in readme) >= 5, [block.name for block in readme]


def test_the_readme_fits_in_12_kb():
    assert (REPO / "README.md").stat().st_size <= 12 * 1024


def substitute(code: str) -> str:
    for name, local in SUBSTITUTIONS.items():
        code = code.replace(name, local)
    return code


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A scratch folder with what the documentation assumes: `clip4str-b16` (the tiny reference checkpoint,
    converted), word images, a labelled folder of crops and an LMDB benchmark."""
    from modeling_clip4str.convert_clip4str_original_to_hf import convert

    root = tmp_path_factory.mktemp("readme")
    convert(str(REFERENCE / "reference.ckpt"), str(root / "clip4str-b16"), clip_tokenizer=str(CLIP_TOKENIZER))
    for name, text in (("word.png", "hello"), ("word1.png", "hello"), ("word2.jpg", "WORLD"), ("a.png", "cat"),
                       ("b.png", "dog")):
        word_image(text).save(root / name)
    crops = root / "my_crops"
    crops.mkdir()
    words = ["cat", "dog", "sun", "tree", "bird", "fish", "moon", "star"]
    with open(crops / "labels.txt", "w") as labels:
        for index, word in enumerate(words):
            word_image(word).save(crops / f"{index}.png")
            labels.write(f"{index}.png\t{word}\n")
    write_lmdb(root / "STR_DATA" / "test" / "IIIT5k", [(png_bytes_of(word_image(w)), w) for w in words])
    return root


def _environment():
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                HF_EVALUATE_OFFLINE="1", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def _run_bash(block: Block, directory: Path):
    result = subprocess.run(["bash", "-e", "-c", substitute(block.code)], cwd=directory, env=_environment(),
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, (block.name, result.stdout[-3000:], result.stderr[-5000:])


def _run_python(block: Block, directory: Path, namespace: dict, monkeypatch):
    monkeypatch.chdir(directory)
    exec(compile(substitute(block.code), block.name, "exec"), namespace)


def _params(blocks):
    return [pytest.param(block, id=block.name, marks=[pytest.mark.slow] if block.slow else []) for block in blocks]


NAMESPACES: dict[Path, dict] = {}  # one per page: the Python blocks of a page run in order, like a notebook
DONE: set[tuple[str, str]] = set()  # a block repeated on another page runs once


@pytest.mark.parametrize("block", _params(RUNNABLE))
def test_block_runs(block, workspace, tmp_path, monkeypatch):
    if block.language == "python":
        namespace = NAMESPACES.setdefault(block.page, {"__name__": "__readme__", "__ran__": set()})
        # The page's earlier Python blocks first, whatever order the tests run in.
        for earlier in RUNNABLE:
            if earlier.page == block.page and earlier.language == "python" and earlier.line <= block.line \
                    and earlier.line not in namespace["__ran__"]:
                _run_python(earlier, workspace, namespace, monkeypatch)
                namespace["__ran__"].add(earlier.line)
        return
    if (block.language, block.code) in DONE:
        return
    # Each bash block gets its own copy of the workspace (what it writes stays there); a block that converts the
    # checkpoint writes its own `clip4str-b16`.
    directory = tmp_path / "work"
    ignore = ["clip4str-b16"] if "convert_clip4str_original_to_hf" in block.code else []
    shutil.copytree(workspace, directory, symlinks=True, ignore=lambda folder, names: [n for n in names if n in ignore])
    _run_bash(block, directory)
    DONE.add((block.language, block.code))
