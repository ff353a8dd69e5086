"""The fast log-prob scorer equals a plain one-forward-per-sequence implementation, on a tiny
random model and on the real SmolLM2; caching, resume, truncation and model resolution."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
import torch

from prefaudit.errors import ConfigError
from prefaudit.loaders import load
from prefaudit.scoring.logprob_cache import LogprobCache, model_key
from prefaudit.scoring.logprobs import encode_pairs, plan_batches, score_pairs
from prefaudit.scoring.models import load_reference, plain_copy_of_gguf, smollm2_gguf_path
from prefaudit.testing import tiny_causal_lm


def plain_logp(model, prompt_ids, response_ids) -> float:
    """Reference implementation: one unpadded forward pass over prompt + response (without a
    prompt, the first response token has no prediction and is not scored, as in TRL)."""
    ids = torch.tensor([list(prompt_ids) + list(response_ids)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    lp = torch.log_softmax(logits[:-1], dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(lp[max(len(prompt_ids) - 1, 0):].double().sum())


def assert_matches_plain(model, tok, pairs, **kw) -> pd.DataFrame:
    scores = score_pairs(pairs, model, tok, progress=False, **kw)
    encoded = encode_pairs(tok, pairs, max_length=kw.get("max_length"), encoding=kw.get("encoding", "trl"))
    for e, (c, r) in zip(encoded, scores[["chosen_logp", "rejected_logp"]].to_numpy(), strict=True):
        assert c == pytest.approx(plain_logp(model, e.prompt, e.chosen), abs=1e-4)
        assert r == pytest.approx(plain_logp(model, e.prompt, e.rejected), abs=1e-4)
    return scores


def chat(prompt: str, chosen: str, rejected: str, system: str | None = None) -> dict:
    pm = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "prompt_messages": pm,
            "chosen_messages": [{"role": "assistant", "content": chosen}],
            "rejected_messages": [{"role": "assistant", "content": rejected}]}


def text(prompt: str, chosen: str, rejected: str) -> dict:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "prompt_messages": None,
            "chosen_messages": None, "rejected_messages": None}


@pytest.fixture(scope="module")
def hh(sample_dir) -> pd.DataFrame:
    return load(sample_dir / "hh_rlhf_harmless_test_300.jsonl").table


@pytest.fixture(scope="module")
def mixed_pairs(hh) -> pd.DataFrame:
    """Real HH pairs (a short and a long multi-turn prompt), an empty prompt, and chat pairs."""
    lengths = hh["prompt"].str.len()
    short, long_ = hh.loc[lengths.idxmin()], hh.loc[lengths.idxmax()]
    rows = [text(short["prompt"], short["chosen"], short["rejected"]),
            text(long_["prompt"][-700:], long_["chosen"][:300], long_["rejected"][:300]),
            text("", "Hello.", "Go away."),
            chat("What is 2+2?", "4", "Five, I think.", system="Be brief."),
            chat(hh["chosen"].iloc[3][:300], "Sure, here it is.", hh["rejected"].iloc[3][:200])]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("encoding", ["trl", "natural"])
def test_fast_equals_plain_on_tiny_model(tiny, mixed_pairs, encoding):
    model, tok = tiny
    full = assert_matches_plain(model, tok, mixed_pairs, token_budget=600, encoding=encoding)
    cut = assert_matches_plain(model, tok, mixed_pairs, max_length=96, token_budget=300, encoding=encoding)
    truncated = cut[["prompt_truncated", "chosen_truncated", "rejected_truncated"]].sum(axis=1)
    assert (truncated > 0).sum() >= 2, "the long prompt and long responses must be cut at 96 tokens"
    assert ((cut["prompt_tokens"] + cut[["chosen_tokens", "rejected_tokens"]].max(axis=1)) <= 96).all()
    kept = cut["chosen_tokens"] + cut["chosen_truncated"]
    assert (kept == full["chosen_tokens"]).all(), "kept + truncated tokens must add up to the full count"


def build_arch(arch: str, tok):
    """A tiny random GPT-2 (plain linear head) or Gemma2 (soft-capped logits) over ``tok``'s vocabulary."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    if arch == "gpt2":  # plain linear head: the head runs on response positions only
        return GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4,
                                          n_positions=1024, bos_token_id=1, eos_token_id=1)).eval()
    # soft-capped logits: the full model forward is used
    return Gemma2ForCausalLM(Gemma2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, final_logit_softcapping=5.0,
        pad_token_id=0)).eval()


@pytest.mark.parametrize("arch", ["gpt2", "gemma2_softcap"])
def test_fast_equals_plain_on_other_architectures(tiny, mixed_pairs, arch):
    tok = tiny[1]
    assert_matches_plain(build_arch(arch, tok), tok, mixed_pairs, token_budget=800)


