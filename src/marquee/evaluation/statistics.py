"""Offline A/B readout: bootstrap confidence intervals and paired tests over per-user metric vectors.

Every bootstrap here resamples users with replacement by drawing explicit index rows in blocks of
about 4M indices (``n_boot`` rows of ``n_users`` indices in all, never held at once), so memory stays
near 64 MB whatever the number of users or resamples. The resamples depend only on ``seed``, ``n_boot``
and the number of users, so every column of a matrix, and both runs of a paired test, see the same ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats

_BLOCK_ELEMENTS = 1 << 22  # indices drawn per block: 32 MB of int64


def _check_matrix(values: np.ndarray, name: str = "values") -> np.ndarray:
    """Return ``values`` as a float64 ``(n_users, n_metrics)`` matrix, refusing empty input and NaN."""
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D or (users, metrics) array, got shape {matrix.shape}")
    if np.isnan(matrix).any():
        bad = np.flatnonzero(np.isnan(matrix).any(axis=1))
        raise ValueError(f"{name}: {len(bad)} user(s) have NaN metric values (first at row {bad[0]})")
    return matrix


def _check_settings(n_boot: int, confidence: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def bootstrap_means(matrix: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Means of every column over ``n_boot`` resamples of the rows (users), as an ``(n_boot, n_metrics)`` array."""
    matrix = np.asfortranarray(_check_matrix(matrix))  # (U, M), column-contiguous for take
    n_users, n_metrics = matrix.shape
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // n_users)
    out = np.empty((n_boot, n_metrics))
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        idx = rng.integers(0, n_users, size=(rows, n_users))  # (b, U) resampled users
        for j in range(n_metrics):
            out[start : start + rows, j] = matrix[:, j].take(idx).mean(axis=1)
    return out


def _percentiles(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1.0 - alpha / 2], axis=0)
    return low, high


