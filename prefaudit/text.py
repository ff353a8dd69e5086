"""Small text utilities shared by analyzers: normalisation and encoding-damage detection.

Everything here works on whole pandas Series of strings (vectorised), because analyzers run
on hundreds of thousands of pairs.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

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
_WS_RE = r"\s+"


def normalize_text(texts: pd.Series) -> pd.Series:
    """Normalise texts for duplicate detection: Unicode NFKC, case-folded, runs of whitespace
    collapsed to one space, stripped. Two texts that differ only in case, spacing, line breaks
    or Unicode compatibility forms (full-width letters, ligatures, no-break spaces) become equal.
    """
    s = pd.Series(texts, dtype=object).astype(str)
    return (s.str.normalize("NFKC").str.casefold()
            .str.replace(_WS_RE, " ", regex=True).str.strip())


def encoding_damage(texts: pd.Series) -> pd.Series:
    """Per text, the first sign of encoding damage as a short description, or "" if none.

    Checked in order: a mojibake sequence (see :data:`MOJIBAKE_RE`; the most specific sign),
    the U+FFFD replacement character, a control character (see :data:`CONTROL_RE`).
    """
    s = pd.Series(texts, dtype=object).astype(str)
    out = pd.Series([""] * len(s), index=s.index, dtype=object)
    moj = s.str.extract(f"({MOJIBAKE_RE.pattern})", expand=False)
    has_moj = moj.notna().to_numpy(dtype=bool)
    out[has_moj] = "mojibake " + moj[has_moj].map(repr)
    repl = s.str.contains(REPLACEMENT_CHAR, regex=False).to_numpy(dtype=bool) & ~has_moj
    out[repl] = "U+FFFD replacement character"
    ctrl = s.str.extract(f"({CONTROL_RE.pattern})", expand=False)
    has_ctrl = ctrl.notna().to_numpy(dtype=bool) & (out == "").to_numpy(dtype=bool)
    out[has_ctrl] = "control character " + ctrl[has_ctrl].map(lambda c: f"U+{ord(c):04X}")
    return out


def log_length(texts: pd.Series) -> np.ndarray:
    """log10(1 + number of characters) of each text."""
    return np.log10(1.0 + pd.Series(texts, dtype=object).astype(str).str.len().to_numpy(dtype=float))

#: Characters that end a complete sentence or block (Latin and CJK punctuation, closing
#: quotes and brackets, emoji are handled by the "ends with a lowercase letter" rule instead).
_TERMINAL = ".!?\u3002\uff01\uff1f\u2026\"')]}\u201d\u2019\u300d\u300f>*`"
#: A last line that is a list item, table row, heading or quote: such lines end without
#: punctuation in finished text.
_LIST_LINE_RE = r"^\s*(?:[-*+>#|\u2022]|\d+[.)]|[A-Za-z][.)]\s)"


def truncation_sign(texts: pd.Series, *, min_words: int = 40, min_last_line_words: int = 8) -> pd.Series:
    """Per text, why it looks cut off, or "" if it does not. Conservative by design.

    A text is called truncated when one of these holds (checked in order):

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
    s = pd.Series(texts, dtype=object).astype(str).str.rstrip()
    out = pd.Series([""] * len(s), index=s.index, dtype=object)
    last = s.str[-1:]
    terminal = last.map(lambda c: c != "" and c in _TERMINAL).to_numpy(dtype=bool)
    fences = s.str.count("```").to_numpy()
    out[(fences % 2 == 1) & ~terminal] = "unclosed code fence"
    last_line = s.str.extract(r"([^\n]*)$", expand=False).fillna("")
    prose = ((s.str.count(r"\S+").to_numpy() >= min_words)
             & (last_line.str.count(r"\S+").to_numpy() >= min_last_line_words)
             & ~last_line.str.contains(_LIST_LINE_RE, regex=True).to_numpy(dtype=bool)
             & (fences == 0))
    mid = last.map(lambda c: c.islower() or c in ",;:(-\u2013").to_numpy(dtype=bool)
    ellipsis = (s.str.endswith("...") | s.str.endswith("\u2026")).to_numpy(dtype=bool)
    free = (out == "").to_numpy(dtype=bool)
    out[free & prose & mid] = "ends mid-sentence"
    out[free & prose & ellipsis] = "ends with an ellipsis"
    return out