def test_chat_boundary_is_exact(tiny):
    _, tok = tiny
    pairs = pd.DataFrame([chat("Name a colour.", "Blue.", "Seven.", system="Be brief.")])
    for encoding in ("trl", "natural"):
        e = encode_pairs(tok, pairs, encoding=encoding)[0]
        pm = pairs["prompt_messages"][0]
        full = tok.apply_chat_template(pm + pairs["chosen_messages"][0], tokenize=False)
        assert tok.decode(list(e.prompt)) + tok.decode(list(e.chosen)) == full
        assert tok.decode(list(e.prompt)).endswith("<|im_start|>assistant\n")
        assert tok.decode(list(e.chosen)) == "Blue.<|im_end|>\n"


def test_text_boundary_trl_and_natural(tiny):
    _, tok = tiny
    pairs = pd.DataFrame([text("\n\nHuman: hi\n\nAssistant:", "No", "Yes"), text("Q?\n", "A", "B"),
                          text("", "x", "y"), text("Q:", "done<eos>", "no")])
    a, b, c = encode_pairs(tok, pairs, encoding="natural")[:3]
    assert tok.decode(list(a.chosen)) == " No<eos>"          # separator put in, EOS scored
    assert tok.decode(list(b.chosen)) == "A<eos>"            # prompt ends in whitespace: none
    assert c.prompt == (tok.bos_token_id,)                   # empty prompt: one context token
    assert tok.decode(list(encode_pairs(tok, pairs, encoding="natural", add_eos=False)[0].chosen)) == " No"
    a, b, c, d = encode_pairs(tok, pairs)                    # TRL: no separator, EOS string appended once
    assert tok.decode(list(a.chosen)) == "No<eos>" and tok.decode(list(a.rejected)) == "Yes<eos>"
    assert c.prompt == () and tok.decode(list(c.chosen)) == "x<eos>"   # no BOS added: empty prompt
    assert tok.decode(list(d.chosen)) == "done<eos>" and tok.decode(list(d.rejected)) == "no<eos>"


def test_truncation_natural_keeps_prompt_end_trl_keeps_start(tiny, hh):
    _, tok = tiny
    pairs = hh.head(10)
    full, cut = encode_pairs(tok, pairs, encoding="natural"), encode_pairs(tok, pairs, max_length=64,
                                                                            encoding="natural")
    assert any(e.prompt_truncated for e in cut) and any(e.chosen_truncated for e in cut)
    for f, e in zip(full, cut, strict=True):
        assert len(e.prompt) + max(len(e.chosen), len(e.rejected)) <= 64
        assert e.prompt == f.prompt[len(f.prompt) - len(e.prompt):]     # last prompt tokens kept
        assert e.chosen == f.chosen[:len(e.chosen)] and e.rejected == f.rejected[:len(e.rejected)]
        assert e.prompt_truncated == len(f.prompt) - len(e.prompt)
        assert e.rejected_truncated == len(f.rejected) - len(e.rejected)
    full, cut = encode_pairs(tok, pairs), encode_pairs(tok, pairs, max_length=64)
    assert any(len(f.prompt) >= 64 for f in full), "a prompt longer than the budget must be in the sample"
    for f, e in zip(full, cut, strict=True):   # TRL keep_start: each prompt+response keeps its first 64
        assert (e.prompt + e.chosen) == (f.prompt + f.chosen)[:64]
        assert (e.prompt + e.rejected) == (f.prompt + f.rejected)[:64]
        assert e.chosen_truncated == len(f.chosen) - len(e.chosen)
        if len(f.prompt) >= 64:
            assert e.chosen == e.rejected == () and e.prompt_truncated == len(f.prompt) - 64
    with pytest.raises(ConfigError, match="max_length"):
        encode_pairs(tok, pairs, max_length=1)
    with pytest.raises(ConfigError, match="encoding"):
        encode_pairs(tok, pairs, encoding="raw")


def test_plan_batches_respects_budget():
    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(200)]
    batches = plan_batches(lengths, 1000)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 1000


