"""Pure statistics the analyzers build on; nothing here reads a pair table's meaning.

- :mod:`~prefaudit.stats.reliability`: agreement coefficients (Krippendorff's alpha as per-pair
  sums, Fleiss' and Cohen's kappa, raw and leave-one-out agreement), both orientations.
- :mod:`~prefaudit.stats.dawid_skene`: Dawid–Skene EM (annotator confusion, consensus posterior).
- :mod:`~prefaudit.stats.bootstrap`: seeded bootstrap resampling of per-pair sums, percentile intervals.
- :mod:`~prefaudit.stats.length_stats`: Wilson interval, binomial test, rank AUC, logistic fit.
- :mod:`~prefaudit.stats.length_balance`: a seeded length-balanced subsample.
- :mod:`~prefaudit.stats.simulate`: simulated annotators for tests and benchmarks.
"""
