"""Analyzers: each a plain function ``analyze_x(table, **params) -> AnalyzerResult``.

- :mod:`~prefaudit.analyzers.hygiene`: empty responses, chosen == rejected, exact and
  normalised duplicate pairs and prompts, contradictory duplicates, truncated responses,
  length outliers, encoding damage, rows the loader marked.
- :mod:`~prefaudit.analyzers.agreement`: inter-annotator agreement, annotator reliability,
  consensus labels, contested pairs, label-flip rate.
- :mod:`~prefaudit.analyzers.judges`: position bias, swap consistency, per-judge length bias,
  per-generator win rates.
- :mod:`~prefaudit.analyzers.length`: how much "the longer response wins" explains the labels.
- :mod:`~prefaudit.analyzers.coverage`: prompt embeddings, clusters, gaps against a target set.
- :mod:`~prefaudit.analyzers.margins`: reference-model log-probabilities and DPO implicit margins.

Run them together with :func:`prefaudit.audit.audit`; no analyzer imports another. The pure
statistics they share live in :mod:`prefaudit.stats`, the prompt-space helpers in
:mod:`prefaudit.similarity`.
"""
