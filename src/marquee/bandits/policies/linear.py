"""LinUCB and linear Thompson sampling over joint (context, arm) features, one model shared by all arms.

Both keep the ridge-regression statistics ``A = λI + Σ φφᵀ`` and ``b = Σ r φ`` of the arms shown
(the "shared" model of Li et al. 2010, which generalizes across artworks of different titles). Written
here because they are a dozen lines over numpy; no maintained library offers them with a per-row
distribution over candidates.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from marquee.bandits.features import FeatureMap, cross_features
from marquee.bandits.logs import Candidates
from marquee.bandits.policies.base import Policy, greedy


class RidgePosterior:
    """Ridge-regression statistics kept with ``A⁻¹`` current: Sherman–Morrison for one row, a solve for a batch."""

    def __init__(self, dim: int, ridge: float = 1.0):
        self.a = np.eye(dim) * ridge  # (D, D)
        self.a_inv = np.eye(dim) / ridge
        self.b = np.zeros(dim)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add rows ``x`` (m, D) with targets ``y`` (m,)."""
        x = np.asarray(x, dtype=np.float64)
        self.b += x.T @ y
        if len(x) == 1:
            self.a += np.outer(x[0], x[0])
            u = self.a_inv @ x[0]  # (D,)
            self.a_inv -= np.outer(u, u) / (1.0 + x[0] @ u)
        else:
            self.a += x.T @ x
            self.a_inv = np.linalg.inv(self.a)

    @property
    def theta(self) -> np.ndarray:
        return self.a_inv @ self.b  # (D,)

    def mean_and_covariance(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For features ``phi`` (n, K, D): predicted means (n, K) and their joint covariance (n, K, K) over θ."""
        flat = phi.reshape(-1, phi.shape[-1])  # (n K, D)
        if len(flat) > 256 and np.count_nonzero(flat) < 0.2 * flat.size:  # cross features of one-hot arms: mostly 0
            projected = np.asarray(sparse.csr_matrix(flat) @ self.a_inv)
        else:
            projected = flat @ self.a_inv
        projected = projected.reshape(phi.shape)  # (n, K, D)
        return phi @ self.theta, projected @ phi.transpose(0, 2, 1)


class _SharedLinear(Policy):
    """Features, posterior and updates shared by LinUCB and linear TS."""

    def __init__(self, ridge: float, feature_map: FeatureMap):
        self.ridge, self.feature_map = ridge, feature_map
        self.posterior: RidgePosterior | None = None

    def _features(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        phi = self.feature_map(context, arms.features).astype(np.float64)  # (n, K, D)
        if self.posterior is None:
            self.posterior = RidgePosterior(phi.shape[-1], self.ridge)
        return phi

    def update(self, context: np.ndarray, arms: Candidates, action: np.ndarray, reward: np.ndarray) -> None:
        phi = self._features(context, arms)[np.arange(len(action)), action]  # (m, D) of the arms shown
        self.posterior.add(phi, np.asarray(reward, dtype=np.float64))


class LinUCB(_SharedLinear):
    """Shows the candidate with the highest upper confidence bound ``φθ + α √(φ A⁻¹ φ)`` (deterministic)."""

    def __init__(self, alpha: float = 1.0, ridge: float = 1.0, feature_map: FeatureMap = cross_features,
                 name: str = "LinUCB"):
        super().__init__(ridge, feature_map)
        self.alpha, self.name = alpha, name

    def upper_bounds(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        phi = self._features(context, arms)
        mean, cov = self.posterior.mean_and_covariance(phi)
        width = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))  # (n, K)
        return mean + self.alpha * width

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        return greedy(self.upper_bounds(context, arms), arms.mask)


class LinearTS(_SharedLinear):
    """Thompson sampling: draws the candidates' values jointly from the Gaussian posterior, shows the best.

    Drawing the K candidates' values from ``N(Φθ, v² Φ A⁻¹ Φᵀ)`` is the same as drawing θ and projecting,
    at the cost of a K×K instead of a D×D factorization. ``action_probabilities`` is the share of
    ``n_samples`` draws each candidate wins (a Monte Carlo estimate, from a fixed seed).
    """

    def __init__(self, scale: float = 0.5, ridge: float = 1.0, feature_map: FeatureMap = cross_features,
                 n_samples: int = 500, seed: int = 0, name: str = "linear TS"):
        super().__init__(ridge, feature_map)
        self.scale, self.n_samples, self.seed, self.name = scale, n_samples, seed, name

    def _posterior_draws(self, context: np.ndarray, arms: Candidates, n_draws: int,
                         rng: np.random.Generator) -> np.ndarray:
        """(n_draws, n, K) sampled values, -inf in empty slots."""
        phi = self._features(context, arms)
        mean, cov = self.posterior.mean_and_covariance(phi)
        k = cov.shape[-1]
        jitter = 1e-9 * np.maximum(np.diagonal(cov, axis1=1, axis2=2).max(axis=1), 1e-12)  # (n,)
        chol = np.linalg.cholesky(self.scale**2 * cov + (jitter[:, None, None] + 1e-12) * np.eye(k))  # (n, K, K)
        z = rng.standard_normal((n_draws, len(mean), k))
        draws = mean + np.einsum("nij,snj->sni", chol, z)
        return np.where(arms.mask, draws, -np.inf)

    def sample(self, context: np.ndarray, arms: Candidates, rng: np.random.Generator) -> np.ndarray:
        return self._posterior_draws(context, arms, 1, rng)[0].argmax(axis=1)

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        counts = np.zeros(arms.ids.shape)
        chunk = max(1, (1 << 22) // (self.n_samples * arms.n_slots))  # rows per block: about 32 MB of draws
        for start in range(0, len(context), chunk):
            rows = slice(start, start + chunk)
            winners = self._posterior_draws(context[rows], arms.take(rows), self.n_samples, rng).argmax(axis=2)  # (S, c)
            np.add.at(counts[rows], (np.broadcast_to(np.arange(winners.shape[1]), winners.shape), winners), 1.0)
        return counts / self.n_samples
