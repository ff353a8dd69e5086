"""Small text utilities shared by analyzers: normalisation and encoding-damage detection.

Everything here works on whole pandas Series of strings (vectorised), because analyzers run
on hundreds of thousands of pairs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from hashlib import blake2b
from itertools import islice
from operator import methodcaller

import numpy as np
import pandas as pd

#: Texts as a Series (its index is kept), a NumPy object array or a list.
Texts = pd.Series | np.ndarray | Sequence[str]

#: Characters whose Windows-1252 byte is 0x80-0xBF, i.e. what a UTF-8 continuation byte
#: becomes when UTF-8 text is wrongly decoded as Windows-1252 or Latin-1.
_CONT = (
    "\u0080-\u00bf"  # Latin-1 decoding (C1 controls and the upper half of Latin-1)
    "\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u017d"
    "\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u017e\u0178"
)
#: Mojibake: a character that is a UTF-8 lead byte as Latin-1 (Ã, â, ð, ...) followed by the
#: right number of continuation characters for that lead — "Ã©" for "é", "â€™" for "’",
#: "Â " for a no-break space, "ðŸ˜€" for an emoji. Real text almost never has these
#: sequences: a 3-byte lead such as "é" needs two continuations in a row ("é»¿").
MOJIBAKE_RE = re.compile(
    f"[\u00c2-\u00df][{_CONT}]|[\u00e0-\u00ef][{_CONT}]{{2}}|[\u00f0-\u00f4][{_CONT}]{{3}}"
)
#: U+FFFD, what a decoder writes for bytes it could not decode.
REPLACEMENT_CHAR = "\ufffd"
#: C0 and C1 control characters other than tab, newline and carriage return, plus DEL.
CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: Any character that can start a sign of damage: only texts holding one are checked further.
_SUSPECT_RE = re.compile("[\u00c2-\u00f4\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: A bytes.translate table mapping to 0 every UTF-8 byte that can begin a character of
#: :data:`_SUSPECT_RE` (its ASCII characters; 0xC2 and 0xC3, which lead U+0080-U+00FF; 0xEF,
#: which leads U+FFFD), and every other byte to 1.
_UTF8_SUSPECT = bytes(0 if (c < 128 and _SUSPECT_RE.match(chr(c))) or c in (0xC2, 0xC3, 0xEF) else 1
                      for c in range(256))
#: Texts per chunk when a whole column is hashed or scanned: bounds the transient copies.
_CHUNK = 16_384
#: The ASCII characters str.split() splits on, which normalisation collapses.
_ASCII_SPACE = bytes(c for c in range(128) if chr(c).isspace())
#: bytes.lower() as a bytes.translate table, so that lower-casing and deleting spaces is one pass.
_ASCII_LOWER = bytes(range(256)).lower()
#: Common non-ASCII punctuation that normalisation leaves as it is, next to any ASCII character
#: or each other (NFKC-stable, its own case fold, not whitespace, composes with nothing):
#: curly quotes, en and em dashes, bullet.
_PLAIN_PUNCTUATION = "\u2018\u2019\u201c\u201d\u2013\u2014\u2022"
#: A character that makes a text not plain.
_NOT_PLAIN_RE = re.compile(f"[^\x00-\x7f{_PLAIN_PUNCTUATION}]")
#: A text's UTF-8 bytes; lone surrogates, which JSON can carry, are encoded as themselves, so
#: distinct texts give distinct bytes. (A C-level callable: it is mapped over millions of texts.)
_utf8 = methodcaller("encode", "utf-8", "surrogatepass")


def normalize_text(texts: Texts) -> pd.Series:
    """Normalise texts for duplicate detection: Unicode NFKC, case-folded, runs of whitespace
    collapsed to one space, stripped. Two texts that differ only in case, spacing, line breaks
    or Unicode compatibility forms (full-width letters, ligatures, no-break spaces) become equal.
    """
    values = _as_list(texts)
    return pd.Series([_normalized(t) for t in values], index=_index(texts, values), dtype=object)


def _normalized(text: str) -> str:
    # ASCII text is already NFKC and its case folding is lower(), which is faster.
    folded = text.lower() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.split())


def text_codes(texts: Texts, *, normalized: bool = False) -> np.ndarray:
    """Per text, an integer code: equal texts (equal after :func:`normalize_text` when
    ``normalized``) get equal codes, numbered 0, 1, ... in order of first appearance.

    Raw texts are compared as they are, by pandas' object hash table. Normal forms are compared
    without holding a normalised copy of every text: a cheap key per text singles out the few
    texts that may share a normal form, and only those are compared, by 128-bit BLAKE2b digests
    of their normal forms (two different normal forms share a code only if their digests
    collide: probability about ``n**2 / 2**129``, below 1e-25 for ten million texts).
    """
    if normalized:
        return _normalized_codes(_as_list(texts))
    # The None (code -1, dropped) makes pandas use its object hash table, which compares the str
    # objects in place; for all-str values it picks its string table, which leaves a UTF-8 copy
    # cached inside every non-ASCII str it reads.
    return pd.factorize(np.append(_as_array(texts), None))[0][:-1].astype(np.int64)


def _normalized_codes(values: list[str]) -> np.ndarray:
    """Codes of the texts' normal forms (see :func:`text_codes`).

    Normalising is the costly step, so most texts skip it. Each text gets a *key*
    (:func:`_key`) such that texts with equal normal forms have equal keys; a text whose key's
    hash no other text has therefore has a normal form of its own and gets a code of its own.
    Only texts sharing a hash (in practice: near-duplicates) are compared exactly, by the 128-bit
    BLAKE2b digests of their normal forms. Python's per-process salted ``hash`` only chooses which
    texts get that exact comparison (a collision merely adds work), so the codes never depend on it.
    """
    n = len(values)
    hashes = np.empty(n, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        chunk = values[start:start + _CHUNK]
        hashes[start:start + len(chunk)] = _key_hashes(chunk)
    group = pd.factorize(hashes)[0]
    shared = np.flatnonzero(np.bincount(group)[group] > 1)
    del hashes, group
    keys = np.arange(n, dtype=np.int64)  # a key of its own ...
    normal = _digests((_utf8(_normalized(values[i])) for i in shared.tolist()), len(shared))
    keys[shared] = n + _digest_codes(normal)  # ... unless another text may have the same normal form
    return pd.factorize(keys)[0].astype(np.int64)


def _key_hashes(texts: list[str]) -> np.ndarray:
    """``hash(_key(t))`` per text. The keys of the ASCII texts are made all at once: joined by
    "\\xff" (a byte no ASCII text holds), lower-cased and stripped of spaces by one translate
    pass, and split apart again."""
    out = np.empty(len(texts), dtype=np.int64)
    is_ascii = np.fromiter(map(str.isascii, texts), dtype=bool, count=len(texts))
    ascii_rows = np.flatnonzero(is_ascii)
    if len(ascii_rows):
        joined = "\xff".join([texts[i] for i in ascii_rows.tolist()]).encode("latin-1")
        keys = joined.translate(_ASCII_LOWER, _ASCII_SPACE).split(b"\xff")
        out[ascii_rows] = np.fromiter(map(hash, keys), dtype=np.int64, count=len(ascii_rows))
    other = np.flatnonzero(~is_ascii)
    out[other] = [hash(_key(texts[i])) for i in other.tolist()]
    return out


def _key(text: str) -> bytes:
    """Bytes equal for texts with equal normal forms, and cheap for a *plain* text (ASCII, or
    ASCII with :data:`_PLAIN_PUNCTUATION`): its squeezed form (:func:`_squeezed`), which is its
    normal form without spaces. Any other text is normalised: its key is its normal form's
    squeezed form if that is plain, else the normal form."""
    squeezed = _squeezed(text)
    if squeezed is not None:
        return squeezed
    normal = _normalized(text)
    squeezed = _squeezed(normal)
    return squeezed if squeezed is not None else _utf8(normal)


def _digest_codes(digests: np.ndarray) -> np.ndarray:
    """Codes 0, 1, ... (in order of first appearance) of the rows of an (n, 2) digest array."""
    high = pd.factorize(digests[:, 0])[0]
    low = pd.factorize(digests[:, 1])[0]
    return pd.factorize(high * (int(low.max(initial=0)) + 1) + low)[0].astype(np.int64)


def _squeezed(text: str) -> bytes | None:
    """A plain text's UTF-8 with ASCII letters lower-cased and every character str.split()
    splits on deleted; None if the text is not plain (holds a character other than ASCII and
    :data:`_PLAIN_PUNCTUATION`)."""
    if not text.isascii() and _NOT_PLAIN_RE.search(text):
        return None
    return _utf8(text).translate(_ASCII_LOWER, _ASCII_SPACE)


def _digests(items: Iterator[bytes], n: int) -> np.ndarray:
    """The 128-bit BLAKE2b digests of ``n`` byte strings as two uint64 columns, made a chunk at
    a time."""
    out = np.empty((n, 2), dtype=np.uint64)
    for start in range(0, n, _CHUNK):
        raw = b"".join([blake2b(b, digest_size=16).digest() for b in islice(items, _CHUNK)])
        out[start:start + len(raw) // 16] = np.frombuffer(raw, dtype=np.uint64).reshape(-1, 2)
    return out


def encoding_damage(texts: Texts) -> pd.Series:
    """Per text, the first sign of encoding damage as a short description, or "" if none.

    Checked in order: a mojibake sequence (see :data:`MOJIBAKE_RE`; the most specific sign),
    the U+FFFD replacement character, a control character (see :data:`CONTROL_RE`).
    """
    values = _as_list(texts)
    out = [""] * len(values)
    for i in _suspect_texts(values).tolist():
        out[i] = _damage(values[i])
    return pd.Series(out, index=_index(texts, values), dtype=object)


def _suspect_texts(values: list[str]) -> np.ndarray:
    """Positions of the texts that may hold a character of :data:`_SUSPECT_RE`: every text that
    does, and a few that do not (the check that follows is exact). A chunk of texts is encoded
    as UTF-8 and joined by newlines, and one byte-translation pass marks the bytes that can begin
    a suspect character (see :data:`_UTF8_SUSPECT`), instead of a regex search per text."""
    hits = [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(values), _CHUNK):
        encoded = list(map(_utf8, values[start:start + _CHUNK]))
        ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)) + 1)
        marked = b"\n".join(encoded).translate(_UTF8_SUSPECT)
        where = np.flatnonzero(np.frombuffer(marked, dtype=np.uint8) == 0)
        hits.append(start + np.unique(np.searchsorted(ends, where, side="right")))
    return np.concatenate(hits)


def _damage(text: str) -> str:
    m = MOJIBAKE_RE.search(text)
    if m:
        return f"mojibake {m.group()!r}"
    if REPLACEMENT_CHAR in text:
        return "U+FFFD replacement character"
    m = CONTROL_RE.search(text)
    return f"control character U+{ord(m.group()):04X}" if m else ""


def log_length(texts: Texts) -> np.ndarray:
    """log10(1 + number of characters) of each text."""
    return np.log10(1.0 + np.fromiter(map(len, _as_list(texts)), dtype=float))


#: Characters that end a complete sentence or block (Latin and CJK punctuation, closing
#: quotes and brackets, markdown emphasis and code).
_TERMINAL = frozenset(".!?\u3002\uff01\uff1f\u2026\"')]}\u201d\u2019\u300d\u300f>*`")
#: Endings that leave a clause open.
_OPEN_ENDINGS = frozenset(",;:(-\u2013")
#: A last line that is a list item, table row, heading or quote: such lines end without
#: punctuation in finished text.
_LIST_LINE_RE = re.compile(r"^\s*(?:[-*+>#|\u2022]|\d+[.)]|[A-Za-z][.)]\s)")


def truncation_sign(texts: Texts, *, min_words: int = 40, min_last_line_words: int = 8) -> pd.Series:
    """Per text, why it looks cut off, or "" if it does not. Conservative by design.

    A text is called truncated when one of these holds:

    - ``unclosed code fence``: an odd number of ``` markers and the text does not end with
      sentence-final punctuation (generation stopped inside a code block);
    - ``ends mid-sentence``: at least ``min_words`` words, the last line is prose (at least
      ``min_last_line_words`` words, not a list item, table row, heading or quote), there is no
      code fence, and the text ends with a lowercase letter or with ``, ; : ( -`` — finished
      prose ends with punctuation, a number or a proper noun, not mid-clause;
    - ``ends with an ellipsis``: the same length conditions, ending with "..." or "…".

    A short answer without a final period ("Paris"), a list, a table or a code block is never
    flagged by the last two rules.
    """
    values = _as_list(texts)
    return pd.Series([_truncation(t, min_words, min_last_line_words) for t in values],
                     index=_index(texts, values), dtype=object)


def _truncation(text: str, min_words: int, min_last_line_words: int) -> str:
    s = text.rstrip()
    if not s:
        return ""
    last = s[-1]
    ellipsis = s.endswith("...") or last == "\u2026"
    if last in _TERMINAL and not ellipsis:  # finished, code fences or not: most texts stop here
        return ""
    fences = s.count("```")
    if fences:
        return "unclosed code fence" if fences % 2 and last not in _TERMINAL else ""
    if not (ellipsis or last.islower() or last in _OPEN_ENDINGS):
        return ""
    line = s[s.rfind("\n") + 1:]
    if len(line.split()) < min_last_line_words or _LIST_LINE_RE.match(line) or len(s.split()) < min_words:
        return ""
    return "ends with an ellipsis" if ellipsis else "ends mid-sentence"


def _as_list(texts: Texts) -> list[str]:
    values = texts.tolist() if isinstance(texts, (pd.Series, pd.Index, np.ndarray)) else list(texts)
    if pd.api.types.infer_dtype(values, skipna=False) == "string":  # all str: a C-level check
        return values
    return [v if isinstance(v, str) else str(v) for v in values]


def _as_array(texts: Texts) -> np.ndarray:
    """Texts as an object array of str: the input itself when it already is one."""
    if (isinstance(texts, np.ndarray) and texts.dtype == object
            and pd.api.types.infer_dtype(texts, skipna=False) == "string"):
        return texts
    return np.array(_as_list(texts), dtype=object)


def _index(texts: Texts, values: list[str]) -> pd.Index:
    return texts.index if isinstance(texts, pd.Series) else pd.RangeIndex(len(values))
