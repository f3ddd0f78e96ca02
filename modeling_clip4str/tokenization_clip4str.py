"""Character tokenizer of CLIP4STR: one token per character of a configurable (any Unicode) charset."""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterable, Sequence

import torch
from transformers import PreTrainedTokenizer

from .configuration_clip4str import CHARSET_94
from .labels_clip4str import adapt_to_charset
from .reading_clip4str import texts_of_ids


VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}

EOS_TOKEN = "[E]"
BOS_TOKEN = "[B]"
PAD_TOKEN = "[P]"


class UnknownCharacterError(ValueError):
    """A label holds characters that are not in the tokenizer's charset."""


class CLIP4STRTokenizer(PreTrainedTokenizer):
    r"""
    Maps words to character ids the way CLIP4STR's decoders read them: `[E]` (end) = 0, the charset's characters =
    1..C in charset order, `[B]` (begin) = C + 1, `[P]` (pad) = C + 2.

    Special tokens are never recognised inside text: the label `"[E]"` is the three characters `[`, `E`, `]`.

    Args:
        vocab_file (`str`, *optional*):
            A `vocab.json` written by [`~CLIP4STRTokenizer.save_pretrained`]; its ids are the ones above.
        charset (`str`, *optional*):
            The characters, in id order, when no `vocab_file` is given. Defaults to the 94 printable ASCII characters
            of the released models.
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["labels"]

    def __init__(self, vocab_file: str | None = None, charset: str | None = None, **kwargs):
        if vocab_file is not None:
            with open(vocab_file, encoding="utf-8") as handle:
                vocab = json.load(handle)
            charset = _charset_from_vocab(vocab, vocab_file)
        elif charset is None:
            charset = CHARSET_94
        if not charset:
            raise ValueError("The charset must hold at least one character.")
        if len(set(charset)) != len(charset):
            raise ValueError("The charset lists a character more than once.")
        self.charset = charset
        self._itos = [EOS_TOKEN, *charset, BOS_TOKEN, PAD_TOKEN]
        self._stoi = {token: index for index, token in enumerate(self._itos)}
        kwargs.setdefault("eos_token", EOS_TOKEN)
        kwargs.setdefault("bos_token", BOS_TOKEN)
        kwargs.setdefault("pad_token", PAD_TOKEN)
        kwargs["split_special_tokens"] = True
        kwargs.pop("unk_token", None)
        super().__init__(charset=charset, **kwargs)

    # --- the vocabulary -------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._stoi)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return list(unicodedata.normalize("NFC", text))  # one token per composed character, as labels are read

    def _convert_token_to_id(self, token: str) -> int:
        if token not in self._stoi:
            raise UnknownCharacterError(f"Character {token!r} is not in the tokenizer's charset.")
        return self._stoi[token]

    def _convert_id_to_token(self, index: int) -> str:
        return self._itos[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
        if token_ids_1 is not None:
            raise ValueError("CLIP4STRTokenizer encodes single words, not pairs.")
        return token_ids_0 + [self.eos_token_id]

    def _decode(self, token_ids, skip_special_tokens: bool = False, **kwargs) -> str:
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        return self.ids_to_text(token_ids)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        name = (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILES_NAMES["vocab_file"]
        path = os.path.join(save_directory, name)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self._stoi, handle, ensure_ascii=False, indent=0)
        return (path,)

    # --- what CLIP4STR needs --------------------------------------------------------------------------------------
    def ids_to_text(self, token_ids: Iterable[int]) -> str:
        """The characters up to the first `[E]`; `[B]` and `[P]` are skipped."""
        return texts_of_ids([[int(index) for index in token_ids]], self.charset, self.eos_token_id)[0]

    def unknown_characters(self, label: str) -> str:
        """The characters of `label` in NFC (in order of first appearance) that the charset lacks."""
        missing = []
        for char in unicodedata.normalize("NFC", label):
            if char not in self._stoi or self._stoi[char] in (self.eos_token_id, self.bos_token_id, self.pad_token_id):
                if char not in missing:
                    missing.append(char)
        return "".join(missing)

    def encode_labels(
        self,
        labels: Sequence[str],
        filter_unknown: bool = False,
        max_label_length: int | None = None,
    ) -> torch.LongTensor:
        """Encode words as training targets.

        Labels are read in Unicode NFC, so a word written with combining marks (NFD) gets the ids of its composed
        form, as the label rule ([`LabelCleaner`]) gives it.

        Args:
            labels: the words.
            filter_unknown: instead of raising for characters outside the charset, apply the label rule's charset
                filter ([`adapt_to_charset`]): lower-case the word for a charset without upper case (upper-case it for
                one without lower case), then drop the characters the charset lacks.
            max_label_length: if given, a label longer than this raises.

        Returns:
            `torch.LongTensor` of shape `[B, L + 1]`: each word's character ids, then `[E]`, padded with `[P]` to the
            longest word `L` of the batch.
        """
        if isinstance(labels, str):
            labels = [labels]
        if len(labels) == 0:
            raise ValueError("Cannot encode an empty batch of labels.")
        rows = []
        for label in labels:
            if not isinstance(label, str):
                raise TypeError(f"Labels must be strings, got {type(label).__name__}: {label!r}.")
            label = unicodedata.normalize("NFC", label)
            missing = self.unknown_characters(label)
            if missing:
                if not filter_unknown:
                    raise UnknownCharacterError(
                        f"Label {label!r} holds characters outside the charset: {missing!r}. Pass "
                        "`filter_unknown=True` to drop them, or widen the model's charset."
                    )
                label = adapt_to_charset(label, self.charset)
            if max_label_length is not None and len(label) > max_label_length:
                raise ValueError(
                    f"Label {label!r} has {len(label)} characters; the model reads at most {max_label_length}."
                )
            rows.append([self._stoi[char] for char in label] + [self.eos_token_id])
        width = max(len(row) for row in rows)
        padded = [row + [self.pad_token_id] * (width - len(row)) for row in rows]
        return torch.tensor(padded, dtype=torch.long)


def _charset_from_vocab(vocab: dict[str, int], path: str) -> str:
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    tokens = [token for token, _ in by_id]
    if [index for _, index in by_id] != list(range(len(tokens))) or len(tokens) < 4:
        raise ValueError(f"{path} is not a CLIP4STR vocabulary: ids must run 0..N-1 over at least 4 tokens.")
    if tokens[0] != EOS_TOKEN or tokens[-2] != BOS_TOKEN or tokens[-1] != PAD_TOKEN:
        raise ValueError(f"{path} is not a CLIP4STR vocabulary: expected [E] first, then the charset, [B], [P].")
    return "".join(tokens[1:-2])


__all__ = ["CLIP4STRTokenizer", "UnknownCharacterError"]
