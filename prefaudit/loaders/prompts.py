"""``load_prompts``: a target prompt set for the coverage analyzer.

Accepted inputs:

* a ``.txt`` file (optionally ``.gz``): one prompt per line, blank lines skipped; every line
  counts, so a prompt repeated in a production log weighs more;
* any file :func:`prefaudit.load` reads: its unique prompts, in order of first appearance;
* a .jsonl / .json / .csv / .parquet file of plain prompt records (an eval set): the first of
  the fields ``prompt``, ``instruction``, ``question``, ``input``, ``text`` in each record
  (MT-Bench-style ``turns`` lists give their first turn).
"""

from __future__ import annotations

from pathlib import Path

from prefaudit.errors import DataFormatError, UnknownFormatError

#: Fields tried, in order, in a plain prompt record.
PROMPT_FIELDS: tuple[str, ...] = ("prompt", "instruction", "question", "input", "text")


def load_prompts(path: str | Path) -> list[str]:
    """The prompts of ``path`` (see the module docstring for the accepted files)."""
    p = Path(path)
    if not p.is_file():
        raise DataFormatError("no such file", path=str(p))
    if p.name.lower().removesuffix(".gz").endswith(".txt"):
        prompts = _read_txt(p)
    else:
        from prefaudit.loaders import load

        try:
            prompts = list(dict.fromkeys(load(p).table["prompt"]))
        except UnknownFormatError:
            prompts = _read_plain_records(p)
    if not prompts:
        raise DataFormatError("no prompts found", path=str(p))
    return prompts


def _read_txt(path: Path) -> list[str]:
    from prefaudit.loaders.io import text_lines

    out = []
    for _, line in text_lines(path):
        text = line.rstrip("\r\n")
        if text.strip():
            out.append(text)
    return out


def _read_plain_records(path: Path) -> list[str]:
    from prefaudit.loaders.io import iter_records

    out = []
    for line, record_no, rec in iter_records(path):
        if "turns" in rec and isinstance(rec["turns"], list) and rec["turns"]:
            value, name = rec["turns"][0], "turns"
        else:
            name = next((f for f in PROMPT_FIELDS if f in rec), None)
            if name is None:
                raise DataFormatError(f"no prompt field; expected one of {', '.join(PROMPT_FIELDS)} "
                                      f"(or a preference format prefaudit reads)",
                                      path=str(path), line=line, record=record_no)
            value = rec[name]
        if not isinstance(value, str):
            raise DataFormatError(f"expected text, got {type(value).__name__}", path=str(path),
                                  line=line, record=record_no, field=name)
        if value.strip():
            out.append(value)
    return out
