"""Preference losses, per pair, written out so each can be checked by hand.

Notation: for a pair (x, y_w, y_l) let ``logp_*`` be the policy's summed log-probabilities of
the chosen (w) and rejected (l) responses and ``ref_*`` the reference model's. The DPO
log-ratio difference is

    h = (logp_w - ref_w) - (logp_l - ref_l)

and the implicit reward of a response is beta * (logp - ref). With l(z) = -log sigmoid(z)
(``softplus(-z)``), the losses are:

============  ==========================================================================
``sigmoid``   l(beta h)                                     DPO, Rafailov et al. 2023
``ipo``       (h - 1 / (2 beta))^2                          IPO, Azar et al. 2023 (eq. 17)
``cdpo``      (1 - eps) l(beta h) + eps l(-beta h)          conservative DPO, label smoothing eps
``robust``    ((1 - eps) l(beta h) - eps l(-beta h)) / (1 - 2 eps)
                                                            rDPO, Chowdhury et al. 2024: unbiased
                                                            under labels flipped with rate eps
``length_reg`` l(beta h - alpha (|y_w| - |y_l|))           R-DPO, Park et al. 2024: a longer chosen
                                                            answer must earn more margin
``cpo``       l(beta (logp_w - logp_l)) + lam * NLL(y_w)    CPO, Xu et al. 2024: reference-free, plus
                                                            a likelihood term on the chosen answer
============  ==========================================================================

Every function returns one loss per pair (a 1-D tensor); callers take the mean. At h = 0
(policy equal to the reference) ``sigmoid`` is exactly log 2; it is below log 2 when the policy
favours the chosen response more than the reference does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefaudit.train.config import LOSSES  # the loss names preference_loss accepts


def log_ratio_difference(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor,
                         ref_chosen: torch.Tensor, ref_rejected: torch.Tensor) -> torch.Tensor:
    """h = (logp_w - ref_w) - (logp_l - ref_l): how much more the policy favours the chosen answer than the
    reference does."""
    return (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)


def _nll_sigmoid(z: torch.Tensor) -> torch.Tensor:
    """l(z) = -log sigmoid(z), computed stably."""
    return F.softplus(-z)


def sigmoid_loss(h: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO: -log sigmoid(beta h)."""
    return _nll_sigmoid(beta * h)


def ipo_loss(h: torch.Tensor, beta: float) -> torch.Tensor:
    """IPO: (h - 1/(2 beta))^2; pass a per-token (length-normalised) h as TRL does."""
    return (h - 1.0 / (2.0 * beta)) ** 2


def cdpo_loss(h: torch.Tensor, beta: float, eps: float) -> torch.Tensor:
    """Conservative DPO: the DPO loss against a label smoothed to (1 - eps, eps)."""
    _check_eps(eps, upper=0.5, inclusive=True)  # above 0.5 it would train toward the rejected answer
    return (1.0 - eps) * _nll_sigmoid(beta * h) + eps * _nll_sigmoid(-beta * h)


def robust_loss(h: torch.Tensor, beta: float, eps: float) -> torch.Tensor:
    """rDPO: ((1 - eps) l(beta h) - eps l(-beta h)) / (1 - 2 eps), unbiased for flip rate eps < 0.5."""
    _check_eps(eps, upper=0.5)
    return ((1.0 - eps) * _nll_sigmoid(beta * h) - eps * _nll_sigmoid(-beta * h)) / (1.0 - 2.0 * eps)


def length_regularized_loss(h: torch.Tensor, beta: float, alpha: float,
                            len_chosen: torch.Tensor, len_rejected: torch.Tensor) -> torch.Tensor:
    """R-DPO: l(beta h - alpha (|y_w| - |y_l|)), lengths in tokens."""
    return _nll_sigmoid(beta * h - alpha * (len_chosen - len_rejected).to(h.dtype))


def cpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, beta: float,
             len_chosen: torch.Tensor, nll_weight: float = 1.0) -> torch.Tensor:
    """CPO: l(beta (logp_w - logp_l)) + nll_weight * (-logp_w / |y_w|), no reference model."""
    per_token_nll = -logp_chosen / len_chosen.clamp(min=1).to(logp_chosen.dtype)
    return _nll_sigmoid(beta * (logp_chosen - logp_rejected)) + nll_weight * per_token_nll


def preference_loss(name: str, *, logp_chosen: torch.Tensor, logp_rejected: torch.Tensor,
                    ref_chosen: torch.Tensor | None, ref_rejected: torch.Tensor | None,
                    len_chosen: torch.Tensor, len_rejected: torch.Tensor, beta: float,
                    eps: float = 0.0, alpha: float = 0.0, nll_weight: float = 1.0) -> torch.Tensor:
    """Per-pair loss ``name`` (one of :data:`LOSSES`) from summed log-probs and token lengths.

    ``ipo`` uses the per-token h (each log-ratio divided by its response's token count);
    ``cpo`` ignores the reference log-probs.
    """
    if name == "cpo":
        return cpo_loss(logp_chosen, logp_rejected, beta, len_chosen, nll_weight)
    if ref_chosen is None or ref_rejected is None:
        raise ValueError(f"loss {name!r} needs the reference model's log-probabilities")
    if name == "ipo":
        lc, lr = (len_chosen.clamp(min=1).to(logp_chosen.dtype),
                  len_rejected.clamp(min=1).to(logp_chosen.dtype))
        return ipo_loss((logp_chosen - ref_chosen) / lc - (logp_rejected - ref_rejected) / lr, beta)
    h = log_ratio_difference(logp_chosen, logp_rejected, ref_chosen, ref_rejected)
    if name == "sigmoid":
        return sigmoid_loss(h, beta)
    if name == "cdpo":
        return cdpo_loss(h, beta, eps)
    if name == "robust":
        return robust_loss(h, beta, eps)
    if name == "length_reg":
        return length_regularized_loss(h, beta, alpha, len_chosen, len_rejected)
    raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")


def _check_eps(eps: float, upper: float, inclusive: bool = False) -> None:
    if not (0.0 <= eps <= upper if inclusive else 0.0 <= eps < upper):
        raise ValueError(f"label-noise rate eps must be in [0, {upper:g}{']' if inclusive else ')'}, "
                         f"got {eps}")
