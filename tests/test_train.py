"""Gated DPO training on a tiny random model: it learns, it refuses bad data, it records what it did."""

from __future__ import annotations

import copy
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefaudit import testing
from prefaudit.audit import audit
from prefaudit.errors import ConfigError
from prefaudit.loaders import load
from prefaudit.schema import to_pairs
from prefaudit.testing import tiny_causal_lm
from prefaudit.train import GateRefused, TrainConfig, preference_metrics, train_dpo

PASSING = '[rules."hygiene.contradiction_share"]\nmax = 0.02\n'


@pytest.fixture(scope="module")
def clean_pairs(sample_dir: Path) -> pd.DataFrame:
    """The 16 shortest LLMBar-Natural pairs (real, single gold label, no hygiene defects)."""
    table = load(sample_dir / "llmbar_natural.json").table
    size = table["prompt"].str.len() + table["chosen"].str.len() + table["rejected"].str.len()
    return table.loc[size.sort_values(kind="mergesort").index[:16]].reset_index(drop=True)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, sample_dir: Path) -> Path:
    """A tiny random Llama + byte-level tokenizer saved as a local model folder."""
    rows = load(sample_dir / "planted_defects.jsonl").table
    model, tok = tiny_causal_lm(rows["prompt"].tolist()[:50] + rows["chosen"].tolist()[:50])
    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tiny_for(texts: pd.DataFrame, seed: int = 0):
    corpus = texts["prompt"].tolist() + texts["chosen"].tolist() + texts["rejected"].tolist()
    return tiny_causal_lm(list(dict.fromkeys(corpus)), seed=seed)


def test_trl_dpo_lowers_loss_and_ranks_chosen_first(clean_pairs, tmp_path):
    model, tok = tiny_for(clean_pairs)
    ref = copy.deepcopy(model)
    pairs = to_pairs(clean_pairs)
    before = preference_metrics(model, ref, tok, pairs, max_length=128)
    assert before["dpo_loss"] == pytest.approx(math.log(2)) and before["reward_accuracy"] == 0.0

    config = TrainConfig(loss="sigmoid", learning_rate=1e-3, max_steps=8, batch_size=8, max_length=128)
    run = train_dpo(clean_pairs, model, tmp_path / "out", tokenizer=tok, policy=_policy(tmp_path),
                    config=config, analyzers=["hygiene"])
    after = preference_metrics(model, ref, tok, pairs, max_length=128)
    assert after["dpo_loss"] < before["dpo_loss"] - 0.05
    assert after["reward_accuracy"] >= 0.75
    assert run.metadata["options"]["backend"] == "trl" and run.forced is False

    meta = json.loads((tmp_path / "out" / "prefaudit_train.json").read_text())
    assert meta["verdict"]["status"] == "pass" and meta["forced"] is False
    assert meta["data_sha256"] == run.metadata["data_sha256"] and len(meta["audit_sha256"]) == 64
    assert meta["pairs"]["trained"] == 16
    assert (tmp_path / "out" / "audit" / "audit.json").is_file()
    from transformers import AutoModelForCausalLM

    assert meta["options"]["precision"] == "fp32"
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert preference_metrics(reloaded, ref, tok, pairs, max_length=128)["dpo_loss"] == pytest.approx(
        after["dpo_loss"], abs=1e-6)
    _assert_plain_and_equal(model, reloaded, tok, pairs)


def _assert_plain_and_equal(model, reloaded, tok, pairs) -> None:
    """The model train_dpo hands back is the one it saved: no wrapper, no hooks, the same logits."""
    import torch

    assert "_original_forward" not in model.__dict__, model.__dict__.get("_original_forward")
    assert "forward" not in model.__dict__, model.__dict__.get("forward")
    hooks = [h for m in model.modules() for h in m._forward_hooks.values()]
    assert hooks == [], f"leftover forward hooks: {hooks}"
    ids = torch.tensor([tok(pairs["prompt"].iloc[0] + pairs["chosen"].iloc[0])["input_ids"][:64]])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, reloaded(input_ids=ids).logits)


