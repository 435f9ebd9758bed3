"""Artwork policies as files a service can load: ``marquee-artwork-policy`` JSON, read by marquee.serving.artwork.

A file holds the *layout* the policy was trained in (each title's artworks and the one genre or tone each
shows, the genres, and the taste mean and sd that z-scored the member context) and the policy: ``uniform``,
or ``linear``, ε-greedy over the posterior mean θ of a trained LinUCB or linear TS. A served policy must
keep every artwork possible, or no other policy could be valued from its log, hence ε > 0 and not LinUCB's
deterministic choice. :class:`ServedPolicy` is that file as a bandit :class:`Policy`, so the offline report
values exactly what the service will run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from marquee.bandits.features import cross_features
from marquee.bandits.logs import Candidates
from marquee.bandits.policies.base import Policy
from marquee.bandits.simulator import HOUR_BUCKETS, ArtworkSimulator
from marquee.data.atomic import atomic_path
from marquee.serving.artwork import FORMAT, VERSION, PolicyArtwork
from marquee.serving.artwork import HOUR_BUCKETS as SERVED_BUCKETS

assert tuple(SERVED_BUCKETS) == tuple(HOUR_BUCKETS), "the service must bucket hours as the simulator does"


def layout(sim: ArtworkSimulator) -> dict[str, Any]:
    """The simulator's artworks and member context, keyed by raw title id."""
    if sim.user_state is not None:
        raise ValueError("a served artwork policy reads taste and hour only; this simulator adds a user state, "
                         "which the service cannot build (drop source.simulator user state)")
    k = sim.config.n_artworks
    return {"genres": list(sim.genre_names), "taste_mean": [float(v) for v in sim.taste_mean],
            "taste_std": [float(v) for v in sim.taste_std], "hour_buckets": list(HOUR_BUCKETS),
            "arm_features": list(sim.arm_names),
            "titles": {raw: [int(f) for f in sim.artwork_feature[t * k:(t + 1) * k]]
                       for t, raw in enumerate(sim.title_raw_ids)}}


def policy_file(sim: ArtworkSimulator, policy: Policy | None, name: str, epsilon: float = 0.1) -> dict[str, Any]:
    """The file of a trained linear policy (its posterior mean θ, ε-greedy) or, with ``policy=None``, uniform."""
    body: dict[str, Any] = {"format": FORMAT, "version": VERSION, "name": name}
    if policy is None:
        return {**body, "kind": "uniform", "layout": layout(sim)}
    posterior = getattr(policy, "posterior", None)
    if posterior is None or getattr(policy, "feature_map", None) is not cross_features:
        raise ValueError(f"{name}: only a trained linear policy over cross features (LinUCB, linear TS) can be "
                         "written as a served policy")
    return {**body, "kind": "linear", "epsilon": float(epsilon), "trained_from": getattr(policy, "name", name),
            "theta": [float(v) for v in posterior.theta], "layout": layout(sim)}


def write_policy_file(policy: dict[str, Any], path: str | Path) -> Path:
    """Write ``policy`` atomically (checked as the service will check it first)."""
    PolicyArtwork(policy, where=str(path))
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(policy, indent=1) + "\n")
    return Path(path)


class ServedPolicy(Policy):
    """A policy file as the service runs it, over a simulator's rows: the offline value of what will be served."""

    def __init__(self, policy: dict[str, Any], sim: ArtworkSimulator):
        self.served, self.feature = PolicyArtwork(policy), sim.artwork_feature
        self.name = f"{policy['name']} (served, ε={policy.get('epsilon', 1.0):g})"

    def action_probabilities(self, context: np.ndarray, arms: Candidates) -> np.ndarray:
        features = self.feature[np.maximum(arms.ids, 0)]  # (n, K) each slot's feature index
        return self.served.probabilities(context, features, arms.mask)
