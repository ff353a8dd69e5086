"""``prefaudit export`` / ``export_pairs``: the pairs training would use, TRL-ready."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefaudit import audit, load, testing
from prefaudit.export import REF_COLUMNS, export_pairs, write_export
from prefaudit.testing import cli_in_process as cli
from prefaudit.testing import tiny_causal_lm

REPO = Path(__file__).resolve().parent.parent
DROP = ("contradictory_duplicate", "empty_response", "identical_responses")


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return testing.run_cli(*args, cwd=REPO)


def dpo_config(out: Path, **kw):
    from trl import DPOConfig

    return DPOConfig(output_dir=str(out), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
                     logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, max_length=256,
                     dataloader_num_workers=0, seed=0, disable_tqdm=True, bf16=False,
                     gradient_checkpointing=False, **kw)


@pytest.fixture(scope="module")
def planted_export(sample_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """``prefaudit audit`` of the planted-defects sample, then ``prefaudit export --from-audit``."""
    work = tmp_path_factory.mktemp("export")
    data = sample_dir / "planted_defects.jsonl"
    proc = run_cli("audit", data, "--analyzers", "hygiene", "--no-gate", "--no-pdf", "--out", work / "audit")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("export", data, "--from-audit", work / "audit", "--drop-flags", ",".join(DROP),
                   "--out", work / "clean.parquet")
    assert proc.returncode == 0, proc.stderr
    return {"data": data, "audit": work / "audit", "parquet": work / "clean.parquet",
            "sidecar": work / "clean.export.json"}


def test_export_drops_flagged_pairs_and_sidecar_matches_pair_flags(planted_export):
    flags = pd.read_csv(planted_export["audit"] / "pair_flags.csv", dtype={"pair_id": str})
    exported = pd.read_parquet(planted_export["parquet"])
    meta = json.loads(planted_export["sidecar"].read_text())
    saved = json.loads((planted_export["audit"] / "audit.json").read_text())
    # independent count: each reason in turn removes its flagged pairs still left
    left = set(load(planted_export["data"]).table["pair_id"])
    expected = {"tie": 0}
    for reason in sorted(DROP):
        hit = set(flags.loc[flags["reason"] == reason, "pair_id"]) & left
        expected[reason] = len(hit)
        left -= hit
    assert meta["dropped"] == expected and all(expected[r] > 0 for r in DROP)
    assert set(exported["pair_id"]) == left and meta["n_pairs"] == len(exported) == len(left)
    assert not set(exported["pair_id"]) & set(flags.loc[flags["reason"].isin(DROP), "pair_id"])
    assert meta["content_sha256"] == saved["summary"]["content_sha256"]
    assert meta["verdict"]["status"] == "fail"  # the audited (uncleaned) data fails the default policy
    assert list(exported.columns) == ["prompt", "chosen", "rejected", "pair_id"]


@pytest.mark.slow
def test_export_with_its_own_audit_gives_the_same_parquet(planted_export, tmp_path):
    """The acceptance command as written (export audits the data itself, default analyzers)
    writes the same pairs as the export from the saved hygiene audit."""
    proc = run_cli("export", planted_export["data"], "--drop-flags", ",".join(DROP), "--out",
                   tmp_path / "c.parquet")
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "c.parquet"),
                                  pd.read_parquet(planted_export["parquet"]))
    meta = json.loads((tmp_path / "c.export.json").read_text())
    assert meta["dropped"] == json.loads(planted_export["sidecar"].read_text())["dropped"]


def test_trl_dpo_trainer_trains_on_the_exported_parquet(planted_export, tmp_path):
    from datasets import Dataset
    from trl import DPOTrainer

    exported = pd.read_parquet(planted_export["parquet"])
    short = exported.loc[(exported["prompt"].str.len()
                          + exported[["chosen", "rejected"]].map(len).max(axis=1))
                         .sort_values(kind="mergesort").index[:8]]
    data = Dataset.from_parquet(str(planted_export["parquet"])).select(short.index.tolist())
    model, tok = tiny_causal_lm(short["prompt"].tolist() + short["chosen"].tolist())
    policy = copy.deepcopy(model).train().requires_grad_(True)
    trainer = DPOTrainer(model=policy, ref_model=model, args=dpo_config(tmp_path), train_dataset=data,
                         processing_class=tok)
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 2 and all(np.isfinite(losses))
    before = dict(model.named_parameters())
    assert any(not np.allclose(p.detach().numpy(), before[n].detach().numpy())
               for n, p in policy.named_parameters())


def test_from_audit_refuses_other_data(planted_export, sample_dir, tmp_path, capsys):
    code, _, err = cli(capsys, "export", sample_dir / "llmbar_natural.json", "--from-audit",
                       planted_export["audit"], "--out", tmp_path / "x.parquet")
    assert code == 2 and not (tmp_path / "x.parquet").exists()
    line = err.strip()
    assert "\n" not in line and "audit was computed on other data" in line and "audit.json" in line


def test_wrong_output_suffix_is_refused_before_the_audit(sample_dir, tmp_path, capsys):
    code, _, err = cli(capsys, "export", sample_dir / "llmbar_natural.json", "--format", "jsonl",
                       "--out", tmp_path / "x.parquet")
    assert code == 2 and "format 'jsonl' writes a .jsonl file" in err and not list(tmp_path.iterdir())


def test_export_pairs_refuses_an_audit_of_other_data(sample_dir):
    from prefaudit.errors import DataFormatError

    table = load(sample_dir / "llmbar_natural.json").table
    result = audit(table.head(10), ["hygiene"])
    with pytest.raises(DataFormatError, match="audit was computed on other data"):
        export_pairs(table, result)


def test_conversational_formats_and_jsonl(sample_dir, tmp_path):
    chat = load(sample_dir / "llama_factory_dpo_en_100.json").table.head(20)
    result = audit(chat, ["hygiene"])
    frame = export_pairs(chat, result)
    assert frame["prompt"].tolist() == chat["prompt_messages"].tolist()
    assert frame["chosen"].tolist() == chat["chosen_messages"].tolist()
    text = load(sample_dir / "llmbar_natural.json").table.head(10)
    res = audit(text, ["hygiene"])
    conv = export_pairs(text, res, format="trl-conversational")
    assert conv["prompt"].tolist() == [[{"role": "user", "content": p}] for p in text["prompt"]]
    assert conv["rejected"].tolist() == [[{"role": "assistant", "content": r}] for r in text["rejected"]]
    plain = export_pairs(text, res, format="jsonl")
    assert (plain[["prompt", "chosen", "rejected"]].to_dict("list")
            == text[["prompt", "chosen", "rejected"]].to_dict("list"))
    paths = write_export(plain, tmp_path / "clean.jsonl", res, format="jsonl")
    back = pd.read_json(paths["data"], lines=True)
    assert back["chosen"].tolist() == plain["chosen"].tolist()
    assert json.loads(paths["sidecar"].read_text())["n_pairs"] == 10


def test_export_uses_the_same_selection_as_training(sample_dir):
    """Ties dropped and judgements majority-collapsed, as train_dpo does (PandaLM, 3 annotators)."""
    from prefaudit.schema import to_pairs
    from prefaudit.selection import select_pairs

    table = load(sample_dir / "pandalm_testset_v1.json").table
    result = audit(table, ["hygiene"])
    frame = export_pairs(table, result, drop_flags=("empty_response",))
    pairs, dropped = select_pairs(table, result, drop_flags=("empty_response",))
    assert frame["pair_id"].tolist() == pairs["pair_id"].astype(str).tolist()
    majority = to_pairs(table)
    assert dropped["tie"] == int(majority["tie"].sum()) > 0
    assert len(frame) == len(majority) - dropped["tie"] - dropped["empty_response"]


def test_reference_logps_come_from_the_margins_analyzer(sample_dir):
    table = load(sample_dir / "llmbar_natural.json").table.head(8)
    model, tok = tiny_causal_lm(table["prompt"].tolist())
    result = audit(table, ["hygiene", "margins"],
                   options={"margins": {"reference_model": (model, tok), "progress": False}})
    frame = export_pairs(table, result)
    data = result.results["margins"].pair_data.loc[frame["pair_id"]]
    assert frame["ref_chosen_logps"].tolist() == data["chosen_logp"].tolist()
    assert frame["ref_rejected_logps"].tolist() == data["rejected_logp"].tolist()
    no_margins = export_pairs(table, audit(table, ["hygiene"]))
    assert not set(REF_COLUMNS) & set(no_margins.columns)


@pytest.mark.slow
def test_trl_reuses_exported_reference_logps(sample_dir, tmp_path):
    """The exported log-probs equal the ones TRL 1.16 computes itself with
    ``precompute_ref_log_probs=True``; a trainer whose ``precompute_ref_logps`` attribute is
    switched on reads them from the columns (the first loss equals TRL's own precomputed run,
    and moves when the columns move); without that switch TRL ignores the columns."""
    from datasets import Dataset
    from trl import DPOTrainer

    table = load(sample_dir / "llmbar_natural.json").table
    table = table.loc[(table["prompt"].str.len() + table["chosen"].str.len()).sort_values(kind="mergesort")
                      .index[:8]].reset_index(drop=True)
    # prompts end in a newline: prefaudit's tokenisation and TRL's then agree token for token
    table["prompt"] = table["prompt"] + "\n"
    model, tok = tiny_causal_lm(table["prompt"].tolist() + table["chosen"].tolist())
    result = audit(table, ["hygiene", "margins"],
                   options={"margins": {"reference_model": (model, tok), "progress": False}})
    frame = export_pairs(table, result)

    def first_loss(df: pd.DataFrame, precompute: bool, switch: bool = False) -> tuple[float, DPOTrainer]:
        policy = copy.deepcopy(model).train().requires_grad_(True)
        trainer = DPOTrainer(model=policy, ref_model=copy.deepcopy(model), processing_class=tok,
                             args=dpo_config(tmp_path, precompute_ref_log_probs=precompute),
                             train_dataset=Dataset.from_pandas(df, preserve_index=False))
        if switch:
            trainer.precompute_ref_logps = True
        trainer.train()
        return next(e["loss"] for e in trainer.state.log_history if "loss" in e), trainer

    trl_loss, trl_run = first_loss(frame.drop(columns=list(REF_COLUMNS)), precompute=True)
    for col in REF_COLUMNS:
        np.testing.assert_allclose(trl_run.train_dataset[col], frame[col], rtol=1e-5, atol=1e-3)
    ours, _ = first_loss(frame, precompute=False, switch=True)
    assert ours == pytest.approx(trl_loss, abs=1e-4)
    shifted = frame.assign(ref_chosen_logps=frame["ref_chosen_logps"] + 5.0)
    assert first_loss(shifted, precompute=False, switch=True)[0] != pytest.approx(trl_loss, abs=1e-2)
    assert first_loss(shifted, precompute=False)[0] == pytest.approx(trl_loss, abs=1e-4)


@pytest.mark.slow
def test_cli_export_with_reference_model_adds_reference_logps(sample_dir, tmp_path):
    """``export --reference-model DIR``: the audit scores the pairs, the parquet carries the
    log-probs (equal to a direct score_pairs of the exported pairs), and ``--from-audit`` with
    the same model and cache gives the same columns."""
    from prefaudit.scoring.logprobs import score_pairs

    table = load(sample_dir / "llmbar_natural.json").table.head(6)
    data = tmp_path / "six.jsonl"
    table[["pair_id", "prompt", "chosen", "rejected"]].rename(columns={"pair_id": "id"}).to_json(
        data, orient="records", lines=True)
    model, tok = tiny_causal_lm(table["prompt"].tolist())
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    common = ("--reference-model", tmp_path / "tiny", "--cache-dir", tmp_path / "cache")
    proc = run_cli("export", data, "--analyzers", "hygiene", *common, "--out", tmp_path / "a.parquet")
    assert proc.returncode == 0, proc.stderr
    got = pd.read_parquet(tmp_path / "a.parquet")
    direct = score_pairs(load(data).table, model, tok, progress=False)
    np.testing.assert_allclose(got["ref_chosen_logps"], direct["chosen_logp"], rtol=1e-5)
    np.testing.assert_allclose(got["ref_rejected_logps"], direct["rejected_logp"], rtol=1e-5)
    assert json.loads((tmp_path / "a.export.json").read_text())["reference_logps"] is True
    assert run_cli("audit", data, "--analyzers", "hygiene", "--no-gate", "--no-pdf", "--out",
                   tmp_path / "audit").returncode == 0
    proc = run_cli("export", data, "--from-audit", tmp_path / "audit", *common, "--out",
                   tmp_path / "b.parquet")
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "b.parquet"), got)
