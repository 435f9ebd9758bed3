"""Run a policy online in the artwork simulator: serve, observe a play or not, learn, for T rounds.

Every policy run with the same ``seed`` meets the same stream: the same members, titles and hours,
and the same uniform draw per round and artwork deciding a play (common random numbers), so
differences between policies are their choices, not luck of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marquee.bandits.policies.base import Policy
from marquee.bandits.simulator import ArtworkSimulator


@dataclass(frozen=True)
class OnlineRun:
    """Per-round outcomes of one policy on one stream."""

    expected: np.ndarray  # (T,) true play probability of the artwork shown
    best: np.ndarray  # (T,) play probability of the best artwork for that member, title and hour
    reward: np.ndarray  # (T,) 1 if the member played

    @property
    def regret(self) -> np.ndarray:
        """(T,) cumulative expected regret against the per-request best artwork."""
        return np.cumsum(self.best - self.expected)


def run_online(simulator: ArtworkSimulator, policy: Policy, n_rounds: int, seed: int) -> OnlineRun:
    """Serve ``n_rounds`` requests one at a time; the policy learns from each outcome before the next."""
    stream = np.random.default_rng(seed)
    req = simulator.requests(n_rounds, stream)
    draws = stream.random((n_rounds, simulator.config.n_artworks))  # (T, K) play if draw < probability
    context, arms, probs = simulator.context(req), simulator.candidates(req), simulator.play_probabilities(req)
    choices = np.random.default_rng([seed, 1])  # the policy's own randomness
    shown = np.empty(n_rounds, dtype=np.int64)
    reward = np.empty(n_rounds)
    for t in range(n_rounds):
        row = slice(t, t + 1)
        a = policy.sample(context[row], arms.take(row), choices)
        shown[t] = a[0]
        reward[t] = float(draws[t, a[0]] < probs[t, a[0]])
        policy.update(context[row], arms.take(row), a, reward[t:t + 1])
    rows = np.arange(n_rounds)
    return OnlineRun(probs[rows, shown], probs.max(axis=1), reward)
