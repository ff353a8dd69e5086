"""CHES from the margins pass equals a direct computation (``output_hidden_states=True``, one
sequence at a time) on the tiny Llama, GPT-2 and Gemma2 models and (slow) on SmolLM2; the
log-probs are unchanged by it; the analyzer's metrics, flags and selection by CHES."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_logprobs import build_arch, plain_logp

from prefaudit.analyzers.margins import analyze_margins, select_by_ches
from prefaudit.errors import ConfigError
from prefaudit.loaders import load
from prefaudit.schema import to_pairs
from prefaudit.scoring.encoding import encode_pairs
from prefaudit.scoring.logprobs import score_pairs
from prefaudit.testing import tiny_causal_lm


def summed_hidden(model, prompt_ids, response_ids) -> np.ndarray:
    """Sum of the last hidden states at the positions that predict the response tokens (the
    last prompt token through the second-to-last response token), one unpadded forward pass."""
    ids = torch.tensor([list(prompt_ids) + list(response_ids)])
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].double()
    p, n = len(prompt_ids), len(response_ids)
    return hidden[max(p - 1, 0):p + n - 1].sum(0).numpy()


def direct_ches(model, e) -> tuple[float, float]:
    """``<H+, H-> - ||H+||^2`` and the same with ``H+/|y+|``, ``H-/|y-|``, by the formula."""
    hp, hn = summed_hidden(model, e.prompt, e.chosen), summed_hidden(model, e.prompt, e.rejected)
    first = 0 if e.prompt else 1
    with np.errstate(invalid="ignore"):   # an empty response: NaN
        up, un = hp / (len(e.chosen) - first), hn / (len(e.rejected) - first)
    return float(hp @ hn - hp @ hp), float(up @ un - up @ up)


def clipped(frame: pd.DataFrame) -> pd.DataFrame:
    """Real HH text cut to the end of each prompt and the start of each response (fast tests)."""
    return frame.assign(prompt=frame["prompt"].str[-300:], chosen=frame["chosen"].str[:200],
                        rejected=frame["rejected"].str[:200])


@pytest.fixture(scope="module")
def hh(hh_table) -> pd.DataFrame:
    return to_pairs(hh_table)


@pytest.fixture(scope="module")
def hh_table(sample_dir) -> pd.DataFrame:
    return load(sample_dir / "hh_rlhf_harmless_test_300.jsonl").table


def assert_ches_matches_direct(model, tok, pairs, **kw) -> pd.DataFrame:
    scores = score_pairs(pairs, model, tok, progress=False, **kw)
    for e, (_, row) in zip(encode_pairs(tok, pairs, max_length=kw.get("max_length")), scores.iterrows(),
                           strict=True):
        ches, ches_norm = direct_ches(model, e)
        assert row["ches"] == pytest.approx(ches, rel=1e-4, abs=1e-6)
        assert row["ches_normalized"] == pytest.approx(ches_norm, rel=1e-4, abs=1e-6, nan_ok=True)
        assert row["chosen_logp"] == pytest.approx(plain_logp(model, e.prompt, e.chosen), abs=1e-4)
    return scores


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma2_softcap"])
def test_ches_equals_direct_computation(tiny, hh, arch):
    model, tok = tiny
    model = model if arch == "llama" else build_arch(arch, tok)
    long_prompt = hh.iloc[[3]].assign(chosen=hh["chosen"].iloc[3][:100])   # 793 prompt tokens
    empty_prompt = pd.DataFrame([{"pair_id": "empty", "prompt": "", "chosen": "Hello there.",
                                  "rejected": "Go away."}])
    pairs = pd.concat([clipped(hh.head(3)), long_prompt, empty_prompt], ignore_index=True)
    scores = assert_ches_matches_direct(model, tok, pairs, max_length=256, token_budget=1024)
    empty = scores["chosen_tokens"] == 0     # a prompt of 256 tokens or more leaves nothing to score
    assert empty.tolist() == [False, False, False, True, False] and (scores["ches"][empty] == 0).all()
    assert (scores["ches_normalized"][empty].isna().all()
            and np.isfinite(scores["ches_normalized"][~empty]).all())
    assert (scores["ches"][~empty].abs() > 0).all()


def test_ches_does_not_change_log_probs_and_ranks_near_identical_pairs_high(tiny, hh):
    """A response pair that shares almost all its tokens has H- close to H+, so CHES sits near
    ``<H+,H-> - ||H+||^2 ~ 0`` from below, far above pairs of unrelated responses."""
    model, tok = tiny
    base = clipped(hh.head(6)).reset_index(drop=True)
    near = base.assign(rejected=base["chosen"] + " ok", pair_id=base["pair_id"] + "-near")
    scores = score_pairs(pd.concat([base, near], ignore_index=True), model, tok, progress=False)
    alone = score_pairs(base, model, tok, progress=False, token_budget=64)
    np.testing.assert_allclose(scores["chosen_logp"][:6], alone["chosen_logp"], atol=1e-4)
    np.testing.assert_allclose(scores["ches"][:6], alone["ches"], rtol=1e-4)
    assert scores["ches_normalized"][6:].median() > scores["ches_normalized"][:6].median()


def test_analyzer_ches_metrics_flags_and_selection(tiny, hh_table):
    model, tok = tiny
    table = clipped(hh_table.head(40))
    res = analyze_margins(table, reference_model=(model, tok), ches_quantile=0.1, progress=False)
    data = res.pair_data
    assert res.metrics["ches_median"].value == pytest.approx(float(np.median(data["ches"])))
    assert (res.metrics["share_positive_ches"].value
            == pytest.approx(float((data["ches_normalized"] > 0).mean())))
    flags = res.pair_flags[res.pair_flags["reason"] == "high_ches"]
    top = data["ches"].sort_values(ascending=False).index[:4]
    assert set(flags["pair_id"]) == set(top) and len(flags) == 4
    assert np.allclose(flags.set_index("pair_id")["score"].loc[list(top)], data.loc[top, "ches"])
    kept = select_by_ches(res, drop_high=0.25)
    assert len(kept) == 30 and not set(data["ches"].sort_values().index[-10:]) & set(kept)
    assert list(kept) == [i for i in data.index if i in set(kept)], "kept ids stay in their order"
    assert len(select_by_ches(res.pair_data, drop_high=0.5, normalized=True)) == 20
    with pytest.raises(ConfigError, match="drop_high"):
        select_by_ches(res, drop_high=1.0)
    no_ches = analyze_margins(table, scores=res.pair_data.drop(columns=["ches", "ches_normalized"]))
    assert "ches_median" in no_ches.metrics and no_ches.metrics["ches_median"].value is None
    with pytest.raises(ConfigError, match="CHES"):
        select_by_ches(no_ches, drop_high=0.1)


@pytest.mark.slow
def test_smollm2_ches_equals_direct_computation(hh):
    from prefaudit.scoring.models import load_reference

    model, tok = load_reference("smollm2")
    assert_ches_matches_direct(model, tok, hh.head(6), max_length=192, token_budget=1024)


def test_train_ches_drop_removes_the_highest_ches_pairs(sample_dir, tmp_path):
    from prefaudit.audit import read_audit
    from prefaudit.train import TrainConfig, train_dpo

    table = load(sample_dir / "llmbar_natural.json").table
    size = table["prompt"].str.len() + table["chosen"].str.len() + table["rejected"].str.len()
    table = table.loc[size.sort_values(kind="mergesort").index[:16]].reset_index(drop=True)
    model, tok = tiny_causal_lm(list(table["prompt"]) + list(table["chosen"]) + list(table["rejected"]))
    policy = tmp_path / "pass.toml"
    policy.write_text('[rules."hygiene.contradiction_share"]\nmax = 0.02\n', encoding="utf-8")
    config = TrainConfig(max_steps=1, batch_size=4, max_length=64, backend="own")
    run = train_dpo(table, model, tmp_path / "m", tokenizer=tok, policy=policy, config=config,
                    analyzers=["hygiene"], ches_drop=0.25)
    assert run.metadata["pairs"]["dropped"]["ches"] == 4 and run.metadata["pairs"]["trained"] == 12
    assert run.metadata["options"]["ches_drop"] == 0.25
    saved = read_audit(tmp_path / "m" / "audit" / "audit.json")
    assert saved.metrics["margins.share_positive_ches"] is not None
    with pytest.raises(ConfigError, match="ches_drop"):
        train_dpo(table, model, tmp_path / "bad", tokenizer=tok, policy=policy, config=config, ches_drop=1.5)
