"""Which artwork a title is shown with, and the probability the choice had (the bandit's propensity).

Two choosers, one interface (:meth:`choose` over the titles of a page):

- :class:`SyntheticArtwork`: a bundle without an artwork policy. Every title has ``n`` variants named
  ``<item>:a<k>``, picked uniformly (propensity ``1/n``), with no features a policy could learn from.
- :class:`PolicyArtwork`: an artwork policy file (``marquee-artwork-policy``, written by
  ``python -m marquee.bandit ... save_policies=true``). The file carries its *layout*: each title's
  artworks, each showing one genre or tone (the arm features, one-hot), and how the member context is
  built (genre taste of the history, z-scored with the training log's mean and sd, clipped to ±3, and
  the one-hot hour bucket), exactly as :class:`marquee.bandits.simulator.ArtworkSimulator` builds them.
  ``kind: uniform`` picks uniformly among the layout's artworks; ``kind: linear`` is ε-greedy over the
  linear reward model ``[1, context] ⊗ arm · θ`` that LinUCB or linear TS fitted (the greedy arm by the
  posterior mean; ties split evenly), so every artwork keeps probability ≥ ε / K and any other policy can
  be valued from its log. Titles the layout lacks fall back to the synthetic variants, logged without arm
  features (so that compaction leaves them out of the bandit's log: no policy of this layout chose them).

Both log, per impression, the member context and the title's arm features and ids, which is what the
off-policy estimators read. Numpy only: the service imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT, VERSION = "marquee-artwork-policy", 1
UNIFORM = "uniform-random v1"
HOUR_BUCKETS = ("night", "morning", "afternoon", "evening")
MAX_ARTWORKS = 64  # per title: arm ids are the title's place in the layout x 64 + the artwork's slot  # hours 0-5, 6-11, 12-17, 18-23, as the simulator's


class PolicyFileError(ValueError):
    """An artwork policy file that cannot be served: the message names the file and what is wrong."""


@dataclass
class Choice:
    """The artwork shown for one title, and what a later off-policy estimate needs to know about the choice."""

    artwork: str  # its name, "<raw item>:<genre or tone>" (or "<raw item>:a<k>" for synthetic variants)
    arm: int  # the chosen artwork's id
    propensity: float  # the probability it had
    arms: list[int]  # every artwork of the title, in slot order
    arm_features: list[int]  # (K,) the one feature each shows, an index into the chooser's ``n_features``


def policy_id(policy: dict[str, Any]) -> str:
    """A short content hash of a policy file: what impressions name, so a readout finds the right parameters."""
    return hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest()[:16]


def read_policy(path: str | Path) -> dict[str, Any]:
    """Read and check a policy file (see :func:`check_policy`)."""
    path = Path(path).expanduser()
    try:
        policy = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PolicyFileError(f"'{path}' is not a readable artwork policy file: {err}") from err
    return check_policy(policy, str(path))


def check_policy(policy: dict[str, Any], where: str = "policy") -> dict[str, Any]:
    """``policy`` if it is a servable ``marquee-artwork-policy``; PolicyFileError naming the first problem."""
    if not isinstance(policy, dict) or policy.get("format") != FORMAT:
        raise PolicyFileError(f"{where}: not a {FORMAT} file (its 'format' is {policy.get('format')!r})"
                              if isinstance(policy, dict) else f"{where}: not a JSON object")
    if int(policy.get("version", 0)) > VERSION:
        raise PolicyFileError(f"{where}: version {policy['version']} is newer than this marquee reads ({VERSION})")
    kind = policy.get("kind")
    if kind not in ("uniform", "linear"):
        raise PolicyFileError(f"{where}: kind must be 'uniform' or 'linear', got {kind!r}")
    layout = policy.get("layout") or {}
    for key in ("genres", "taste_mean", "taste_std", "arm_features", "titles"):
        if key not in layout:
            raise PolicyFileError(f"{where}: layout.{key} is missing")
    g, f = len(layout["genres"]), len(layout["arm_features"])
    if len(layout["taste_mean"]) != g or len(layout["taste_std"]) != g:
        raise PolicyFileError(f"{where}: layout.taste_mean and taste_std need one value per genre ({g})")
    bad = next((t for t, arms in layout["titles"].items()
                if not 0 < len(arms) <= MAX_ARTWORKS or any(not 0 <= a < f for a in arms)), None)
    if bad is not None:
        raise PolicyFileError(f"{where}: title {bad!r} has no artworks, more than {MAX_ARTWORKS}, or an arm feature "
                              f"outside 0..{f - 1}")
    if kind == "linear":
        theta = np.asarray(policy.get("theta", []), dtype=np.float64)
        d = g + len(HOUR_BUCKETS)
        if theta.shape != ((d + 1) * f,) or not np.isfinite(theta).all():
            raise PolicyFileError(f"{where}: theta needs {(d + 1) * f} finite values ((1 + {d} context) x {f} arm "
                                  f"features), got {theta.size}")
        if not 0.0 < float(policy.get("epsilon", -1)) <= 1.0:
            raise PolicyFileError(f"{where}: epsilon must be in (0, 1] so that every artwork keeps a chance "
                                  f"(an estimate from this policy's log needs it), got {policy.get('epsilon')!r}")
    return policy


def layout_id(policy: dict[str, Any]) -> str:
    """A hash of the layout alone: two policies can share an A/B test (and value each other) only if it is equal."""
    return hashlib.sha256(json.dumps(policy["layout"], sort_keys=True).encode()).hexdigest()[:16]


class SyntheticArtwork:
    """Uniform choice among a title's ``n`` artwork variants; the arm id of variant k of internal item i is i*n + k."""

    def __init__(self, n: int = 4, seed: int | None = None):
        if n < 1:
            raise ValueError(f"artworks per title must be >= 1, got {n}")
        self.context_names: list[str] = []
        self.n, self.rng, self.lock = n, np.random.default_rng(seed), threading.Lock()
        self.name, self.id, self.policy = UNIFORM, UNIFORM, None
        self.n_features = n  # a synthetic variant's only feature is its own slot

    def bind(self, genres: list[frozenset[str]], raw_ids: list[object]) -> None:
        """Nothing to precompute: synthetic variants have no layout."""

    def context(self, history: np.ndarray, hour: int) -> list[float]:
        return []

    def choose(self, items: list[int], raw_items: list[object], context: list[float]) -> list[Choice]:
        with self.lock:  # requests run on a thread pool; a Generator is not thread-safe
            slots = self.rng.integers(self.n, size=len(items))
        return [Choice(f"{raw}:a{k}", item * self.n + int(k), 1.0 / self.n, [item * self.n + j for j in range(self.n)],
                       list(range(self.n))) for item, raw, k in zip(items, raw_items, slots, strict=True)]


