"""The reference log-probs prefaudit scores are the ones TRL's DPOTrainer trains with: equal to
``DPOTrainer(precompute_ref_log_probs=True)`` on real HH (text) and LLaMA-Factory
(conversational) pairs, on the tiny model and (slow) on SmolLM2; the bundled training encodes
the same way."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from prefaudit.loaders import load
from prefaudit.schema import to_pairs
from prefaudit.scoring.encoding import encode_pairs, is_conversational, trl_columns
from prefaudit.scoring.logprobs import score_pairs


def trl_reference_logps(model, tok, pairs: pd.DataFrame, max_length: int | None, out_dir) -> pd.DataFrame:
    """TRL's own precomputed reference log-probs of ``pairs`` (rows TRL keeps, in order)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(out_dir), per_device_train_batch_size=4, precompute_ref_log_probs=True,
                     max_length=max_length, report_to="none", use_cpu=True, bf16=False, fp16=False,
                     disable_tqdm=True, dataloader_num_workers=0, seed=0)
    policy, ref = copy.deepcopy(model), copy.deepcopy(model)   # TRL patches the models it is given
    policy.requires_grad_(True)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args,
                         train_dataset=Dataset.from_dict(trl_columns(pairs)),
                         processing_class=copy.deepcopy(tok))
    data = trainer.train_dataset
    return pd.DataFrame({"chosen_logp": data["ref_chosen_logps"], "rejected_logp": data["ref_rejected_logps"],
                         "prompt_ids": data["prompt_ids"], "chosen_ids": data["chosen_ids"]})


@pytest.fixture(scope="module")
def hh(sample_dir) -> pd.DataFrame:
    return to_pairs(load(sample_dir / "hh_rlhf_harmless_test_300.jsonl").table)


@pytest.fixture(scope="module")
def chat_pairs(sample_dir) -> pd.DataFrame:
    return to_pairs(load(sample_dir / "llama_factory_dpo_en_100.json").table)


def assert_equals_trl(model, tok, pairs, max_length, tmp_path, per_token: bool = False) -> pd.DataFrame:
    """Same prompt ids and log-probs as TRL: summed log-probs to 1e-4 (+ float32 rounding), or with
    ``per_token`` the log-probs per response token to 1e-4 nats."""
    ours = score_pairs(pairs, model, tok, max_length=max_length, progress=False, token_budget=2048)
    encoded = encode_pairs(tok, pairs, max_length=max_length)
    kept = [max_length is None or len(e.prompt) < max_length for e in encoded]  # TRL drops the others
    theirs = trl_reference_logps(model, tok, pairs, max_length, tmp_path)
    assert len(theirs) == sum(kept)
    mine = ours[kept].reset_index(drop=True)
    assert [tuple(e.prompt) for e, k in zip(encoded, kept, strict=True) if k] == \
        [tuple(x) for x in theirs["prompt_ids"]], "prompt ids must be TRL's"
    for side in ("chosen", "rejected"):
        if per_token:  # TRL's fused, tiled LM head over a 49k vocabulary: ~1e-5 nats per token apart
            n = mine[f"{side}_tokens"].to_numpy()
            np.testing.assert_allclose(mine[f"{side}_logp"] / n, theirs[f"{side}_logp"] / n,
                                       rtol=0, atol=1e-4)
        else:  # TRL sums in float32 (-1254.4671 vs our float64 -1254.4670 on one pair)
            np.testing.assert_allclose(mine[f"{side}_logp"], theirs[f"{side}_logp"], rtol=1e-6, atol=1e-4)
    return ours


def test_text_pairs_equal_trl_precompute(tiny, hh, tmp_path):
    model, tok = tiny
    pairs = hh.head(12)
    assert not is_conversational(pairs)
    full = assert_equals_trl(model, tok, pairs, None, tmp_path / "a")
    cut = assert_equals_trl(model, tok, pairs, 96, tmp_path / "b")
    assert (cut["chosen_truncated"] > 0).any() and (full["chosen_truncated"] == 0).all()


def test_conversational_pairs_equal_trl_precompute(tiny, chat_pairs, tmp_path):
    model, tok = tiny
    pairs = chat_pairs.head(6)
    assert is_conversational(pairs)
    assert_equals_trl(model, tok, pairs, 160, tmp_path)
    prompt = tok.decode(list(encode_pairs(tok, pairs.head(1))[0].prompt))
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")


def test_bundled_training_scores_what_margins_score(tiny, hh):
    """The own loop's and preference_metrics' sequence log-probs equal the margins pass."""
    from prefaudit.train.dpo import _pair_logps

    model, tok = tiny
    pairs = hh.head(8)
    ours = score_pairs(pairs, model, tok, max_length=96, progress=False)
    lc, lr, nc, nr = _pair_logps(model, tok, pairs, 96)
    np.testing.assert_allclose(lc.numpy(), ours["chosen_logp"], atol=1e-4)
    np.testing.assert_allclose(lr.numpy(), ours["rejected_logp"], atol=1e-4)
    assert nc.tolist() == ours["chosen_tokens"].tolist() and nr.tolist() == ours["rejected_tokens"].tolist()


@pytest.mark.slow
def test_smollm2_equals_trl_precompute(hh, chat_pairs, tmp_path):
    from prefaudit.scoring.models import load_reference

    model, tok = load_reference("smollm2")
    assert_equals_trl(model, tok, hh.head(16), 256, tmp_path / "text", per_token=True)
    assert_equals_trl(model, tok, chat_pairs.head(8), 256, tmp_path / "chat", per_token=True)
