"""After training: the DPO policy against its reference (``prefaudit evaluate``).

- :mod:`~prefaudit.posttrain.load`: the policy (model folder, LoRA adapter folder, or what
  ``prefaudit train`` wrote) and the reference, checked to share one tokenizer;
- :mod:`~prefaudit.posttrain.changes`: per pair, the change of the chosen and rejected
  log-probabilities from reference to policy (likelihood displacement, reward accuracy, the
  reference-right x policy-right cross table, by prompt cluster);
- :mod:`~prefaudit.posttrain.generation`: on target prompts, greedy responses of both models,
  a KL estimate from the policy's own samples, length drift and repetition;
- :mod:`~prefaudit.posttrain.evaluate`: :func:`evaluate_model`, which runs both and returns the
  audit's result shape (metrics ``posttrain.*``), gated by the same policy mechanism.
"""

from prefaudit.posttrain.evaluate import EVALUATION_FILE, evaluate_model, posttrain_policy, write_evaluation
from prefaudit.posttrain.load import load_policy_and_reference

__all__ = ["EVALUATION_FILE", "evaluate_model", "load_policy_and_reference", "posttrain_policy",
           "write_evaluation"]
