"""Policies that do not learn from feedback: uniform, fixed preferences over arms, and context-free distributions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from marquee.bandits.logs import BanditLog, Candidates
from marquee.bandits.policies.base import Policy, greedy, softmax, uniform


class UniformPolicy(Policy):
    """Every candidate equally likely: the logger under which replay is unbiased."""

    name = "uniform"

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        return uniform(arms.mask)


class PreferencePolicy(Policy):
    """Softmax over a fixed score per arm, whatever the member: a "production" policy with a house style.

    ``temperature=0`` puts all mass on the highest-scored candidate (a deterministic policy, such as the
    best single artwork per title).
    """

    def __init__(self, arm_scores: np.ndarray, temperature: float = 1.0, name: str = "preference"):
        self.arm_scores = np.asarray(arm_scores, dtype=np.float64)  # (n_arms,)
        self.temperature, self.name = temperature, name

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        scores = self.arm_scores[np.maximum(arms.ids, 0)]  # (n, K)
        if self.temperature == 0:
            return greedy(scores, arms.mask)
        return softmax(scores, arms.mask, self.temperature)


class ArmDistributionPolicy(Policy):
    """A context-free distribution over arms, one per slate position (read from one-hot context columns).

    ``table`` is ``(n_positions, n_arms)``; with ``position_columns`` the context's one-hot position
    picks the row, otherwise ``table`` must have a single row. Candidates absent from a row get no mass
    and the rest is renormalized.
    """

    def __init__(self, table: np.ndarray, position_columns: Sequence[int] | None = None, name: str = "arm distribution"):
        self.table = np.asarray(table, dtype=np.float64)
        self.position_columns = None if position_columns is None else list(position_columns)
        if self.position_columns is None and len(self.table) != 1:
            raise ValueError(f"a table with {len(self.table)} rows needs position_columns to pick one per row")
        self.name = name

    @classmethod
    def from_log(cls, log: BanditLog, position_columns: Sequence[int] | None = None,
                 name: str = "logged frequencies") -> ArmDistributionPolicy:
        """The logging policy's average behaviour: how often each arm was shown, per position."""
        n_arms = len(log.candidates.table)
        position = np.zeros(len(log), dtype=np.int64) if log.position is None else log.position
        counts = np.zeros((position.max() + 1, n_arms))
        np.add.at(counts, (position, log.chosen_arm), 1.0)
        return cls(counts / counts.sum(axis=1, keepdims=True), position_columns, name)

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        if self.position_columns is None:
            by_arm = np.broadcast_to(self.table, (len(context), self.table.shape[1]))
        else:
            by_arm = context[:, self.position_columns].astype(np.float64) @ self.table  # (n, n_arms)
        probs = np.where(arms.mask, np.take_along_axis(by_arm, np.maximum(arms.ids, 0), axis=1), 0.0)
        return probs / probs.sum(axis=1, keepdims=True)


def bernoulli_ts_distribution(alpha: np.ndarray, beta: np.ndarray, n_positions: int, n_sim: int = 100_000,
                              seed: int = 0, chunk: int = 10_000) -> np.ndarray:
    """``(n_positions, n_arms)``: how often Bernoulli Thompson sampling with Beta(alpha, beta) posteriors
    ranks each arm at each position, by Monte Carlo over ``n_sim`` draws (as obp's ``BernoulliTS``)."""
    alpha, beta = np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64)
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_positions, len(alpha)))
    for start in range(0, n_sim, chunk):
        draws = rng.beta(alpha, beta, size=(min(chunk, n_sim - start), len(alpha)))  # (c, n_arms)
        top = np.argsort(-draws, axis=1)[:, :n_positions]  # (c, P) ranked arms
        for p in range(n_positions):
            counts[p] += np.bincount(top[:, p], minlength=len(alpha))
    return counts / n_sim


class EpsilonMixture(Policy):
    """Another policy with probability 1 - ε, a uniform candidate with probability ε (an ε-greedy logger)."""

    def __init__(self, policy: Policy, epsilon: float = 0.2, name: str | None = None):
        self.policy, self.epsilon = policy, epsilon
        self.name = name or f"{policy.name} ε={epsilon:g}"

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        return (1 - self.epsilon) * self.policy.action_probabilities(context, arms) + self.epsilon * uniform(arms.mask)
