"""Artwork-selection policies; every one exposes ``action_probabilities(context, arms)``."""

from marquee.bandits.policies.base import Policy
from marquee.bandits.policies.linear import LinearTS, LinUCB
from marquee.bandits.policies.neural import EpsilonGreedy, NeuralLinear, SoftmaxPolicy
from marquee.bandits.policies.static import ArmDistributionPolicy, EpsilonMixture, PreferencePolicy, UniformPolicy

__all__ = ["ArmDistributionPolicy", "EpsilonGreedy", "EpsilonMixture", "LinUCB", "LinearTS", "NeuralLinear", "Policy",
           "PreferencePolicy", "SoftmaxPolicy", "UniformPolicy"]