class PolicyArtwork:
    """The artworks and choices of a policy file (see the module's doc); ``fallback`` serves unknown titles."""

    def __init__(self, policy: dict[str, Any], seed: int | None = None, fallback: SyntheticArtwork | None = None,
                 where: str = "policy"):
        self.policy = check_policy(policy, where)
        layout = policy["layout"]
        self.genres = list(layout["genres"])
        self.genre_index = {g: j for j, g in enumerate(self.genres)}
        self.mean = np.asarray(layout["taste_mean"], dtype=np.float64)  # (G,)
        self.std = np.maximum(np.asarray(layout["taste_std"], dtype=np.float64), 1e-6)  # (G,)
        self.features = list(layout["arm_features"])
        self.n_features = len(self.features)
        self.titles = {str(t): [int(a) for a in arms] for t, arms in layout["titles"].items()}
        self.arm_base = {t: i * MAX_ARTWORKS for i, t in enumerate(sorted(self.titles))}  # arm id = base + slot
        self.kind, self.epsilon = policy["kind"], float(policy.get("epsilon", 1.0))
        d, f = len(self.genres) + len(HOUR_BUCKETS), len(self.features)
        self.theta = (np.asarray(policy["theta"], dtype=np.float64).reshape(d + 1, f) if self.kind == "linear"
                      else None)  # (1 + d, f): a one-hot arm's score is ([1, context] @ theta)[its feature]
        self.context_names = [f"taste:{g}" for g in self.genres] + [f"hour:{b}" for b in HOUR_BUCKETS]
        self.name = str(policy.get("name", self.kind))
        self.id = policy_id(policy)
        self.layout = layout_id(policy)
        self.rng, self.lock = np.random.default_rng(seed), threading.Lock()
        self.fallback = fallback or SyntheticArtwork(4, seed)

    def bind(self, genres: list[frozenset[str]], raw_ids: list[object]) -> None:
        """Tables by the bundle's internal ids (0: padding), built once so a request only indexes arrays:
        each title's genre shares (n + 1, G), its artworks' feature indices and mask (n + 1, K), arm id base."""
        n = len(genres) - 1
        self.item_shares = np.zeros((n + 1, len(self.genres)))  # each title spreads one unit over its known genres
        for i, gs in enumerate(genres):
            known = [self.genre_index[g] for g in gs if g in self.genre_index]
            if i and known:
                self.item_shares[i, known] = 1.0 / len(known)
        width = max((len(a) for a in self.titles.values()), default=1)
        self.item_arms = np.zeros((n + 1, width), dtype=np.int64)
        self.item_mask = np.zeros((n + 1, width), dtype=bool)
        self.item_base = np.full(n + 1, -1, dtype=np.int64)  # -1: the layout lacks the title
        for i, raw in enumerate(raw_ids, start=1):
            arms = self.titles.get(str(raw))
            if arms is not None:
                self.item_arms[i, : len(arms)], self.item_mask[i, : len(arms)] = arms, True
                self.item_base[i] = self.arm_base[str(raw)]

    def context(self, history: np.ndarray, hour: int) -> list[float]:
        """(G + 4,) the member context: z-scored genre shares of the history (internal ids), then the hour bucket."""
        shares = self.item_shares[np.asarray(history, dtype=np.int64)].sum(axis=0)  # (G,)
        total = shares.sum()
        taste = np.clip(((shares / total if total else shares) - self.mean) / self.std, -3.0, 3.0)
        bucket = np.zeros(len(HOUR_BUCKETS))
        bucket[min(int(hour) // 6, len(HOUR_BUCKETS) - 1)] = 1.0
        return [*taste.tolist(), *bucket.tolist()]

    def probabilities(self, context: np.ndarray, arms: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """(n, K) the policy's distribution over each row's artworks: ``context`` (n, G + 4), ``arms`` (n, K) the
        feature index of each artwork, ``mask`` (n, K) which slots hold one (default all)."""
        mask = np.ones(arms.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if self.kind == "uniform":
            return self._distribution(None, mask)
        with_bias = np.concatenate([np.ones((len(context), 1)), np.asarray(context, dtype=np.float64)], axis=1)
        return self._distribution(np.take_along_axis(with_bias @ self.theta, np.where(mask, arms, 0), axis=1), mask)

    def _distribution(self, scores: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
        """(n, K) ε-greedy over ``scores`` (n, K) within ``mask``, the best split evenly between ties; uniform
        for ``scores=None``."""
        uniform = mask / mask.sum(axis=1, keepdims=True)
        if scores is None:
            return uniform
        scores = np.where(mask, scores, -np.inf)
        best = (scores >= scores.max(axis=1, keepdims=True) - 1e-12) & mask
        return (1.0 - self.epsilon) * best / best.sum(axis=1, keepdims=True) + self.epsilon * uniform

    def choose(self, items: list[int], raw_items: list[object], context: list[float]) -> list[Choice]:
        ids = np.asarray(items, dtype=np.int64)  # (n,) internal ids
        known = self.item_base[ids] >= 0
        others = iter(self.fallback.choose(ids[~known].tolist(), [r for r, k in zip(raw_items, known) if not k], context))
        with self.lock:
            draws = self.rng.random(len(ids))
        arms, mask = self.item_arms[ids[known]], self.item_mask[ids[known]]  # (m, K) each
        if self.kind == "uniform":
            p = self._distribution(None, mask)  # (m, K)
        else:  # one member context for every title: its score of each arm feature once, (f,)
            by_feature = np.concatenate([[1.0], np.asarray(context, dtype=np.float64)]) @ self.theta
            p = self._distribution(by_feature[arms], mask)
        cdf = np.cumsum(p, axis=1)
        slots = np.minimum((cdf < draws[known][:, None] * cdf[:, -1:]).sum(axis=1), mask.sum(axis=1) - 1)  # (m,)
        # plain lists from here: indexing NumPy scalars title by title cost more than the sampling itself
        slot_of, base_of, width_of = slots.tolist(), self.item_base[ids[known]].tolist(), mask.sum(axis=1).tolist()
        arms_of, p_of, features, mine = arms.tolist(), p.tolist(), self.features, iter(range(len(arms)))
        choices = []
        for raw, is_known in zip(raw_items, known.tolist(), strict=True):
            if not is_known:  # synthetic variants: no features in this layout, left out of the bandit's log
                choice = next(others)
                choice.arm_features = []
                choices.append(choice)
                continue
            r = next(mine)
            slot, base, k = slot_of[r], base_of[r], width_of[r]
            choices.append(Choice(f"{raw}:{features[arms_of[r][slot]]}", base + slot, p_of[r][slot],
                                  list(range(base, base + k)), arms_of[r][:k]))
        return choices


def artwork_chooser(policy: dict[str, Any] | None, artworks: int = 4, seed: int | None = None,
                    where: str = "policy") -> SyntheticArtwork | PolicyArtwork:
    """The chooser for a bundle's (or the command line's) policy; a bundle without one gets synthetic variants."""
    fallback = SyntheticArtwork(artworks, seed)
    if policy is None:
        return fallback
    return PolicyArtwork(policy, seed, fallback, where)