def test_bf16_training_hands_back_a_plain_model(clean_pairs, tmp_path):
    """bf16 autocast is chosen explicitly; afterwards the model is unwrapped like the fp32 one."""
    model, tok = tiny_for(clean_pairs)
    config = TrainConfig(loss="sigmoid", learning_rate=1e-3, max_steps=2, batch_size=8, max_length=64,
                         precision="bf16")
    run = train_dpo(clean_pairs, model, tmp_path / "out", tokenizer=tok, policy=_policy(tmp_path),
                    config=config, analyzers=["hygiene"])
    assert run.metadata["options"]["precision"] == "bf16"
    from transformers import AutoModelForCausalLM

    _assert_plain_and_equal(model, AutoModelForCausalLM.from_pretrained(tmp_path / "out"), tok,
                            to_pairs(clean_pairs))


@pytest.mark.parametrize("loss", ["cdpo", "length_reg", "cpo", "ipo"])
def test_own_loop_losses_train(loss, clean_pairs):
    model, tok = tiny_for(clean_pairs)
    ref = copy.deepcopy(model)
    model.requires_grad_(True)
    from prefaudit.train.dpo import train_own

    pairs = to_pairs(clean_pairs).iloc[:8]
    log = train_own(model, ref, tok, pairs,
                    TrainConfig(loss=loss, eps=0.1, alpha=0.01, learning_rate=1e-3, max_steps=5,
                                batch_size=8, max_length=64, backend="own"))
    assert len(log) == 5 and all(np.isfinite(e["loss"]) for e in log)
    assert log[-1]["loss"] < log[0]["loss"]
    # CPO has no reference term; its implicit reward against the reference is not its target
    if loss != "cpo":
        assert preference_metrics(model, ref, tok, pairs, max_length=64)["reward_accuracy"] > 0.5


def test_training_is_deterministic(clean_pairs):
    from prefaudit.train.dpo import train_own

    pairs = to_pairs(clean_pairs).iloc[:8]
    losses = []
    for _ in range(2):
        model, tok = tiny_for(clean_pairs)
        ref = copy.deepcopy(model)
        model.requires_grad_(True)
        log = train_own(model, ref, tok, pairs, TrainConfig(max_steps=3, batch_size=4, max_length=64,
                                                            learning_rate=1e-3, backend="own"))
        losses.append([e["loss"] for e in log])
    assert losses[0] == losses[1]


def _policy(tmp_path: Path) -> Path:
    p = tmp_path / "pass.toml"
    p.write_text(PASSING, encoding="utf-8")
    return p


def test_gate_refusal_and_force_in_python(sample_dir, tmp_path):
    table = load(sample_dir / "planted_defects.jsonl").table
    model, tok = tiny_for(table.iloc[:30])
    result = audit(table, ["hygiene"])
    with pytest.raises(GateRefused, match="hygiene.contradiction_share") as exc:
        train_dpo(table, model, tmp_path / "refused", tokenizer=tok, audit_result=result)
    assert exc.value.verdict.status == "fail"
    assert not (tmp_path / "refused").exists()

    config = TrainConfig(max_steps=2, batch_size=4, max_length=64, backend="own")
    run = train_dpo(table, model, tmp_path / "forced", tokenizer=tok, audit_result=result, force=True,
                    config=config, drop_flags=["contradictory_duplicate", "empty_response"])
    assert run.forced and run.metadata["forced"] is True
    dropped = run.metadata["pairs"]["dropped"]
    assert dropped["contradictory_duplicate"] == round(result.metrics["hygiene.contradiction_share"] * 147)
    assert dropped["empty_response"] > 0
    assert "FORCED" in (tmp_path / "forced" / "run.log").read_text()


def test_label_noise_from_audit_and_its_errors(clean_pairs, tmp_path):
    model, tok = tiny_for(clean_pairs)
    with pytest.raises(ConfigError, match="agreement.flip_rate was not measured"):
        train_dpo(clean_pairs, model, tmp_path / "o", tokenizer=tok, policy=_policy(tmp_path),
                  config=TrainConfig(loss="robust"), analyzers=["hygiene", "agreement"])
    with pytest.raises(ConfigError, match=r"must be in \[0, 0.5\)"):
        train_dpo(clean_pairs, model, tmp_path / "o", tokenizer=tok, policy=_policy(tmp_path),
                  config=TrainConfig(loss="robust"), label_noise=0.6, analyzers=["hygiene"])
    with pytest.raises(ConfigError, match="no 'cpo' loss"):
        TrainConfig(loss="cpo", backend="trl").resolved_backend()


