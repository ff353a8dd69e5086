"""The fast log-prob scorer equals a plain one-forward-per-sequence implementation, on a tiny
random model and on the real SmolLM2; caching, resume, truncation and model resolution."""

from __future__ import annotations

import json
import random

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
    """Reference implementation: one unpadded forward pass over prompt + response."""
    ids = torch.tensor([list(prompt_ids) + list(response_ids)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    lp = torch.log_softmax(logits[:-1], dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(lp[len(prompt_ids) - 1:].double().sum())


def assert_matches_plain(model, tok, pairs, **kw) -> pd.DataFrame:
    scores = score_pairs(pairs, model, tok, progress=False, **kw)
    encoded = encode_pairs(tok, pairs, max_length=kw.get("max_length"))
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
def tiny(hh):
    return tiny_causal_lm(corpus=list(hh["prompt"].head(50)) + list(hh["chosen"].head(50)))


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


def test_fast_equals_plain_on_tiny_model(tiny, mixed_pairs):
    model, tok = tiny
    full = assert_matches_plain(model, tok, mixed_pairs, token_budget=600)
    cut = assert_matches_plain(model, tok, mixed_pairs, max_length=96, token_budget=300)
    truncated = cut[["prompt_truncated", "chosen_truncated", "rejected_truncated"]].sum(axis=1)
    assert (truncated > 0).sum() >= 2, "the long prompt and long responses must be cut at 96 tokens"
    assert ((cut["prompt_tokens"] + cut[["chosen_tokens", "rejected_tokens"]].max(axis=1)) <= 96).all()
    kept = cut["chosen_tokens"] + cut["chosen_truncated"]
    assert (kept == full["chosen_tokens"]).all(), "kept + truncated tokens must add up to the full count"


@pytest.mark.parametrize("arch", ["gpt2", "gemma2_softcap"])
def test_fast_equals_plain_on_other_architectures(tiny, mixed_pairs, arch):
    from transformers import Gemma2Config, Gemma2ForCausalLM, GPT2Config, GPT2LMHeadModel

    tok = tiny[1]
    torch.manual_seed(1)
    if arch == "gpt2":  # plain linear head: the head runs on response positions only
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4,
                                           n_positions=1024, bos_token_id=1, eos_token_id=1))
    else:  # soft-capped logits: the full model forward is used
        model = Gemma2ForCausalLM(Gemma2Config(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, final_logit_softcapping=5.0,
            pad_token_id=0))
    assert_matches_plain(model.eval(), tok, mixed_pairs, token_budget=800)


def test_chat_boundary_is_exact(tiny):
    _, tok = tiny
    pairs = pd.DataFrame([chat("Name a colour.", "Blue.", "Seven.", system="Be brief.")])
    e = encode_pairs(tok, pairs)[0]
    pm = pairs["prompt_messages"][0]
    full = tok.apply_chat_template(pm + pairs["chosen_messages"][0], tokenize=False)
    assert tok.decode(list(e.prompt)) + tok.decode(list(e.chosen)) == full
    assert tok.decode(list(e.prompt)).endswith("<|im_start|>assistant\n")
    assert tok.decode(list(e.chosen)) == "Blue.<|im_end|>\n"


def test_text_boundary_separator_and_eos(tiny):
    _, tok = tiny
    pairs = pd.DataFrame([text("\n\nHuman: hi\n\nAssistant:", "No", "Yes"), text("Q?\n", "A", "B"),
                          text("", "x", "y")])
    a, b, c = encode_pairs(tok, pairs)
    assert tok.decode(list(a.chosen)) == " No<eos>"          # separator put in, EOS scored
    assert tok.decode(list(b.chosen)) == "A<eos>"            # prompt ends in whitespace: none
    assert c.prompt == (tok.bos_token_id,)                   # empty prompt: one context token
    assert tok.decode(list(encode_pairs(tok, pairs, add_eos=False)[0].chosen)) == " No"


def test_truncation_keeps_prompt_end_and_response_start(tiny, hh):
    _, tok = tiny
    pairs = hh.head(10)
    full, cut = encode_pairs(tok, pairs), encode_pairs(tok, pairs, max_length=64)
    assert any(e.prompt_truncated for e in cut) and any(e.chosen_truncated for e in cut)
    for f, e in zip(full, cut, strict=True):
        assert len(e.prompt) + max(len(e.chosen), len(e.rejected)) <= 64
        assert e.prompt == f.prompt[len(f.prompt) - len(e.prompt):]     # last prompt tokens kept
        assert e.chosen == f.chosen[:len(e.chosen)] and e.rejected == f.rejected[:len(e.rejected)]
        assert e.prompt_truncated == len(f.prompt) - len(e.prompt)
        assert e.rejected_truncated == len(f.rejected) - len(e.rejected)
    with pytest.raises(ConfigError, match="max_length"):
        encode_pairs(tok, pairs, max_length=1)


def test_plan_batches_respects_budget_and_resumes_identically():
    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(200)]
    batches = plan_batches(lengths, 1000)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 1000
    # the rows left after k finished batches are re-planned into the same remaining batches
    k = 7
    rest = [i for b in batches[k:] for i in b]
    replanned = plan_batches([lengths[i] for i in rest], 1000)
    assert [[rest[j] for j in b] for b in replanned] == batches[k:]


def test_interrupted_run_resumes_from_cache_with_identical_numbers(tiny, hh, tmp_path):
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
    assert len(written) == 1 and 16 <= len(written[0].read_text().splitlines()) < 48
    calls = []
    resumed = score_pairs(pairs, model, tok, cache_dir=tmp_path / "a",
                          on_batch=lambda d, t: calls.append((d, t)), **kw)
    assert calls and calls[-1][1] < 24, "the resumed run must only score what the first did not"
    straight = score_pairs(pairs, model, tok, cache_dir=tmp_path / "b", **kw)
    pd.testing.assert_frame_equal(resumed, straight, check_exact=True)
    again = []
    reused = score_pairs(pairs, model, tok, cache_dir=tmp_path / "a", on_batch=lambda d, t: again.append(d), **kw)
    assert again == [] and reused.equals(straight)


def test_cache_drops_a_partial_line_and_keys_on_the_weights(tiny, tmp_path):
    model, _ = tiny
    path = tmp_path / "c.jsonl"
    LogprobCache(path).put_many([("k1", -1.5, 3), ("k2", -2.25, 4)])
    with path.open("a") as f:
        f.write('{"k": "k3", "lp": -')  # killed mid-write
    cache = LogprobCache(path)
    assert len(cache) == 2 and cache.get("k2") == (-2.25, 4) and cache.get("k3") is None
    cache.put_many([("k3", -0.5, 1)])
    assert [json.loads(x)["k"] for x in path.read_text().splitlines()] == ["k1", "k2", "k3"]
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
