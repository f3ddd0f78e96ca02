"""The character tokenizer: ids of SPEC, any Unicode charset, decoding and saving."""

from __future__ import annotations

import pytest

from modeling_clip4str import CHARSET_94, CLIP4STRTokenizer


def test_ids_follow_spec():
    tokenizer = CLIP4STRTokenizer()
    assert tokenizer.eos_token_id == 0
    assert tokenizer.convert_tokens_to_ids(["0", "a", "~"]) == [1, 11, 94]
    assert tokenizer.bos_token_id == 95 and tokenizer.pad_token_id == 96
    assert tokenizer.vocab_size == 97
    labels = tokenizer.encode_labels(["ab", "c"])
    assert labels.tolist() == [[11, 12, 0], [13, 0, 96]]


def test_special_token_text_is_read_as_characters():
    tokenizer = CLIP4STRTokenizer()
    assert tokenizer.encode_labels(["[E]"]).tolist() == [[85, 41, 87, 0]]


@pytest.mark.parametrize("charset", ["日本語テキスト", "абвгдеж", "αβγδ", "0123456789ABCDEF"])
def test_any_unicode_charset_roundtrips(charset, tmp_path):
    tokenizer = CLIP4STRTokenizer(charset=charset)
    word = charset[::-1][:4]
    ids = tokenizer.encode_labels([word])
    assert tokenizer.batch_decode(ids) == [word]
    tokenizer.save_pretrained(tmp_path)
    reloaded = CLIP4STRTokenizer.from_pretrained(tmp_path)
    assert reloaded.charset == charset
    assert reloaded.encode_labels([word]).tolist() == ids.tolist()


def test_decoding_stops_at_the_end_token_and_skips_specials():
    tokenizer = CLIP4STRTokenizer()
    assert tokenizer.batch_decode([[11, 95, 12, 0, 13, 14], [96, 96], [0]]) == ["ab", "", ""]


def test_repeated_characters_are_refused():
    with pytest.raises(ValueError, match="more than once"):
        CLIP4STRTokenizer(charset="abca")


def test_default_charset_is_the_released_one():
    assert CLIP4STRTokenizer().charset == CHARSET_94 and len(CHARSET_94) == 94