def test_killed_run_with_damaged_cache_resumes_with_identical_numbers(tiny, hh, tmp_path):
    model, tok = tiny
    pairs = hh.head(24)

    class Stop(Exception):
        pass

    def stop_after_two(done, total):
        if done >= 8:
            raise Stop

    kw = {"max_length": 80, "token_budget": 400, "progress": False}
    with pytest.raises(Stop):
        score_pairs(pairs, model, tok, cache_dir=tmp_path / "a", on_batch=stop_after_two, **kw)
    written = list((tmp_path / "a" / "logprobs").glob("*.jsonl"))
    lines = written[0].read_text().splitlines()
    assert len(written) == 1 and 8 <= len(lines) < 24
    # killed while writing: the last line is cut in half, and a line in the middle is garbage
    damaged = "\n".join(lines[:2] + ['{"k": "x", "v": [1.0]}'] + lines[2:]) + "\n"
    written[0].write_text(damaged[:-len(lines[-1]) // 2])
    calls = []
    resumed = score_pairs(pairs, model, tok, cache_dir=tmp_path / "a",
                          on_batch=lambda d, t: calls.append((d, t)), **kw)
    assert resumed.attrs["cache_lines_discarded"] == 2
    assert calls and calls[-1][1] < 24, "the resumed run must only score what the first did not"
    straight = score_pairs(pairs, model, tok, cache_dir=tmp_path / "b", **kw)
    assert straight.attrs["cache_lines_discarded"] == 0
    pd.testing.assert_frame_equal(resumed, straight, check_exact=True)
    again = []
    reused = score_pairs(pairs, model, tok, cache_dir=tmp_path / "a",
                         on_batch=lambda d, t: again.append(d), **kw)
    assert again == [] and reused.equals(straight) and reused.attrs["cache_lines_discarded"] == 0


def test_cache_discards_damaged_lines_and_keys_on_the_weights(tiny, tmp_path):
    model, _ = tiny
    path = tmp_path / "c.jsonl"
    LogprobCache(path).put_many([("k1", (-1.5, -2.0, 0.25, 0.5)), ("k2", (-2.25, -1.0, -3.0, float("nan")))])
    with path.open("a") as f:
        f.write('{"k": "bad", "v": "x"}\n[1, 2]\n\xff\n{"k": "k3", "v": [-')  # garbage, then killed mid-write
    cache = LogprobCache(path)
    assert cache.discarded == 4 and len(cache) == 2 and cache.get("k1") == (-1.5, -2.0, 0.25, 0.5)
    assert cache.get("k3") is None and np.isnan(cache.get("k2")[3])
    cache.put_many([("k3", (-0.5, -0.25, 0.0, 0.0))])
    assert [json.loads(x)["k"] for x in path.read_text().splitlines()] == ["k1", "k2", "k3"]
    assert LogprobCache(path).discarded == 0
    with pytest.raises(ValueError, match="4 values"):
        cache.put_many([("k4", (1.0,))])
    other, _ = tiny_causal_lm(seed=1)
    same, _ = tiny_causal_lm(seed=1)
    assert model_key(other) == model_key(same) != model_key(model)


def test_model_specs_that_cannot_load_raise_config_errors(tmp_path):
    not_model = tmp_path / "weights.bin"
    not_model.write_bytes(b"\0")
    for spec, match in [(str(tmp_path / "nope"), "no such folder"), (str(not_model), "is a file"),
                        (str(tmp_path / "m.gguf"), "no such GGUF"),
                        ("someorg/not-cached-model", "does not download")]:
        with pytest.raises(ConfigError, match=match):
            load_reference(spec, cache_dir=tmp_path)


# ---------------------------------------------------------------- real SmolLM2-135M-Instruct


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2 through the alias; the GGUF is re-homed once into the user cache (~30 s)."""
    return load_reference("smollm2")


@pytest.mark.slow
def test_smollm2_plain_copy_is_reused_and_trainable(smollm2):
    model, tok = smollm2
    assert not getattr(model, "is_quantized", False) and model.dtype == torch.float32
    assert plain_copy_of_gguf(smollm2_gguf_path()) == plain_copy_of_gguf(str(smollm2_gguf_path()))
    assert tok.chat_template and tok.eos_token == "<|im_end|>"


@pytest.mark.slow
def test_smollm2_fast_equals_plain(smollm2):
    model, tok = smollm2
    long_prompt = ("Here is a story about a small town by the sea, its harbour, its fishermen and the "
                   "lighthouse keeper who watched the boats every night. ") * 2 + "Summarise it."
    pairs = pd.DataFrame([
        text("Question: What is the capital of France?\nAnswer:", "Paris.", "Berlin, I believe."),
        text(long_prompt, "A lighthouse keeper in a small harbour town by the sea watches the fishing "
             "boats come and go every single night of the year, and the fishermen trust him.", "Fish."),
        chat("Say hi.", "Hi!", "Hello there, how are you today?", system="Be brief."),
        chat("What colour is the sky on a clear day?", "Blue.", "Green."),
    ])
    scores = assert_matches_plain(model, tok, pairs, max_length=48, token_budget=256)
    assert scores.loc[1, "prompt_truncated"] > 0 and scores.loc[1, "chosen_truncated"] > 0


@pytest.mark.slow
def test_smollm2_ranks_fluent_above_shuffled(smollm2):
    model, tok = smollm2
    fluent = "The capital of France is Paris."
    words = fluent.split()
    random.Random(0).shuffle(words)
    pairs = pd.DataFrame([text("Question: What is the capital of France?\nAnswer:", fluent, " ".join(words))])
    s = score_pairs(pairs, model, tok, progress=False)
    assert s.loc[0, "chosen_logp"] > s.loc[0, "rejected_logp"] + 20
