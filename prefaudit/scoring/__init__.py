"""Scoring engines: the heavy model work the analyzers read.

- :mod:`prefaudit.scoring.models` resolves a ``--reference-model`` (local dir, cached hub id,
  ``.gguf`` file or the alias ``"smollm2"``) into a loaded causal LM and its tokenizer.
- :mod:`prefaudit.scoring.logprobs` scores responses given their prompts (sequence log-probs),
  each prompt once for both responses, batched by a token budget, cached on disk.
- :mod:`prefaudit.scoring.logprob_cache` is that on-disk, append-only, resumable cache.

Nothing heavy is imported here: torch and transformers load only when a scorer is used.
"""
