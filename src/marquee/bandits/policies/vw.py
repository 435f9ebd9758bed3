"""Vowpal Wabbit's ``--cb_explore_adf`` behind marquee's policy contract, to run beside our policies on one stream.

Each row becomes a VW multiline example: a ``shared`` line with the member context in namespace ``c``
and one line per candidate with the arm's features in namespace ``a``; ``-q ca`` gives VW the same
context-by-arm products that :func:`marquee.bandits.features.cross_features` gives our linear policies.
Costs are negated rewards. Needs the ``vowpalwabbit`` wheel (``pip install marquee[bench]``).
"""

from __future__ import annotations

import numpy as np

from marquee.bandits.logs import Candidates
from marquee.bandits.policies.base import Policy, sample_slots


def _features(namespace: str, prefix: str, values: np.ndarray) -> str:
    nonzero = np.flatnonzero(values)
    return f"|{namespace} " + " ".join(f"{prefix}{j}:{values[j]:.6g}" for j in nonzero)


class VowpalWabbitPolicy(Policy):
    """A VW contextual-bandit learner (``--squarecb``, ``--epsilon 0.1``, ...) learning online from our rows."""

    def __init__(self, arguments: str = "--squarecb", seed: int = 0, name: str = "VW squarecb"):
        import vowpalwabbit

        self.vw = vowpalwabbit.Workspace(f"--cb_explore_adf -q ca --quiet --random_seed {seed} {arguments}")
        self.name = name
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (pmf, context row) of the latest decision

    def _lines(self, context: np.ndarray, arm_features: np.ndarray, label: tuple[int, float, float] | None = None
               ) -> list[str]:
        lines = ["shared " + _features("c", "x", context)]
        for slot, arm in enumerate(arm_features):
            cost = f"0:{label[1]:.6g}:{label[2]:.6g} " if label is not None and label[0] == slot else ""
            lines.append(cost + _features("a", "f", arm))
        return lines

    def _pmf(self, context: np.ndarray, arm_features: np.ndarray) -> np.ndarray:
        return np.asarray(self.vw.predict(self._lines(context, arm_features)), dtype=np.float64)

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        features, mask = arms.features, arms.mask
        probs = np.zeros(arms.ids.shape)
        for i in range(len(context)):
            slots = np.flatnonzero(mask[i])
            probs[i, slots] = self._pmf(context[i], features[i, slots])
        return probs / probs.sum(axis=1, keepdims=True)

    def sample(self, context: np.ndarray, arms: Candidates, rng: np.random.Generator) -> np.ndarray:
        probs = self.action_probabilities(context, arms)
        self._last = (probs, context)
        return sample_slots(probs, rng)

    def update(self, context: np.ndarray, arms: Candidates, action: np.ndarray, reward: np.ndarray) -> None:
        """Learn from rows; the probability VW gave the shown arm comes from its latest ``sample`` on the same
        context, else from its current distribution."""
        recent = self._last is not None and np.array_equal(self._last[1], context)
        probs = self._last[0] if recent else self.action_probabilities(context, arms)
        features, mask = arms.features, arms.mask
        for i in range(len(context)):
            slots = np.flatnonzero(mask[i])
            slot = int(np.flatnonzero(slots == action[i])[0])
            label = (slot, -float(reward[i]), float(probs[i, action[i]]))
            self.vw.learn(self._lines(context[i], features[i, slots], label))
        self._last = None

