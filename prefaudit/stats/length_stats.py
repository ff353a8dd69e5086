"""Small statistics the length analyzer needs: Wilson intervals, the exact binomial (sign)
test, a rank AUC, and a two-parameter logistic regression with a Wald interval.

Plain numpy/scipy functions on arrays, deterministic, no fitting library.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (NaN, NaN when ``n == 0``)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_p(k: int, n: int) -> float:
    """Two-sided exact binomial test of ``k`` successes in ``n`` against probability 0.5."""
    if n <= 0:
        return float("nan")
    return float(stats.binomtest(int(k), int(n), 0.5).pvalue)


def rank_auc(y: np.ndarray, x: np.ndarray) -> float:
    """ROC AUC of score ``x`` for binary ``y`` (ties in ``x`` count one half); NaN if one class."""
    y = np.asarray(y, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(x)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@dataclass(frozen=True)
class LogitFit:
    """``P(y=1) = 1 / (1 + exp(-(intercept + slope * x)))`` with a 95% Wald interval of the slope.

    ``converged`` is False when the fit diverged (``x`` separates the classes perfectly);
    the numbers are then NaN.
    """

    intercept: float
    slope: float
    slope_low: float
    slope_high: float
    slope_p: float
    converged: bool


def logistic_fit(x: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> LogitFit:
    """Maximum-likelihood logistic regression of binary ``y`` on ``x`` (Newton-Raphson)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    nan = LogitFit(*(float("nan"),) * 5, converged=False)
    if len(x) < 3 or np.ptp(x) == 0 or y.min() == y.max():
        return nan
    design = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        w = p * (1 - p)
        hessian = design.T @ (design * w[:, None])
        try:
            step = np.linalg.solve(hessian, design.T @ (y - p))
        except np.linalg.LinAlgError:
            return nan
        beta = beta + step
        if np.abs(beta).max() > 1e3:
            return nan
        if np.abs(step).max() < tol:
            break
    else:
        return nan
    p = 1.0 / (1.0 + np.exp(-(design @ beta)))
    cov = np.linalg.inv(design.T @ (design * (p * (1 - p))[:, None]))
    se = float(np.sqrt(cov[1, 1]))
    slope = float(beta[1])
    return LogitFit(float(beta[0]), slope, slope - Z95 * se, slope + Z95 * se,
                    float(2 * stats.norm.sf(abs(slope / se))), True)
