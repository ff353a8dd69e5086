"""Write sample_data/planted_defects.jsonl: real LLMBar pairs plus hygiene defects with known ids.

The clean majority is 120 real pairs (LLMBar Natural, all 100, and the first 20 of LLMBar
Adversarial/GPTInst; MIT licence). The defects are built from further real pairs (LLMBar
Adversarial/GPTOut) or copies of clean ones, each with an id that says what it is:

- ``planted-dup-exact-N``: an exact copy of a clean pair (placed after it);
- ``planted-dup-norm-N``: a copy differing only in case, whitespace or no-break spaces;
- ``planted-identical-N``: chosen == rejected (exactly, or after normalisation);
- ``planted-contra-Na`` / ``planted-contra-Nb``: the same prompt and responses, labels swapped;
- ``planted-empty-N``: an empty or whitespace-only chosen or rejected;
- ``planted-mojibake-N``: UTF-8 text decoded as Windows-1252 ("’" -> "â€™");
- ``planted-replacement-1``: a U+FFFD replacement character; ``planted-control-1``: an ANSI
  escape (control character U+001B);
- ``planted-truncated-N``: a response cut mid-sentence / mid-word;
- ``planted-long-1``: a degenerate response repeated 120 times (length outlier).

Every defect record also carries a ``defect`` field describing it (loaders ignore it). The
output is TRL standard format (``id``, ``prompt``, ``chosen``, ``rejected``), deterministic for
a given ``--seed``.

Usage: ``python scripts/make_planted_defects.py [--shared-data ../shared/data] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
NATURAL = REPO / "sample_data" / "llmbar_natural.json"
GPTINST = Path("llmbar/Dataset/LLMBar/Adversarial/GPTInst/dataset.json")
GPTOUT = Path("llmbar/Dataset/LLMBar/Adversarial/GPTOut/dataset.json")
N_GPTINST_CLEAN = 20

Record = dict[str, Any]


def llmbar_pairs(path: Path, prefix: str) -> list[Record]:
    """LLMBar records as TRL standard pairs (label 1 or 2 names the better output)."""
    out = []
    for i, r in enumerate(json.loads(path.read_text(encoding="utf-8"))):
        good, bad = (r["output_1"], r["output_2"]) if int(r["label"]) == 1 else (r["output_2"], r["output_1"])
        out.append({"id": f"{prefix}-{i:03d}", "prompt": r["input"], "chosen": good, "rejected": bad})
    return out


def mojibake(text: str) -> str:
    """``text`` as a program that decoded its UTF-8 bytes as Windows-1252 would show it."""
    return text.encode("utf-8").decode("cp1252", errors="replace")


def cut_mid_sentence(text: str, keep: float) -> str:
    """Cut ``text`` after about ``keep`` of its words, ending on a lowercase word."""
    words = text.split(" ")
    k = max(int(len(words) * keep), 1)
    while k < len(words) and not (words[k - 1].isalpha() and words[k - 1].islower()):
        k += 1
    return " ".join(words[:k])


def plant(clean: list[Record], spare: list[Record],
          rng: np.random.Generator) -> list[tuple[Record, str | None]]:
    """Defect records, each with the id of the clean record it must follow (or None)."""
    pool = [spare[i] for i in rng.permutation(len(spare))]

    def take(ok: Callable[[Record], bool] = lambda r: True) -> Record:
        for j, r in enumerate(pool):
            if ok(r):
                return dict(pool.pop(j))
        raise RuntimeError("no spare LLMBar pair satisfies the defect's condition")

    out: list[tuple[Record, str | None]] = []
    sources = [clean[i] for i in rng.choice(len(clean), size=6, replace=False)]
    for n, src in enumerate(sources[:3], start=1):
        out.append(({**src, "id": f"planted-dup-exact-{n}", "defect": f"exact duplicate of {src['id']}"},
                    src["id"]))
    variants = (
        ("prompt in lower case", lambda r: {**r, "prompt": r["prompt"].lower()}),
        ("doubled spaces and a trailing newline",
         lambda r: {**r, "chosen": r["chosen"].replace(" ", "  ") + "\n", "rejected": r["rejected"] + " "}),
        ("no-break spaces in both responses, chosen upper-cased",
         lambda r: {**r, "chosen": r["chosen"].upper().replace(" ", "\u00a0"),
                    "rejected": r["rejected"].replace(" ", "\u00a0")}),
    )
    for n, (src, (how, change)) in enumerate(zip(sources[3:], variants, strict=True), start=1):
        out.append(({**change(src), "id": f"planted-dup-norm-{n}",
                     "defect": f"duplicate of {src['id']} after normalisation ({how})"}, src["id"]))

    r = take()
    out.append(({**r, "id": "planted-identical-1", "rejected": r["chosen"], "defect": "chosen == rejected"},
                None))
    r = take()
    out.append(({**r, "id": "planted-identical-2", "rejected": r["rejected"].upper(),
                 "chosen": r["rejected"], "defect": "chosen == rejected up to case"}, None))
    r = take(lambda r: "\n" in r["chosen"])
    out.append(({**r, "id": "planted-identical-3", "rejected": r["chosen"].replace("\n", " \n "),
                 "defect": "chosen == rejected up to whitespace"}, None))

    for n in range(1, 5):
        r = take()
        out.append(({**r, "id": f"planted-contra-{n}a", "defect": f"same pair as planted-contra-{n}b, "
                     "opposite label"}, None))
        out.append(({**r, "id": f"planted-contra-{n}b", "chosen": r["rejected"], "rejected": r["chosen"],
                     "defect": f"same pair as planted-contra-{n}a, opposite label"}, None))

    for n, (side, blank) in enumerate((("chosen", ""), ("rejected", "  \n "), ("chosen", " ")), start=1):
        r = take()
        out.append(({**r, "id": f"planted-empty-{n}", side: blank, "defect": f"{side} empty or whitespace"},
                    None))

    for n, side in enumerate(("chosen", "rejected"), start=1):
        r = take(lambda r, s=side: "'" in r[s])
        out.append(({**r, "id": f"planted-mojibake-{n}", side: mojibake(r[side].replace("'", "\u2019")),
                     "defect": f"{side} UTF-8 decoded as Windows-1252"}, None))
    r = take(lambda r: len(r["chosen"]) > 40)
    mid = len(r["chosen"]) // 2
    damaged = r["chosen"][:mid] + "\ufffd" + r["chosen"][mid + 1:]
    out.append(({**r, "id": "planted-replacement-1", "chosen": damaged,
                 "defect": "chosen holds a U+FFFD replacement character"}, None))
    r = take()
    out.append(({**r, "id": "planted-control-1", "rejected": "\x1b[0m" + r["rejected"],
                 "defect": "rejected starts with an ANSI escape (control character U+001B)"}, None))

    def cuttable(keep: float) -> Callable[[Record], bool]:
        def ok(r: Record) -> bool:
            cut = cut_mid_sentence(r["chosen"], keep)
            return len(cut.split()) >= 45 and len(cut.split("\n")[-1].split()) >= 10 and "```" not in cut
        return ok

    r = take(cuttable(0.6))
    out.append(({**r, "id": "planted-truncated-1", "chosen": cut_mid_sentence(r["chosen"], 0.6),
                 "defect": "chosen cut mid-sentence"}, None))
    r = take(cuttable(0.7))
    cut = cut_mid_sentence(r["chosen"], 0.7)
    out.append(({**r, "id": "planted-truncated-2", "chosen": cut[: len(cut) - 2],
                 "defect": "chosen cut mid-word"}, None))

    r = take(lambda r: len(r["chosen"]) >= 200)
    out.append(({**r, "id": "planted-long-1", "chosen": "\n\n".join([r["chosen"]] * 120),
                 "defect": "chosen is one answer repeated 120 times (length outlier)"}, None))
    return out


def build(shared_data: Path, seed: int) -> list[Record]:
    """The planted-defects dataset: clean pairs in shuffled order, defects inserted after their sources."""
    rng = np.random.default_rng(seed)
    clean = llmbar_pairs(NATURAL, "llmbar-natural") + llmbar_pairs(shared_data / GPTINST, "llmbar-gptinst")[
        :N_GPTINST_CLEAN]
    spare = llmbar_pairs(shared_data / GPTOUT, "llmbar-gptout")
    defects = plant(clean, spare, rng)
    rows: list[Record] = [clean[i] for i in rng.permutation(len(clean))]
    for rec, after in defects:
        start = 0 if after is None else next(i for i, r in enumerate(rows) if r["id"] == after) + 1
        rows.insert(int(rng.integers(start, len(rows) + 1)), rec)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder of the shared datasets (holds llmbar/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "sample_data" / "planted_defects.jsonl")
    args = parser.parse_args()
    rows = build(args.shared_data, args.seed)
    with args.out.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    n_bad = sum(1 for r in rows if r["id"].startswith("planted-"))
    print(f"wrote {args.out}: {len(rows)} pairs, {n_bad} planted defects ({n_bad / len(rows):.0%})")


if __name__ == "__main__":
    main()
