"""Off-policy estimators: the value a target policy would have had, read from a log another policy wrote.

Every estimator sees the log, the target's action probabilities on the logged rows (``target``, shape
``(n, K)``, one column per candidate slot) and, where it needs one, a reward model's prediction for every
candidate (``q_hat``, ``(n, K)``). Each reduces to per-row terms whose mean (over the mean of a
denominator, for the self-normalized ones) is the estimate, so one bootstrap over rows gives every
estimator's confidence interval from the same resamples. Written here rather than taken from obp, which
does not install on Python 3.11 with pandas 3; the definitions follow obp's (Saito et al. 2021).

Switch-DR and DR with optimistic shrinkage pick their λ from a grid by SLOPE (Su et al. 2020, in the
SLOPE++ form of Tucker & Lee 2021, as obp's tuned estimators do); the bootstrap keeps that λ and the
reward model fixed, so their intervals leave out the variance of choosing them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from marquee.bandits.logs import BanditLog
from marquee.evaluation.statistics import bootstrap_means

LAMBDAS = (10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, np.inf)  # obp's grid for Switch-DR and DRos
PROBABILITY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Terms:
    """An estimator's per-row terms: the estimate is ``numerator.mean() / denominator.mean()``."""

    numerator: np.ndarray  # (n,)
    denominator: np.ndarray  # (n,) ones unless self-normalized
    weights: np.ndarray | None = None  # (n,) the importance weights it applied; None for the direct method
    params: dict[str, float] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return float(self.numerator.mean() / self.denominator.mean())


def check_target(log: BanditLog, target: np.ndarray) -> np.ndarray:
    """Return ``target`` as float64 ``(n, K)`` if every row is a distribution over that row's candidates."""
    target = np.asarray(target, dtype=np.float64)
    if target.shape != log.candidates.ids.shape:
        raise ValueError(f"target probabilities have shape {target.shape}; the log has {log.candidates.ids.shape} "
                         "(rows, candidate slots)")
    bad = ~np.isfinite(target).all(axis=1) | (target < 0).any(axis=1) | ((target != 0) & ~log.candidates.mask).any(axis=1)
    bad |= np.abs(target.sum(axis=1) - 1.0) > PROBABILITY_TOLERANCE
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"target row {i} is not a probability distribution over its candidates: {target[i].tolist()}")
    return target


def _check_q_hat(log: BanditLog, q_hat: np.ndarray | None) -> np.ndarray:
    if q_hat is None:
        raise ValueError("this estimator needs a reward model's predictions (q_hat) for every candidate")
    q_hat = np.asarray(q_hat, dtype=np.float64)
    if q_hat.shape != log.candidates.ids.shape:
        raise ValueError(f"q_hat has shape {q_hat.shape}; the log has {log.candidates.ids.shape}")
    return q_hat


def importance_weights(log: BanditLog, target: np.ndarray) -> np.ndarray:
    """(n,) target probability of the logged arm over the logging policy's."""
    return target[np.arange(len(log)), log.action] / log.propensity


def _ones(log: BanditLog) -> np.ndarray:
    return np.ones(len(log))


def replay(log: BanditLog, target: np.ndarray, q_hat: np.ndarray | None = None) -> Terms:
    """Li et al. (2011): the mean reward of rows where the target agrees with the log, each row counted by
    the target's probability of the logged arm. Unbiased only when the logger is uniform."""
    match = target[np.arange(len(log)), log.action]  # (n,) 1/0 for a deterministic target
    return Terms(match * log.reward, match)


def ips(log: BanditLog, target: np.ndarray, q_hat: np.ndarray | None = None) -> Terms:
    """Inverse propensity scoring: rewards weighted by target over logging probability."""
    w = importance_weights(log, target)
    return Terms(w * log.reward, _ones(log), w)


def snips(log: BanditLog, target: np.ndarray, q_hat: np.ndarray | None = None) -> Terms:
    """Self-normalized IPS: IPS divided by the mean weight; biased by O(1/n), far lower variance."""
    w = importance_weights(log, target)
    return Terms(w * log.reward, w, w)


def dm(log: BanditLog, target: np.ndarray, q_hat: np.ndarray | None = None) -> Terms:
    """Direct method: the reward model's prediction averaged over the target's arms."""
    q_hat = _check_q_hat(log, q_hat)
    return Terms((target * q_hat).sum(axis=1), _ones(log))


def _dr_terms(log: BanditLog, target: np.ndarray, q_hat: np.ndarray | None,
              weights: np.ndarray) -> np.ndarray:
    """(n,) direct-method term plus the weighted residual of the logged arm."""
    q_hat = _check_q_hat(log, q_hat)
    logged = q_hat[np.arange(len(log)), log.action]
    return (target * q_hat).sum(axis=1) + weights * (log.reward - logged)


def dr(log: BanditLog, target: np.ndarray, q_hat: np.ndarray | None = None) -> Terms:
    """Doubly robust: the direct method corrected by the importance-weighted residual of the logged arm."""
    w = importance_weights(log, target)
    return Terms(_dr_terms(log, target, q_hat, w), _ones(log), w)