def planted_flips(n_train: int = 400, n_test: int = 48, accuracy: float = 0.6, n_annotators: int = 5,
                  seed: int = 0):
    """Five annotators per pair, each right with ``accuracy`` (majority flipped ~30 %), and clean
    test pairs."""
    rng = np.random.default_rng(seed)
    good = ["Sure, here is a clear and correct answer.", "Happy to help: the answer, step by step.",
            "Here is a careful, accurate reply."]
    bad = ["no idea lol", "whatever, figure it out", "I dunno, not my problem"]
    topics = ["tea", "rivers", "cats", "taxes", "python", "rain", "maps", "bread"]

    def pair(i: int) -> tuple[str, str, str, str]:
        t = topics[rng.integers(len(topics))]
        return (f"p{i}", f"Question {i} about {t}: what should I know?",
                f"{good[rng.integers(3)]} It concerns {t}.", f"{bad[rng.integers(3)]} {t}?")

    train, test = [pair(i) for i in range(n_train)], [pair(1000 + i) for i in range(n_test)]
    rows = []
    for pid, prompt, g, b in train:
        for a in range(n_annotators):
            c, r = (g, b) if rng.random() < accuracy else (b, g)
            rows.append({"pair_id": pid, "prompt": prompt, "chosen": c, "rejected": r, "annotator": f"a{a}",
                         "tie": False, "strength": np.nan, "source": "planted_flips"})
    truth = {pid: g for pid, _, g, _ in train}
    return pd.DataFrame(rows), truth, pd.DataFrame(test, columns=["pair_id", "prompt", "chosen", "rejected"])


def test_audit_flip_estimate_feeds_robust_dpo(tmp_path):
    """Planted ~30 % flipped majority labels: the audit's estimate is close and rDPO trains with it.

    Measured separately (3 annotators right 64 % of the time, 96 train pairs, 30 steps, lr 1e-3,
    seeds 0/1/2, 64 clean held-out pairs): held-out preference accuracy rDPO 0.58 / 0.92 / 0.72
    vs plain DPO 0.56 / 0.81 / 0.75. rDPO was ahead on average but not on every seed, and the
    Dawid-Skene flip estimate varies by +-0.1 or more at this size, so only what is robust is
    asserted here: the seeded estimate, the eps recorded, and rDPO's larger margins.
    """
    table, truth, test = planted_flips()
    pairs = to_pairs(table)
    actual = float((pairs["chosen"] != pairs["pair_id"].map(truth)).mean())
    result = audit(table, ["hygiene", "agreement"], options={"agreement": {"n_bootstrap": 50}})
    estimate = result.metrics["agreement.flip_rate"]
    assert 0.2 <= actual <= 0.4
    assert abs(estimate - actual) < 0.1

    corpus = pd.concat([table, test])
    out = {}
    for loss in ("sigmoid", "robust"):
        model, tok = tiny_for(corpus)
        ref = copy.deepcopy(model)
        config = TrainConfig(loss=loss, learning_rate=1e-3, max_steps=6, batch_size=16, max_length=64,
                             backend="own")
        run = train_dpo(table, model, tmp_path / loss, tokenizer=tok, audit_result=result, force=True,
                        config=config)
        out[loss] = (run, preference_metrics(model, ref, tok, test, max_length=64))
    assert out["robust"][0].metadata["options"]["eps"] == pytest.approx(estimate)
    assert out["sigmoid"][0].metadata["options"]["eps"] == 0.0
    # rDPO scales the clean-label gradient by 1 / (1 - 2 eps): same seed and steps, larger held-out margins
    assert out["robust"][1]["mean_margin"] > out["sigmoid"][1]["mean_margin"] > 0


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return testing.run_cli(*args, cwd=cwd, timeout=300)


def test_cli_train_refuses_planted_defects_then_forces(sample_dir, tiny_model_dir, tmp_path):
    data = str(sample_dir / "planted_defects.jsonl")
    common = ["--model", str(tiny_model_dir), "--analyzers", "hygiene", "--steps", "2", "--batch-size", "4",
              "--max-length", "64"]
    r = run_cli("train", data, "--output-dir", str(tmp_path / "refused"), *common, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "FAIL: hygiene.contradiction_share" in r.stdout and "refused" in r.stderr
    assert not (tmp_path / "refused").exists()

    r = run_cli("train", data, "--output-dir", str(tmp_path / "forced"), "--force", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "forced" / "prefaudit_train.json").read_text())
    assert meta["forced"] is True and meta["verdict"]["status"] == "fail"
    assert (tmp_path / "forced" / "config.json").is_file()
    assert any(p.name.endswith(".safetensors") for p in (tmp_path / "forced").iterdir())
    assert "Traceback" not in r.stderr


