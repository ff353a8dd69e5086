"""The ``posttrain.*`` metrics of ``prefaudit evaluate``: the trained policy against its reference."""

from __future__ import annotations

from prefaudit.metrics import MetricSpec, declare

#: Prompt clusters with fewer evaluated pairs than this are left out of the by-cluster extremes.
MIN_CLUSTER_PAIRS = 5

METRICS = declare(
    "posttrain", "After training: the policy against its reference",
    MetricSpec("n_pairs_evaluated", "untied pairs scored under the policy and the reference"),
    MetricSpec("reward_accuracy",
               "share of pairs whose implicit reward (log pi - log pi_ref) is strictly higher for the chosen "
               "answer; 0 for a policy equal to its reference (all ties)"),
    MetricSpec("displacement_share",
               "share of pairs whose chosen answer became less likely under the policy than under the "
               "reference (likelihood displacement)"),
    MetricSpec("median_chosen_logp_change",
               "median per-token change of the chosen answer's log-probability, policy minus reference (nats "
               "per token; < 0: the chosen answers were pushed down)"),
    MetricSpec("median_rejected_logp_change",
               "median per-token change of the rejected answer's log-probability, policy minus reference "
               "(nats per token)"),
    MetricSpec("reference_wrong_fixed_share",
               "of the pairs the reference ranked the wrong way (higher log-prob for rejected), the share "
               "the policy ranks the right way: did DPO fix them, or only widen margins it already had"),
    MetricSpec("reference_right_broken_share",
               "of the pairs the reference ranked the right way, the share the policy ranks the wrong way"),
    MetricSpec("min_cluster_reward_accuracy",
               f"lowest reward accuracy over prompt clusters with >= {MIN_CLUSTER_PAIRS} evaluated pairs "
               "(where training generalised least)"),
    MetricSpec("max_cluster_displacement_share",
               f"highest displacement share over prompt clusters with >= {MIN_CLUSTER_PAIRS} evaluated "
               "pairs"),
    MetricSpec("ches_chosen_change_spearman",
               "Spearman correlation between the reference's per-pair length-normalised CHES score and the "
               "per-token change of the chosen log-prob; negative: high-CHES pairs lost chosen likelihood, "
               "as Razin et al. 2024 predict"),
    MetricSpec("n_target_prompts", "target prompts both models answered"),
    MetricSpec("length_ratio",
               "tokens of the policy's greedy responses over the reference's, summed over the target prompts "
               "(> 1: the policy became more verbose)"),
    MetricSpec("kl_per_token",
               "KL(policy || reference) per token, estimated on one seeded sample of the policy per target "
               "prompt: mean of log pi - log pi_ref over the sampled tokens (nats)"),
    MetricSpec("repetition_rate",
               "share of token 3-grams in the policy's greedy responses that repeat an earlier 3-gram of the "
               "same response"),
    MetricSpec("reference_repetition_rate", "the same for the reference's greedy responses (the baseline)"),
    MetricSpec("repetition_increase",
               "repetition_rate minus reference_repetition_rate: the repetition training added"),
)