def bootstrap_cis(
    matrix: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile-bootstrap CIs of the mean of every column of a ``(users, metrics)`` matrix, in one pass."""
    _check_settings(n_boot, confidence)
    matrix = _check_matrix(matrix, "matrix")
    low, high = _percentiles(bootstrap_means(matrix, n_boot, seed), confidence)
    return matrix.mean(axis=0), low, high


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile-bootstrap ``(mean, low, high)`` of the mean of one per-user metric vector."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values: expected a 1-D per-user vector, got shape {values.shape}; use bootstrap_cis")
    means, lows, highs = bootstrap_cis(values, n_boot, confidence, seed)
    return float(means[0]), float(lows[0]), float(highs[0])


@dataclass(frozen=True)
class PairedResult:
    """Paired comparison of run B against run A on the same users; ``diff`` is mean(b) − mean(a)."""

    n_users: int
    mean_a: float
    mean_b: float
    diff: float
    diff_low: float  # percentile-bootstrap CI of diff
    diff_high: float
    p_bootstrap: float  # 2 × min(share of bootstrap diffs ≤ 0, share ≥ 0), in [1/n_boot, 1]
    t_stat: float  # paired t-test (scipy.stats.ttest_rel(b, a))
    p_ttest: float
    cohens_d: float  # d_z = mean diff / sd of diffs (ddof=1)
    relative: float  # diff / mean_a; NaN where mean_a is 0
    confidence: float


def _paired_results(a: np.ndarray, b: np.ndarray, n_boot: int, confidence: float, seed: int) -> list[PairedResult]:
    """Paired results for every column of two aligned ``(users, metrics)`` matrices, sharing one set of resamples."""
    _check_settings(n_boot, confidence)
    a, b = _check_matrix(a, "a"), _check_matrix(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired runs must cover the same users: a has shape {a.shape}, b has shape {b.shape}")
    n_users = a.shape[0]
    if n_users < 2:
        raise ValueError(f"a paired test needs at least 2 users, got {n_users}")
    # per-user differences at rounding level (the same run scored twice) are exactly 0, and a constant
    # difference (identical runs, or b = a + c) has no spread for a t-test to use
    tol = 8 * np.finfo(np.float64).eps * np.maximum(np.abs(a).max(axis=0), np.abs(b).max(axis=0))  # (M,)
    d = b - a  # (U, M)
    d[np.abs(d) <= tol] = 0.0
    constant = np.ptp(d, axis=0) <= tol
    boot = bootstrap_means(d, n_boot, seed)  # (n_boot, M)
    low, high = _percentiles(boot, confidence)
    # the share of resampled mean differences on each side of 0; ties at 0 count on both sides
    p_boot = np.clip(2 * np.minimum((boot <= 0).mean(axis=0), (boot >= 0).mean(axis=0)), 1.0 / n_boot, 1.0)
    mean_a, mean_b, mean_d = a.mean(axis=0), b.mean(axis=0), d.mean(axis=0)
    sd = d.std(axis=0, ddof=1)
    # the paired t-test (as scipy.stats.ttest_rel(b, a)) and d_z; a constant difference has no spread,
    # so there it is 0 (p = 1) when the runs agree and ±inf (p = 0) when every user moves the same way
    degenerate = np.where(mean_d == 0, 0.0, np.copysign(np.inf, mean_d))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(constant, degenerate, mean_d / (sd / np.sqrt(n_users)))
        cohens_d = np.where(constant, degenerate, mean_d / sd)
        relative = np.where(mean_a != 0, mean_d / mean_a, np.nan)
    p_t = 2 * stats.t.sf(np.abs(t), df=n_users - 1)
    return [
        PairedResult(
            n_users=n_users,
            mean_a=float(mean_a[j]),
            mean_b=float(mean_b[j]),
            diff=float(mean_d[j]),
            diff_low=float(low[j]),
            diff_high=float(high[j]),
            p_bootstrap=float(p_boot[j]),
            t_stat=float(t[j]),
            p_ttest=float(p_t[j]),
            cohens_d=float(cohens_d[j]),
            relative=float(relative[j]),
            confidence=confidence,
        )
        for j in range(d.shape[1])
    ]


def paired_comparison(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> PairedResult:
    """Compare run B against run A on one metric, given per-user values aligned on the same users."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"a and b must be 1-D per-user vectors, got shapes {a.shape} and {b.shape}")
    if len(a) != len(b):
        raise ValueError(f"paired runs must cover the same users: a has {len(a)} values, b has {len(b)}")
    return _paired_results(a, b, n_boot, confidence, seed)[0]


def compare_runs(
    per_user_a: pd.DataFrame,
    per_user_b: pd.DataFrame,
    metrics: list[str] | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    labels: tuple[str, str] = ("A", "B"),
) -> pd.DataFrame:
    """Paired comparison of two runs' per-user tables (index = user id), one row per metric, indexed by metric.

    ``labels`` name the two runs in the errors (users only in one run)."""
    for name, frame in (("per_user_a", per_user_a), ("per_user_b", per_user_b)):
        if frame.index.has_duplicates:
            raise ValueError(f"{name}: {frame.index.duplicated().sum()} duplicated user id(s) in the index")
    only_a = per_user_a.index.difference(per_user_b.index)
    only_b = per_user_b.index.difference(per_user_a.index)
    if len(only_a) or len(only_b):
        raise ValueError(
            f"the runs were evaluated on different users: {len(only_a)} only in run {labels[0]}, "
            f"{len(only_b)} only in run {labels[1]} "
            f"(e.g. {list(only_a[:3]) + list(only_b[:3])}); a paired test needs the same users"
        )
    if metrics is None:
        metrics = [c for c in per_user_a.columns if c in per_user_b.columns]
    for name, frame in (("per_user_a", per_user_a), ("per_user_b", per_user_b)):
        missing = [m for m in metrics if m not in frame.columns]
        if missing:
            raise ValueError(f"{name} has no column(s) {missing}; it has {list(frame.columns)}")
    a = per_user_a[metrics].to_numpy(np.float64)
    b = per_user_b.loc[per_user_a.index, metrics].to_numpy(np.float64)  # aligned on A's user order
    for name, matrix in (("per_user_a", a), ("per_user_b", b)):
        bad = [m for m, has_nan in zip(metrics, np.isnan(matrix).any(axis=0)) if has_nan]
        if bad:
            raise ValueError(f"{name} has NaN values in metric column(s) {bad}")
    results = _paired_results(a, b, n_boot, confidence, seed)
    table = pd.DataFrame([asdict(r) for r in results], columns=[f.name for f in fields(PairedResult)])
    table.index = pd.Index(metrics, name="metric")
    return table


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values`` for testing them together (family-wise error), in their order."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    steps = (len(p) - np.arange(len(p))) * p[order]  # the i-th smallest times (m - i)
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return adjusted


def format_comparison(df: pd.DataFrame, labels: tuple[str, str] = ("A", "B")) -> str:
    """Render a :func:`compare_runs` table as aligned text: means, diff with its CI, relative change, p-values, d.

    ``labels`` name the two runs in the header and the columns (``B-A`` is the second minus the first)."""
    if df.empty:
        return "(no metrics)"
    a, b = labels
    level = f"{df['confidence'].iloc[0]:.0%}"
    rows = pd.DataFrame(
        {
            a: df["mean_a"].map("{:.4f}".format),
            b: df["mean_b"].map("{:.4f}".format),
            f"{b}-{a}": df["diff"].map("{:+.4f}".format),
            f"{level} CI": [f"[{lo:+.4f}, {hi:+.4f}]" for lo, hi in zip(df["diff_low"], df["diff_high"])],
            "rel": df["relative"].map("{:+.1%}".format),
            "p(boot)": df["p_bootstrap"].map("{:.3g}".format),
            "p(t)": df["p_ttest"].map("{:.3g}".format),
            "d_z": df["cohens_d"].map("{:+.3f}".format),
        },
        index=df.index,
    )
    return f"paired comparison over {int(df['n_users'].iloc[0])} users ({b} vs {a})\n" + rows.to_string()