def test_cli_train_from_a_saved_audit(sample_dir, tiny_model_dir, tmp_path, capsys):
    """`train --from-audit DIR` gates and selects with the saved audit (no analyzer runs again) and
    refuses an audit of other data with exit 2 and one line, before any model loads."""
    cli = testing.cli_in_process
    data = sample_dir / "planted_defects.jsonl"
    code, _, err = cli(capsys, "audit", data, "--analyzers", "hygiene", "--no-gate", "--no-pdf",
                       "--out", tmp_path / "audit")
    assert code == 0, err
    saved = json.loads((tmp_path / "audit" / "audit.json").read_text())
    flags = pd.read_csv(tmp_path / "audit" / "pair_flags.csv")
    drop = ("contradictory_duplicate", "identical_responses")
    common = ["--model", tiny_model_dir, "--from-audit", tmp_path / "audit", "--drop-flags", ",".join(drop),
              "--steps", "1", "--batch-size", "4", "--max-length", "64", "--backend", "own"]

    code, out, _ = cli(capsys, "train", data, "--output-dir", tmp_path / "refused", *common)
    assert code == 1 and "FAIL: hygiene.contradiction_share" in out and not (tmp_path / "refused").exists()
    code, _, err = cli(capsys, "train", data, "--output-dir", tmp_path / "m", "--force", *common)
    assert code == 0, err
    meta = json.loads((tmp_path / "m" / "prefaudit_train.json").read_text())
    retrained = json.loads((tmp_path / "m" / "audit" / "audit.json").read_text())
    assert set(retrained["metrics"]) == set(saved["metrics"])  # hygiene only: the default audit was not run
    assert meta["data_sha256"] == saved["summary"]["content_sha256"]
    pairs = to_pairs(load(data).table)
    live = pairs.loc[~pairs["tie"], "pair_id"].astype(str)
    hit = live.isin(set(flags.loc[flags["reason"].isin(drop), "pair_id"].astype(str)))
    assert sum(meta["pairs"]["dropped"][r] for r in drop) == hit.sum() > 0
    assert meta["pairs"]["trained"] == (~hit).sum()

    other = sample_dir / "llmbar_natural.json"
    code, _, err = cli(capsys, "train", other, "--output-dir", tmp_path / "other", *common)
    assert code == 2 and not (tmp_path / "other").exists()
    line = err.strip()
    assert "\n" not in line and "audit was computed on other data" in line and "audit.json" in line
    code, _, err = cli(capsys, "train", data, "--output-dir", tmp_path / "other", *common,
                       "--analyzers", "length")
    assert code == 2 and "--analyzers applies when train audits the data; not with --from-audit" in err


def test_margin_selection_drops_the_lowest_reference_margins(clean_pairs, tmp_path):
    model, tok = tiny_for(clean_pairs)
    config = TrainConfig(max_steps=1, batch_size=4, max_length=64, backend="own")
    run = train_dpo(clean_pairs, model, tmp_path / "m", tokenizer=tok, policy=_policy(tmp_path),
                    config=config, analyzers=["hygiene"], margin_drop=(0.25, 0.0))
    assert run.metadata["pairs"]["dropped"]["margin"] == 4 and run.metadata["pairs"]["trained"] == 12
    from prefaudit.audit import read_audit

    margins = read_audit(tmp_path / "m" / "audit" / "audit.json").metrics
    assert margins["margins.reference_accuracy"] is not None


def test_lora_trains_and_saves_only_the_adapter(clean_pairs, tmp_path):
    model, tok = tiny_for(clean_pairs)
    config = TrainConfig(max_steps=2, batch_size=4, max_length=64, learning_rate=1e-2, backend="own")
    run = train_dpo(clean_pairs, model, tmp_path / "lora", tokenizer=tok, policy=_policy(tmp_path),
                    config=config, analyzers=["hygiene"], lora=True)
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    assert (run.metadata["options"]["lora"] is True
            and run.log_history[-1]["loss"] != run.log_history[0]["loss"])
