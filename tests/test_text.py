"""prefaudit.text on real texts: text_codes against pandas' factorize of the texts (raw and
normalised by normalize_text), encoding_damage against a direct application of its three
rules, with planted variants and defects and with chunk boundaries everywhere."""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prefaudit.text as text_module
from prefaudit.loaders import load
from prefaudit.text import (
    REPLACEMENT_CHAR,
    encoding_damage,
    normalize_text,
    text_codes,
)

SAMPLES = ("hh_rlhf_harmless_test_300.jsonl", "llmbar_natural.json", "pandalm_testset_v1.json",
           "llama_factory_dpo_en_100.json", "planted_defects.jsonl")


@pytest.fixture(scope="module")
def real_texts(sample_dir) -> list[str]:
    """Every prompt and response of the bundled samples (with their own repeats)."""
    texts: list[str] = []
    for name in SAMPLES:
        table = load(sample_dir / name).table
        for col in ("prompt", "chosen", "rejected"):
            texts += table[col].tolist()
    return texts


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def _variants(text: str) -> list[str]:
    """Texts whose normal form equals ``text``'s (case, spacing, compatibility forms) and texts
    whose normal form differs although their squeezed form (case and whitespace gone) may not."""
    same = [text.upper(), text.swapcase(), " " + text.replace(" ", " \n\t ") + "\n", _full_width(text),
            text.replace(" ", "\u00a0"), text.replace(" ", "\x1c")]
    words = text.split()
    differ = ["".join(words[:2]) + " " + " ".join(words[2:]),  # a word boundary fewer
              text + ".", text.replace("e", "\u00e9")]
    return same + differ


def _reference_codes(texts: list[str], normalized: bool) -> np.ndarray:
    values = normalize_text(texts) if normalized else pd.Series(texts, dtype=object)
    return pd.factorize(values.to_numpy(dtype=object))[0]


def _check_codes(texts: list[str]) -> None:
    for normalized in (False, True):
        np.testing.assert_array_equal(text_codes(texts, normalized=normalized),
                                      _reference_codes(texts, normalized))


def test_text_codes_match_factorize_on_real_texts_and_planted_variants(real_texts):
    rng = np.random.default_rng(0)
    picked = [real_texts[i] for i in rng.choice(len(real_texts), 200, replace=False)]
    texts = real_texts + [v for t in picked for v in _variants(t)]
    rng.shuffle(texts)
    _check_codes(texts)
    codes = text_codes(texts, normalized=True)
    # the planted variants really were equated, and a lost word boundary kept apart
    for t in picked:
        assert (text_codes([t, *_variants(t)[:6]], normalized=True) == 0).all()
    long = [t for t in picked if len(t.split()) > 2]
    assert sum(text_codes([t, _variants(t)[6]], normalized=True)[1] == 1 for t in long) == len(long) > 150
    assert codes.max() + 1 == normalize_text(texts).nunique()


def test_text_codes_across_chunk_boundaries(real_texts, monkeypatch):
    texts = real_texts[:300] + [v for t in real_texts[:40] for v in _variants(t)]
    monkeypatch.setattr(text_module, "_CHUNK", 7)
    _check_codes(texts)


def test_plain_punctuation_is_left_alone_by_normalisation():
    """The premise of skipping normalisation: next to any ASCII character or another of them,
    these characters survive NFKC and case folding and are not whitespace."""
    neighbours = [chr(c) for c in range(128)] + list(text_module._PLAIN_PUNCTUATION)
    for mark in text_module._PLAIN_PUNCTUATION:
        assert mark.casefold() == mark and not mark.isspace()
        for other in neighbours:
            for pair in (mark + other, other + mark):
                assert unicodedata.normalize("NFKC", pair) == pair


_ALPHABET = list("aAbBzZ09 .\t\n\x1c") + list(text_module._PLAIN_PUNCTUATION) + [
    "\uff21", "\u00df", "ss", "SS", "e\u0301", "\u00e9", "\u00a0", "\ufb01", "fi", "\u2026", "\u212a", "k",
    "\u3000", "\ud800"]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.sampled_from(_ALPHABET), max_size=8).map("".join), max_size=30))
def test_text_codes_match_factorize_on_tricky_alphabets(texts):
    _check_codes(texts + [t.upper() for t in texts] + [" ".join(t) for t in texts])


def test_encoding_damage_matches_its_rules_on_real_texts_with_planted_damage(real_texts, monkeypatch):
    rng = np.random.default_rng(1)
    damage = ["\u00c3\u00a9", "\u00e2\u20ac\u2122", REPLACEMENT_CHAR, "\x07", "\x1b", "\x7f", "\x85", "\x00"]
    harmless = ["\u00e9", "\u00ab", "\uff0c", "\u00a0", "\u2019", "\ufeff", "\u00c3", "\t"]
    planted = []
    for i in rng.choice(len(real_texts), 300, replace=False):
        t = real_texts[i]
        at = int(rng.integers(0, len(t) + 1))
        insert = damage[i % len(damage)] if i % 2 else harmless[i % len(harmless)]
        planted += [t[:at] + insert + t[at:], insert + t, t + insert]
    texts = real_texts + planted
    expected = [text_module._damage(t) for t in texts]  # the rules on every text, no pre-filter
    assert sum(e != "" for e in expected) >= 400
    assert encoding_damage(texts).tolist() == expected
    monkeypatch.setattr(text_module, "_CHUNK", 5)
    assert encoding_damage(texts[-200:]).tolist() == expected[-200:]


def test_empty_inputs():
    assert text_codes([]).tolist() == [] and text_codes([], normalized=True).tolist() == []
    assert encoding_damage([]).tolist() == []
