"""The policy contract: a distribution over each row's candidate arms, so one off-policy evaluator serves all.

A policy maps a batch of member contexts ``(n, d)`` and their :class:`~marquee.bandits.logs.Candidates`
to ``(n, K)`` probabilities (zero on empty slots). Learning policies also take feedback one row or one
log at a time (``update``), which is all the online simulator and offline training need.
"""

from __future__ import annotations

import numpy as np

from marquee.bandits.logs import BanditLog, Candidates


class Policy:
    """Base class: ``action_probabilities`` is required; sampling, online updates and offline fitting have defaults."""

    name = "policy"

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        """(n, K) probability of showing each candidate; rows sum to 1 over the non-empty slots."""
        raise NotImplementedError

    def sample(self, context: np.ndarray, arms: Candidates, rng: np.random.Generator) -> np.ndarray:
        """(n,) slot chosen on each row, drawn from ``action_probabilities``."""
        return sample_slots(self.action_probabilities(context, arms), rng)

    def update(self, context: np.ndarray, arms: Candidates, action: np.ndarray, reward: np.ndarray) -> None:
        """Learn from rows that showed slot ``action`` and observed ``reward``; a fixed policy ignores them."""

    def fit(self, log: BanditLog) -> Policy:
        """Learn offline from every row of a log."""
        self.update(log.context, log.candidates, log.action, log.reward)
        return self


def sample_slots(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n,) one draw per row from ``(n, K)`` probabilities (inverse CDF, one uniform per row)."""
    cdf = np.cumsum(probabilities, axis=1)
    u = rng.random((len(probabilities), 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), probabilities.shape[1] - 1)


def uniform(mask: np.ndarray) -> np.ndarray:
    """(n, K) equal probability over each row's candidates."""
    return mask / mask.sum(axis=1, keepdims=True)


def greedy(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, K) all mass on the best-scoring candidate, split evenly between exact ties."""
    scores = np.where(mask, scores, -np.inf)
    best = (scores == scores.max(axis=1, keepdims=True)) & mask
    return best / best.sum(axis=1, keepdims=True)


def epsilon_greedy(scores: np.ndarray, mask: np.ndarray, epsilon: float) -> np.ndarray:
    """(n, K) greedy with probability 1 - ε, uniform over the candidates with probability ε."""
    return (1.0 - epsilon) * greedy(scores, mask) + epsilon * uniform(mask)


def softmax(scores: np.ndarray, mask: np.ndarray, temperature: float) -> np.ndarray:
    """(n, K) Boltzmann distribution over the candidates' scores."""
    z = np.where(mask, scores / temperature, -np.inf)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
