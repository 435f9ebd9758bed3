"""Policies over a neural reward model: ε-greedy, softmax, and NeuralLinear (a Bayesian last layer).

Online, each keeps the features and rewards of the arms it showed and refits its network when the
count of rows reaches the next point of a geometric schedule (``first_fit``, then ×``growth``), which
keeps refits few while data is cheap to add; ``fit(log)`` trains once on a whole log.
"""

from __future__ import annotations

import numpy as np

from marquee.bandits.features import FeatureMap, cross_features
from marquee.bandits.logs import BanditLog, Candidates
from marquee.bandits.policies.base import Policy, epsilon_greedy, softmax
from marquee.bandits.policies.linear import LinearTS, RidgePosterior
from marquee.bandits.reward_model import NeuralRewardModel


class _NeuralPolicy(Policy):
    """Keeps what was shown and observed, and refits the reward model on schedule."""

    def __init__(self, model: NeuralRewardModel | None, feature_map: FeatureMap, first_fit: int, growth: float):
        self.model = model if model is not None else NeuralRewardModel()
        self.feature_map, self.growth = feature_map, growth
        self.next_fit = first_fit
        self._features: list[np.ndarray] = []  # (m, F) blocks of the arms shown
        self._rewards: list[np.ndarray] = []

    def _shown_features(self, context: np.ndarray, arms: Candidates, action: np.ndarray) -> np.ndarray:
        shown = arms.features[np.arange(len(action)), action][:, None, :]  # (m, 1, f)
        return self.feature_map(context, shown)[:, 0]  # (m, F)

    @property
    def n_seen(self) -> int:
        return sum(len(r) for r in self._rewards)

    def update(self, context: np.ndarray, arms: Candidates, action: np.ndarray, reward: np.ndarray) -> None:
        self._features.append(self._shown_features(context, arms, action))
        self._rewards.append(np.asarray(reward, dtype=np.float64))
        if self.n_seen >= self.next_fit:
            self._refit()
            while self.next_fit <= self.n_seen:
                self.next_fit = int(np.ceil(self.next_fit * self.growth))

    def fit(self, log: BanditLog) -> Policy:
        self._features.append(self._shown_features(log.context, log.candidates, log.action))
        self._rewards.append(log.reward)
        self._refit()
        return self

    def _refit(self) -> None:
        self.model.fit(np.concatenate(self._features), np.concatenate(self._rewards))

    def logits(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        """(n, K) the reward model's logits; zeros (a uniform choice) before its first fit."""
        if self.model.net is None:
            return np.zeros(arms.ids.shape)
        return self.model.logits(self.feature_map(context, arms.features))


class EpsilonGreedy(_NeuralPolicy):
    """The candidate the reward model rates best with probability 1 - ε, a uniform one otherwise."""

    def __init__(self, epsilon: float = 0.1, model: NeuralRewardModel | None = None,
                 feature_map: FeatureMap = cross_features, first_fit: int = 100, growth: float = 2.0,
                 name: str = "ε-greedy"):
        super().__init__(model, feature_map, first_fit, growth)
        self.epsilon, self.name = epsilon, name

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        return epsilon_greedy(self.logits(context, arms), arms.mask, self.epsilon)


class SoftmaxPolicy(_NeuralPolicy):
    """Candidates drawn in proportion to exp(logit / temperature): a stochastic target for OPE."""

    def __init__(self, temperature: float = 0.5, model: NeuralRewardModel | None = None,
                 feature_map: FeatureMap = cross_features, first_fit: int = 100, growth: float = 2.0,
                 name: str = "softmax"):
        super().__init__(model, feature_map, first_fit, growth)
        self.temperature, self.name = temperature, name

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        return softmax(self.logits(context, arms), arms.mask, self.temperature)


class NeuralLinear(_NeuralPolicy):
    """Riquelme et al. (2018): Thompson sampling with a Bayesian linear model on the network's last hidden layer.

    The network learns the representation (refit on schedule); the linear posterior over it is rebuilt
    from every row after each refit and updated row by row in between. Before the first refit the
    representation is the freshly initialized network's (random ReLU features).
    """

    def __init__(self, scale: float = 0.5, ridge: float = 1.0, model: NeuralRewardModel | None = None,
                 feature_map: FeatureMap = cross_features, first_fit: int = 100, growth: float = 2.0,
                 n_samples: int = 500, seed: int = 0, name: str = "NeuralLinear"):
        super().__init__(model or NeuralRewardModel(hidden=(64, 32), seed=seed), feature_map, first_fit, growth)
        self.name = name
        # the Thompson step is LinearTS's, on the representation instead of raw features
        self.head = LinearTS(scale, ridge, feature_map=self._represent, n_samples=n_samples, seed=seed)

    def _represent(self, context: np.ndarray, arms: np.ndarray) -> np.ndarray:
        """(n, K, H + 1) last hidden layer of the network, plus a constant, for every candidate."""
        features = self.feature_map(context, arms)  # (n, K, F)
        if self.model.net is None:
            self.model.initialize(features.shape[-1])
        hidden = self.model.encode(features)
        return np.concatenate([hidden, np.ones((*hidden.shape[:-1], 1), dtype=hidden.dtype)], axis=-1)

    def update(self, context: np.ndarray, arms: Candidates, action: np.ndarray, reward: np.ndarray) -> None:
        before = self.next_fit
        super().update(context, arms, action, reward)
        if self.next_fit == before:  # no refit: add these rows to the posterior as they are
            self.head.update(context, arms, action, reward)

    def _refit(self) -> None:
        super()._refit()
        features, rewards = np.concatenate(self._features), np.concatenate(self._rewards)
        hidden = self.model.encode(features)
        represented = np.concatenate([hidden, np.ones((len(hidden), 1), dtype=hidden.dtype)], axis=1)
        self.head.posterior = RidgePosterior(represented.shape[1], self.head.ridge)
        self.head.posterior.add(represented, rewards)

    def sample(self, context: np.ndarray, arms: Candidates, rng: np.random.Generator) -> np.ndarray:
        return self.head.sample(context, arms, rng)

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        return self.head.action_probabilities(context, arms)
