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


VIETNAMESE = (
    "abcdefghijklmnopqrstuvwxyzàáạảãâầấậẩẫăằắặẳẵèéẹẻẽêềếệểễìíịỉĩòóọỏõôồốộổỗơờớợởỡùúụủũưừứựửữỳýỵỷỹđ"
)


def test_nfd_and_nfc_labels_give_the_same_targets():
    import unicodedata

    tokenizer = CLIP4STRTokenizer(charset=VIETNAMESE)
    composed = [unicodedata.normalize("NFC", word) for word in ("tiếng", "việt")]
    decomposed = [unicodedata.normalize("NFD", word) for word in composed]
    assert [len(word) for word in decomposed] != [len(word) for word in composed]  # combining marks apart
    assert tokenizer.unknown_characters(decomposed[1]) == ""
    labels = tokenizer.encode_labels(decomposed)
    assert labels.tolist() == tokenizer.encode_labels(composed).tolist()
    assert tokenizer.batch_decode(labels) == composed
    assert tokenizer(decomposed[0])["input_ids"] == tokenizer(composed[0])["input_ids"]


def test_filter_unknown_applies_the_label_rule_filter():
    from modeling_clip4str.labels_clip4str import adapt_to_charset

    tokenizer = CLIP4STRTokenizer(charset=VIETNAMESE)  # lower case only
    for label in ("Tiếng Việt!", "ĐÀ NẴNG", "x-y"):
        filtered = tokenizer.encode_labels([label], filter_unknown=True)
        assert tokenizer.batch_decode(filtered) == [adapt_to_charset(label, VIETNAMESE)]
    assert tokenizer.batch_decode(tokenizer.encode_labels(["Tiếng Việt!"], filter_unknown=True)) == ["tiếngviệt"]
