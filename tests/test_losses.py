"""Preference losses against hand-computed values, signs and the rDPO unbiasedness identity."""

from __future__ import annotations

import math

import pytest
import torch

from prefaudit.train.losses import (
    LOSSES,
    cdpo_loss,
    cpo_loss,
    ipo_loss,
    length_regularized_loss,
    log_ratio_difference,
    preference_loss,
    robust_loss,
    sigmoid_loss,
)

L1 = math.log1p(math.exp(-1.0))  # -log sigmoid(1)  = 0.31326...
LM1 = math.log1p(math.exp(1.0))  # -log sigmoid(-1) = 1.31326...


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_log_ratio_difference_by_hand():
    # policy raises chosen by 1 nat and lowers rejected by 1 nat relative to the reference
    h = log_ratio_difference(t(-10.0), t(-12.0), t(-11.0), t(-11.0))
    assert h.item() == pytest.approx(2.0)


def test_sigmoid_dpo_values_and_signs():
    loss = sigmoid_loss(t(0.0, 10.0, -10.0), beta=0.1)
    assert loss.tolist() == pytest.approx([math.log(2), L1, LM1])
    # chosen favoured -> below log 2; rejected favoured -> above
    assert loss[1] < math.log(2) < loss[2]


def test_sigmoid_gradient_raises_chosen_and_lowers_rejected():
    lc, lr = t(-5.0).requires_grad_(), t(-5.0).requires_grad_()
    loss = sigmoid_loss(log_ratio_difference(lc, lr, t(-5.0), t(-5.0)), beta=0.1).sum()
    loss.backward()
    # -beta * sigmoid(0) = -0.05: gradient descent raises logp_w
    assert lc.grad.item() == pytest.approx(-0.05)
    assert lr.grad.item() == pytest.approx(0.05)


def test_ipo_by_hand():
    assert ipo_loss(t(0.0, 5.0, 7.0), beta=0.1).tolist() == pytest.approx([25.0, 0.0, 4.0])


def test_cdpo_by_hand_and_limits():
    h = t(10.0)
    assert cdpo_loss(h, 0.1, 0.1).item() == pytest.approx(0.9 * L1 + 0.1 * LM1)
    assert cdpo_loss(h, 0.1, 0.0).item() == pytest.approx(sigmoid_loss(h, 0.1).item())
    # eps = 0.5 makes the loss symmetric in h: no preference is learned
    assert cdpo_loss(t(3.0), 0.1, 0.5).item() == pytest.approx(cdpo_loss(t(-3.0), 0.1, 0.5).item())
    with pytest.raises(ValueError, match="eps"):  # past 0.5 it would prefer the rejected answer
        cdpo_loss(h, 0.1, 0.7)


def test_robust_by_hand_and_unbiased_under_flips():
    eps, beta = 0.1, 0.1
    assert robust_loss(t(10.0), beta, eps).item() == pytest.approx((0.9 * L1 - 0.1 * LM1) / 0.8)
    # Chowdhury et al.: the expectation over a label flipped with probability eps is the clean DPO loss
    h = t(-7.0, -1.0, 0.0, 2.5, 12.0)
    for e in (0.0, 0.2, 0.3, 0.45):
        expected = (1 - e) * robust_loss(h, beta, e) + e * robust_loss(-h, beta, e)
        assert torch.allclose(expected, sigmoid_loss(h, beta))


def test_length_regularised_penalises_longer_chosen():
    h = t(10.0)
    assert length_regularized_loss(h, 0.1, 0.0, t(50), t(10)).item() == pytest.approx(L1)
    # chosen 40 tokens longer with alpha 0.05: margin 1 - 2 = -1
    assert length_regularized_loss(h, 0.1, 0.05, t(50), t(10)).item() == pytest.approx(LM1)


def test_cpo_by_hand():
    # beta (logp_w - logp_l) = 0.5 * 2 = 1; NLL per token of chosen = 4 / 2 tokens
    assert cpo_loss(t(-4.0), t(-6.0), 0.5, t(2), nll_weight=1.0).item() == pytest.approx(L1 + 2.0)
    assert cpo_loss(t(-4.0), t(-6.0), 0.5, t(2), nll_weight=0.0).item() == pytest.approx(L1)


def test_preference_loss_dispatch_matches_the_functions():
    kw = dict(logp_chosen=t(-10.0, -20.0), logp_rejected=t(-12.0, -18.0), ref_chosen=t(-11.0, -20.0),
              ref_rejected=t(-11.0, -20.0), len_chosen=t(5, 4), len_rejected=t(4, 8), beta=0.1)
    h = log_ratio_difference(kw["logp_chosen"], kw["logp_rejected"], kw["ref_chosen"], kw["ref_rejected"])
    assert torch.allclose(preference_loss("sigmoid", **kw), sigmoid_loss(h, 0.1))
    assert torch.allclose(preference_loss("robust", eps=0.2, **kw), robust_loss(h, 0.1, 0.2))
    assert torch.allclose(preference_loss("cdpo", eps=0.2, **kw), cdpo_loss(h, 0.1, 0.2))
    per_token_h = t(1 / 5 + 1 / 4, 0 - 2 / 8)
    assert torch.allclose(preference_loss("ipo", **kw), ipo_loss(per_token_h, 0.1))
    assert set(LOSSES) == {"sigmoid", "ipo", "cdpo", "robust", "length_reg", "cpo"}
    with pytest.raises(ValueError, match="unknown loss"):
        preference_loss("kto", **kw)
    with pytest.raises(ValueError, match="reference"):
        preference_loss("sigmoid", **{**kw, "ref_chosen": None})


@pytest.mark.parametrize("eps", [-0.1, 0.5, 0.7])
def test_robust_rejects_bad_noise_rates(eps):
    with pytest.raises(ValueError, match="eps"):
        robust_loss(t(1.0), 0.1, eps)
