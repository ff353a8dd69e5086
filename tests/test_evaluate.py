"""``prefaudit evaluate``: a trained policy against its reference, on real pairs and tiny models.

Every number the evaluation claims is recomputed here independently: each pair's chosen and
rejected log-probs under both models by a plain forward pass, one sequence at a time.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from prefaudit.cli import main
from prefaudit.loaders import load
from prefaudit.posttrain import evaluate_model
from prefaudit.posttrain.generation import repeated_ngrams
from prefaudit.schema import to_pairs
from prefaudit.scoring.logprobs import encode_pairs
from prefaudit.testing import tiny_causal_lm

MAX_LENGTH = 128


@pytest.fixture(scope="module")
def pairs(sample_dir: Path) -> pd.DataFrame:
    """The 16 shortest LLMBar-Natural pairs (real, single gold label)."""
    table = to_pairs(load(sample_dir / "llmbar_natural.json").table)
    size = table["prompt"].str.len() + table["chosen"].str.len() + table["rejected"].str.len()
    return table.loc[size.sort_values(kind="mergesort").index[:16]].reset_index(drop=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory, pairs: pd.DataFrame) -> dict[str, Path]:
    """The pairs as a TRL-standard JSONL, target prompts, and a tiny model folder made for them."""
    root = tmp_path_factory.mktemp("evaluate")
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")}) + "\n"
                            for r in pairs.to_dict("records")), encoding="utf-8")
    target = root / "target.txt"
    target.write_text("\n".join(p.replace("\n", " ") for p in pairs["prompt"].iloc[:3]) + "\n",
                      encoding="utf-8")
    corpus = list(dict.fromkeys(pairs["prompt"].tolist() + pairs["chosen"].tolist()
                                + pairs["rejected"].tolist()))
    model, tok = tiny_causal_lm(corpus)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    return {"data": data, "target": target, "tiny": root / "tiny", "root": root}


def sequential_logps(model, tok, pairs: pd.DataFrame, max_length: int | None) -> np.ndarray:
    """(n, 2) summed log-probs of chosen and rejected: one plain forward pass per sequence."""
    out = np.zeros((len(pairs), 2))
    with torch.no_grad():
        for i, e in enumerate(encode_pairs(tok, pairs, max_length=max_length)):
            for j, resp in enumerate((e.chosen, e.rejected)):
                ids = torch.tensor([list(e.prompt) + list(resp)])
                logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
                pos = torch.arange(len(e.prompt) - 1, ids.shape[1] - 1)
                out[i, j] = float(logp[pos, ids[0, len(e.prompt):]].sum())
    return out


def evaluation(out: Path) -> dict:
    return json.loads((out / "evaluation.json").read_text(encoding="utf-8"))


def test_policy_equal_to_reference_changes_nothing(files, tmp_path, capsys):
    out = tmp_path / "same"
    code = main(["evaluate", str(files["data"]), "--policy-model", str(files["tiny"]), "--reference-model",
                 str(files["tiny"]), "--target", str(files["target"]), "--out", str(out), "--no-clusters",
                 "--no-pdf", "--max-new-tokens", "12", "--max-length", str(MAX_LENGTH)])
    m = evaluation(out)["metrics"]
    assert m["posttrain.n_pairs_evaluated"] == 16 and m["posttrain.n_target_prompts"] == 3
    assert m["posttrain.reward_accuracy"] == 0.0  # every pair a tie
    assert m["posttrain.displacement_share"] == 0.0 and m["posttrain.median_chosen_logp_change"] == 0.0
    assert m["posttrain.kl_per_token"] == 0.0 and m["posttrain.length_ratio"] == 1.0
    assert m["posttrain.repetition_increase"] == 0.0
    # the bundled policy's post-training rules gate it: a policy no better than a coin fails
    verdict = json.loads((out / "verdict.json").read_text())
    assert code == 1 and verdict["status"] == "fail"
    assert {r["metric"] for r in verdict["rules"]} == {
        "posttrain.reward_accuracy", "posttrain.displacement_share", "posttrain.length_ratio",
        "posttrain.kl_per_token", "posttrain.repetition_increase"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Post-training evaluation" in html and "Most-drifted target prompts" in html
    assert "FAIL: posttrain.reward_accuracy" in capsys.readouterr().out
    # a saved evaluation re-gates on the post-training rules alone
    assert main(["gate", str(out / "evaluation.json"), "--out", str(tmp_path / "regate")]) == 1
    again = json.loads((tmp_path / "regate" / "verdict.json").read_text())
    assert again["rules"] == verdict["rules"]


def test_displacement_matches_a_sequence_at_a_time_computation(files, pairs):
    """A policy moved away from its reference by hand (not trained): the per-pair changes, the
    displacement share, the reward accuracy and the cross table against plain forward passes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = AutoModelForCausalLM.from_pretrained(files["tiny"]).eval()
    tok = AutoTokenizer.from_pretrained(files["tiny"])
    policy = copy.deepcopy(ref)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    result = evaluate_model(pairs, policy, ref, tok, max_length=MAX_LENGTH, progress=False,
                            clusters=(pd.Series(np.arange(16) % 2, index=pairs["pair_id"]),
                                      {0: "even", 1: "odd"}),
                            ches=pd.Series(np.arange(16.0), index=pairs["pair_id"]))
    pol = sequential_logps(policy, tok, pairs, MAX_LENGTH)
    base = sequential_logps(ref, tok, pairs, MAX_LENGTH)
    d = result.results["posttrain"].pair_data
    np.testing.assert_allclose(d["chosen_change"], pol[:, 0] - base[:, 0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d["rejected_change"], pol[:, 1] - base[:, 1], rtol=1e-4, atol=1e-4)
    m = result.metrics
    assert 0 < m["posttrain.displacement_share"] < 1
    assert m["posttrain.displacement_share"] == np.mean(pol[:, 0] < base[:, 0])
    assert m["posttrain.reward_accuracy"] == np.mean((pol[:, 0] - base[:, 0]) > (pol[:, 1] - base[:, 1]))
    n_tok = np.array([len(e.chosen) for e in encode_pairs(tok, pairs, max_length=MAX_LENGTH)])
    assert m["posttrain.median_chosen_logp_change"] == pytest.approx(
        np.median((pol[:, 0] - base[:, 0]) / n_tok), rel=1e-4)
    ref_right, pol_right = base[:, 0] > base[:, 1], pol[:, 0] > pol[:, 1]
    table = result.results["posttrain"].tables["reference_x_policy"]
    assert table.loc["reference wrong", "policy right"] == np.sum(~ref_right & pol_right)
    assert table.loc["reference right", "policy wrong"] == np.sum(ref_right & ~pol_right)
    by = result.results["posttrain"].tables["by_cluster"].set_index("cluster")
    odd = (pol[1::2, 0] < base[1::2, 0]).mean()
    assert by.loc[1, "displacement_share"] == odd and by.loc[1, "label"] == "odd"
    from scipy.stats import spearmanr

    rho = spearmanr(np.arange(16.0), (pol[:, 0] - base[:, 0]) / n_tok).statistic
    assert m["posttrain.ches_chosen_change_spearman"] == pytest.approx(rho)
    assert (set(result.results["posttrain"].pair_flags["pair_id"])
            == set(pairs["pair_id"][pol[:, 0] < base[:, 0]]))


def test_repeated_ngrams_counts_repeats_within_a_response():
    assert repeated_ngrams([1, 2, 3, 1, 2, 3, 1, 2, 3]) == (4, 7)
    assert repeated_ngrams([1, 2, 3, 4]) == (0, 2) and repeated_ngrams([1, 2]) == (0, 0)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prefaudit: error:"), err
    return err[0]


def test_bad_inputs_exit_2_with_one_line(files, pairs, tmp_path, capsys):
    base = ["evaluate", str(files["data"]), "--reference-model", str(files["tiny"]), "--out",
            str(tmp_path / "o"), "--no-clusters", "--no-pdf"]
    # a policy whose tokenizer is not the reference's
    other, other_tok = tiny_causal_lm(["A different corpus gives a different vocabulary entirely."])
    other.save_pretrained(tmp_path / "other")
    other_tok.save_pretrained(tmp_path / "other")
    capsys.readouterr()
    assert main([*base, "--policy-model", str(tmp_path / "other")]) == 2
    assert "tokenizer differs from the reference's" in _error_line(capsys)
    # a target file with no prompts
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    assert main([*base, "--policy-model", str(files["tiny"]), "--target", str(empty)]) == 2
    line = _error_line(capsys)
    assert "empty.txt" in line and "no prompts" in line
    # a missing adapter folder, and an adapter folder without its weights
    assert main([*base, "--policy-model", str(tmp_path / "no_such_adapter")]) == 2
    assert "no_such_adapter: no such folder" in _error_line(capsys)
    broken = tmp_path / "broken_adapter"
    broken.mkdir()
    (broken / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8,
                                                            "task_type": "CAUSAL_LM"}), encoding="utf-8")
    assert main([*base, "--policy-model", str(broken)]) == 2
    assert "cannot apply the LoRA adapter" in _error_line(capsys)
    # a policy folder that names no reference
    assert main(["evaluate", str(files["data"]), "--policy-model", str(files["tiny"]), "--no-pdf",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--reference-model is needed" in _error_line(capsys)


@pytest.mark.slow
def test_train_then_evaluate_the_trained_folder(files, pairs, tmp_path):
    """`prefaudit train` (held-out split, target prompts) records the evaluation; `prefaudit evaluate`
    on the trained folder reads its reference from prefaudit_train.json and gives the same numbers,
    and the displacement share agrees with plain forward passes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy_file = tmp_path / "p.toml"
    policy_file.write_text('[rules."hygiene.contradiction_share"]\nmax = 0.02\n', encoding="utf-8")
    trained = tmp_path / "trained"
    args = ["train", str(files["data"]), "--model", str(files["tiny"]), "--output-dir", str(trained),
            "--analyzers", "hygiene", "--steps", "6", "--batch-size", "8", "--max-length", str(MAX_LENGTH),
            "--learning-rate", "1e-3", "--holdout", "0.25", "--target", str(files["target"]),
            "--backend", "own", "--policy", str(policy_file)]
    assert main(args) == 0
    meta = json.loads((trained / "prefaudit_train.json").read_text())
    recorded = meta["evaluation"]["metrics"]
    assert recorded["posttrain.n_pairs_evaluated"] == 4 and recorded["posttrain.n_target_prompts"] == 3
    assert (trained / "evaluation" / "evaluation.json").is_file()

    out = tmp_path / "eval"
    main(["evaluate", str(files["data"]), "--policy-model", str(trained), "--out", str(out), "--no-clusters",
          "--no-pdf", "--max-length", str(MAX_LENGTH), "--target", str(files["target"])])
    m = evaluation(out)["metrics"]
    assert all(np.isfinite(v) for k, v in m.items() if v is not None)
    assert m["posttrain.n_pairs_evaluated"] == 16
    ref = AutoModelForCausalLM.from_pretrained(files["tiny"]).eval()
    tok = AutoTokenizer.from_pretrained(files["tiny"])
    policy = AutoModelForCausalLM.from_pretrained(trained).eval()
    pol = sequential_logps(policy, tok, pairs, MAX_LENGTH)
    base = sequential_logps(ref, tok, pairs, MAX_LENGTH)
    assert np.abs(pol - base).max() > 1e-3  # training moved the model
    assert m["posttrain.displacement_share"] == np.mean(pol[:, 0] < base[:, 0])
    # the held-out part (train's split) is the same computation on 4 of the 16 pairs
    assert recorded["posttrain.kl_per_token"] == pytest.approx(m["posttrain.kl_per_token"], rel=1e-6)


@pytest.mark.slow
def test_lora_adapter_folder_is_merged_over_the_reference(files, pairs, tmp_path):
    """An adapter folder (what `prefaudit train --lora` saves) is applied to the reference and merged."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = AutoModelForCausalLM.from_pretrained(files["tiny"]).eval()
    tok = AutoTokenizer.from_pretrained(files["tiny"])
    torch.manual_seed(0)
    peft = get_peft_model(copy.deepcopy(ref),
                          LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # B starts at zero: give the adapter an effect
    peft.save_pretrained(tmp_path / "adapter")
    out = tmp_path / "eval"
    main(["evaluate", str(files["data"]), "--policy-model", str(tmp_path / "adapter"), "--reference-model",
          str(files["tiny"]), "--out", str(out), "--no-clusters", "--no-pdf", "--max-length",
          str(MAX_LENGTH)])
    m = evaluation(out)["metrics"]
    merged = PeftModel.from_pretrained(copy.deepcopy(ref), tmp_path / "adapter").merge_and_unload().eval()
    pol, base = (sequential_logps(merged, tok, pairs, MAX_LENGTH),
                 sequential_logps(ref, tok, pairs, MAX_LENGTH))
    assert np.abs(pol - base).max() > 1e-3
    assert m["posttrain.displacement_share"] == np.mean(pol[:, 0] < base[:, 0])
    assert m["posttrain.reward_accuracy"] == np.mean((pol[:, 0] - base[:, 0]) > (pol[:, 1] - base[:, 1]))


@pytest.mark.slow
def test_near_identical_pairs_displace_more_than_clearly_different_ones(sample_dir):
    """The planted case of Razin et al. 2024: DPO on near-identical pairs (one word of the chosen
    answer garbled) lowers the chosen log-prob on more pairs than the same training on the real,
    clearly different HH-RLHF rejected answers (same prompts, chosen answers, seed, steps, lr).
    Measured: 0.91 vs 0.72 of 32 pairs (8 steps, lr 3e-4, batch 8)."""
    from rapidfuzz.distance import Levenshtein

    from prefaudit.train import TrainConfig
    from prefaudit.train.dpo import train_own

    hh = to_pairs(load(sample_dir / "hh_rlhf_harmless_test_300.jsonl").table)
    short = hh["chosen"].str.len().between(40, 200) & hh["rejected"].str.len().between(40, 200)
    real = hh[short].head(32).reset_index(drop=True)

    def garble(text: str) -> str:
        words = text.split()
        i = len(words) // 2
        words[i] = words[i][::-1] if len(words[i]) > 2 else "no"
        return " ".join(words)

    near = real.assign(rejected=real["chosen"].map(garble))
    sim = [Levenshtein.normalized_similarity(a, b)
           for a, b in zip(near["chosen"], near["rejected"], strict=True)]
    far_sim = [Levenshtein.normalized_similarity(a, b)
               for a, b in zip(real["chosen"], real["rejected"], strict=True)]
    assert min(sim) >= 0.8 and np.mean(far_sim) < 0.5
    corpus = list(dict.fromkeys(real["prompt"].tolist() + real["chosen"].tolist()
                                + near["rejected"].tolist()))
    shares = {}
    for name, data in (("near", near), ("far", real)):
        model, tok = tiny_causal_lm(corpus, seed=0)
        ref = copy.deepcopy(model)
        model.requires_grad_(True)
        train_own(model, ref, tok, data, TrainConfig(max_steps=8, batch_size=8, max_length=MAX_LENGTH,
                                                     learning_rate=3e-4, backend="own"))
        model.eval()
        result = evaluate_model(data, model, ref, tok, max_length=MAX_LENGTH, progress=False)
        shares[name] = result.metrics["posttrain.displacement_share"]
    assert shares["near"] > shares["far"] + 0.1, shares


def test_pair_clusters_follow_the_coverage_rule(pairs):
    """The by-cluster table groups pairs by the coverage analyzer's seeded k-means of prompt embeddings."""
    from prefaudit.analyzers.coverage import analyze_coverage
    from prefaudit.posttrain.clusters import pair_clusters
    from prefaudit.similarity.prompt_clusters import default_k

    series, labels = pair_clusters(pairs, seed=0)
    assert series.index.tolist() == pairs["pair_id"].astype(str).tolist()
    assert set(series) == set(range(default_k(pairs["prompt"].nunique()))) == set(labels)
    coverage = analyze_coverage(pairs.assign(annotator=pd.NA, tie=False, strength=np.nan, source="x"), seed=0)
    same = coverage.pair_data["cluster"].reindex(series.index)
    assert (same.to_numpy() == series.to_numpy()).all()  # the audit's clusters, pair for pair


def test_after_training_takes_clusters_and_ches_from_the_audit(files, pairs, tmp_path):
    """What `prefaudit train` runs: the audit's coverage clusters and margins CHES reach the
    evaluation, which is gated on the post-training rules and written with its report."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefaudit.audit import AuditResult
    from prefaudit.loaders.report import LoadReport
    from prefaudit.posttrain.evaluate import CHES_COLUMN, evaluate_after_training
    from prefaudit.results import AnalyzerResult

    ref = AutoModelForCausalLM.from_pretrained(files["tiny"]).eval()
    tok = AutoTokenizer.from_pretrained(files["tiny"])
    policy = copy.deepcopy(ref)
    with torch.no_grad():
        policy.lm_head.weight.mul_(1.5)  # sharper: likely answers gain, unlikely ones lose
    ids = pairs["pair_id"].astype(str)
    audit = AuditResult(summary={}, load_report=LoadReport(), results={
        "coverage": AnalyzerResult("coverage",
                                   pair_data=pd.DataFrame({"cluster": np.arange(16) % 3}, index=ids)),
        "margins": AnalyzerResult("margins",
                                  pair_data=pd.DataFrame({CHES_COLUMN: -np.arange(16.0)}, index=ids))})
    out = tmp_path / "evaluation"
    record = evaluate_after_training(policy, ref, tok, pairs, out, audit=audit, max_length=MAX_LENGTH)
    m = record["metrics"]
    assert m["posttrain.n_pairs_evaluated"] == 16 and m["posttrain.ches_chosen_change_spearman"] is not None
    assert m["posttrain.min_cluster_reward_accuracy"] is not None
    assert record["verdict"]["rules"][0]["metric"].startswith("posttrain.")
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["metrics"] == m and (out / "report.html").is_file()
    assert len(saved["analyzers"]["posttrain"]["tables"]["by_cluster"]["data"]) == 3
    assert evaluate_after_training(policy, ref, tok, pairs.iloc[:0], out) is None  # nothing to evaluate on


def test_target_prompts_are_one_chat_turn_when_the_tokenizer_has_a_template(files):
    from transformers import AutoTokenizer

    from prefaudit.posttrain.generation import prompt_ids

    tok = AutoTokenizer.from_pretrained(files["tiny"])
    text = "Name a prime number."
    chat = tok.decode(prompt_ids(tok, text))
    assert chat == "<|im_start|>user\nName a prime number.<|im_end|>\n<|im_start|>assistant\n"
    assert prompt_ids(tok, text, chat=False) == tok(text)["input_ids"]
    assert prompt_ids(tok, "", chat=False) == [tok.bos_token_id]