def sndr(log: BanditLog, target: np.ndarray, q_hat: np.ndarray | None = None) -> Terms:
    """Self-normalized DR: the residual's weights divided by their mean (the full sample's mean, held fixed)."""
    w = importance_weights(log, target)
    w_norm = w / w.mean() if w.mean() > 0 else w
    return Terms(_dr_terms(log, target, q_hat, w_norm), _ones(log), w_norm)


def switch_dr(log: BanditLog, target: np.ndarray, q_hat: np.ndarray | None = None,
              lambdas: Sequence[float] = LAMBDAS, delta: float = 0.05) -> Terms:
    """Switch-DR (Wang et al. 2017): DR on rows whose weight is at most λ, the direct method elsewhere."""
    w = importance_weights(log, target)
    candidates = [_dr_terms(log, target, q_hat, w * (w <= lam)) for lam in lambdas]
    best = slope(candidates, delta)
    return Terms(candidates[best], _ones(log), w * (w <= lambdas[best]), {"lambda": float(lambdas[best])})


def dr_os(log: BanditLog, target: np.ndarray, q_hat: np.ndarray | None = None,
          lambdas: Sequence[float] = LAMBDAS, delta: float = 0.05) -> Terms:
    """DR with optimistic shrinkage (Su et al. 2020): weights shrunk to λw / (w² + λ)."""
    w = importance_weights(log, target)
    shrunk = [w if np.isinf(lam) else lam * w / (w**2 + lam) for lam in lambdas]
    candidates = [_dr_terms(log, target, q_hat, s) for s in shrunk]
    best = slope(candidates, delta)
    return Terms(candidates[best], _ones(log), shrunk[best], {"lambda": float(lambdas[best])})


def slope(candidates: Sequence[np.ndarray], delta: float = 0.05) -> int:
    """Index SLOPE picks among one estimator's per-row terms at several settings of its λ.

    SLOPE++: visit candidates from the widest confidence interval to the narrowest and keep going while
    each new estimate lies within the (inflated) intervals of all visited ones; stop before the first that
    does not. The widths are one-sided Student-t half-widths at level ``1 - delta``.
    """
    n = len(candidates[0])
    means = np.array([c.mean() for c in candidates])
    t = stats.t.ppf(1.0 - delta, n - 1)
    widths = np.array([t * c.std(ddof=1) / np.sqrt(n) for c in candidates])
    order = np.argsort(-widths, kind="stable")
    inflation = np.sqrt(6) - 1
    for step in range(1, len(order)):
        i, seen = order[step], order[:step]
        if not (np.abs(means[seen] - means[i]) <= widths[i] + inflation * widths[seen]).all():
            return int(order[step - 1])
    return int(order[-1])


Estimator = Callable[..., Terms]
ESTIMATORS: dict[str, Estimator] = {
    "replay": replay, "ips": ips, "snips": snips, "dm": dm, "dr": dr, "sndr": sndr, "switch_dr": switch_dr,
    "dr_os": dr_os,
}
NEEDS_REWARD_MODEL = frozenset({"dm", "dr", "sndr", "switch_dr", "dr_os"})


def estimator_terms(log: BanditLog, target: np.ndarray, q_hat: np.ndarray | None = None,
                    estimators: Sequence[str] = tuple(ESTIMATORS)) -> dict[str, Terms]:
    """Every named estimator's per-row terms for one target policy."""
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator(s) {unknown}; known: {list(ESTIMATORS)}")
    target = check_target(log, target)
    return {name: ESTIMATORS[name](log, target, q_hat) for name in estimators}


def bootstrap_values(terms: Sequence[Terms], n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, len(terms)) estimates over row resamples, the same resamples for every estimator."""
    columns = np.stack([c for t in terms for c in (t.numerator, t.denominator)], axis=1)  # (n, 2m)
    means = bootstrap_means(columns, n_boot, seed)  # (n_boot, 2m)
    with np.errstate(divide="ignore", invalid="ignore"):
        return means[:, 0::2] / means[:, 1::2]


def diagnostics(weights: np.ndarray | None) -> dict[str, float]:
    """Effective sample size (Kish), largest weight and mean weight (near 1 when the logger covers the target)."""
    if weights is None:
        return {"ess": np.nan, "max_weight": np.nan, "mean_weight": np.nan}
    total = weights.sum()
    ess = total**2 / (weights**2).sum() if total > 0 else 0.0
    return {"ess": float(ess), "max_weight": float(weights.max()), "mean_weight": float(weights.mean())}


def evaluate_policy(log: BanditLog, target: np.ndarray, q_hat: np.ndarray | None = None,
                    estimators: Sequence[str] = tuple(ESTIMATORS), n_boot: int = 1000, confidence: float = 0.95,
                    seed: int = 0) -> pd.DataFrame:
    """One row per estimator: value, percentile-bootstrap CI over rows, and weight diagnostics."""
    terms = estimator_terms(log, target, q_hat, estimators)
    boot = bootstrap_values(list(terms.values()), n_boot, seed)
    alpha = 1.0 - confidence
    low, high = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    rows = [{"estimator": name, "value": t.value, "ci_low": low[j], "ci_high": high[j], **diagnostics(t.weights),
             **t.params} for j, (name, t) in enumerate(terms.items())]
    return pd.DataFrame(rows).set_index("estimator")
