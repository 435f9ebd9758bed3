"""Which artwork a title is shown with, and the probability the choice had (the bandit's propensity).

Bundles carry no artwork list yet, so every title has ``n`` variants named ``<item>:a<k>`` (k = 0..n-1).
Without a usable policy the service picks one uniformly, propensity ``1/n``: a logging policy every
candidate policy has support under. A bundle's policy file (``bundle.policy``) is not read yet: its
parameters have no agreed layout for serving, so it is reported and the uniform choice stays.
"""

from __future__ import annotations

import threading

import numpy as np

UNIFORM = "uniform-random v1"


class ArtworkChooser:
    """Uniform choice among a title's ``n`` artwork variants; the arm id of variant k of internal item i is i*n + k."""

    def __init__(self, n: int = 4, seed: int | None = None, bundle_policy: bool = False):
        if n < 1:
            raise ValueError(f"artworks per title must be >= 1, got {n}")
        self.n, self.rng, self.lock = n, np.random.default_rng(seed), threading.Lock()
        self.name = UNIFORM + (" (the bundle's policy file is not wired yet)" if bundle_policy else "")

    def arms(self, item: int) -> list[int]:
        return [item * self.n + k for k in range(self.n)]

    def choose(self, item: int, raw_item: object) -> tuple[str, int, float]:
        """``(artwork name, arm id, propensity)`` for one shown title."""
        with self.lock:  # requests run on a thread pool; a Generator is not thread-safe
            k = int(self.rng.integers(self.n))
        return f"{raw_item}:a{k}", item * self.n + k, 1.0 / self.n
