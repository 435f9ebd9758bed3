"""An artwork simulator on real titles: each title has K artworks, each showing one of its genres or a tone.

A member's chance of playing a title depends on the artwork: the title's own appeal, plus the member's
taste for the genre an artwork shows (the couple for the romance fan, the explosion for the action fan),
plus how a tone (bright, dark, a close-up) suits the hour of day, plus an artwork's own appeal that no
feature shows. Tastes are read from real histories (MovieLens genre shares, z-scored across members)
and hours from when each member rated; titles are drawn by popularity. Because the simulator knows every
play probability, it knows every policy's true value and every round's regret.

    logit P(play | member u, title t, artwork a, hour h) = base + appeal[t] + appeal[a]
        + taste_effect · taste[u, genre(a)]      (artworks showing a genre)
        + tone_effect · TONE_BY_HOUR[tone(a), bucket(h)]   (artworks showing a tone)

The member context a policy sees is the taste vector, a one-hot of the hour bucket and, optionally, a
user state from another model (the sequence ranker's); an artwork's features are a one-hot of the genre
or tone it shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from marquee.bandits.logs import BanditLog, Candidates
from marquee.bandits.policies.base import Policy, sample_slots
from marquee.bandits.policies.static import PreferencePolicy
from marquee.data.context import HOURS, hour_bucket_ids
from marquee.data.log import InteractionLog

TONES = ("bright", "dark", "close-up")
HOUR_BUCKETS = ("night", "morning", "afternoon", "evening")  # hours 0-5, 6-11, 12-17, 18-23
# logit effect of a tone artwork per hour bucket: bright art by day, dark art at night, a face always a little
TONE_BY_HOUR = np.array([[-0.6, 0.6, 0.5, -0.2], [0.8, -0.6, -0.4, 0.5], [0.2, 0.2, 0.2, 0.2]])
UNKNOWN_GENRES = ("unknown", "(no genres listed)")


@dataclass(frozen=True)
class SimulatorConfig:
    """The play-probability model's constants and the artworks' layout."""

    n_artworks: int = 4  # K artworks per title
    max_genre_artworks: int = 3  # at most this many show one of the title's genres; the rest show tones
    base_logit: float = -1.5
    taste_effect: float = 1.0  # logit per standard deviation of the member's taste for the artwork's genre
    tone_effect: float = 1.0  # scales TONE_BY_HOUR
    title_spread: float = 0.5  # sd of titles' own appeal (the same for all of a title's artworks)
    artwork_noise: float = 0.3  # sd of each artwork's own appeal, which no feature shows
    hour_smoothing: float = 1.0  # pseudo-count per hour added to each member's hour histogram
    seed: int = 0


@dataclass(frozen=True)
class Requests:
    """A batch of impressions to serve: which member, which title, at which hour."""

    user: np.ndarray  # (n,) index into the simulator's members
    title: np.ndarray  # (n,) index into its titles
    hour: np.ndarray  # (n,) 0..23

    def __len__(self) -> int:
        return len(self.user)


class ArtworkSimulator:
    """Serves requests, scores any policy's choices with the true play probabilities, and writes logs."""

    def __init__(self, taste: np.ndarray, hour_weights: np.ndarray, title_genres: list[np.ndarray],
                 title_weights: np.ndarray, genre_names: list[str], config: SimulatorConfig = SimulatorConfig(),
                 user_state: np.ndarray | None = None, user_ids: np.ndarray | None = None,
                 title_ids: np.ndarray | None = None):
        self.config, self.genre_names = config, list(genre_names)
        self.taste = np.asarray(taste, dtype=np.float32)  # (U, G) z-scored genre shares
        self.hour_cdf = np.cumsum(hour_weights / hour_weights.sum(axis=1, keepdims=True), axis=1)  # (U, 24)
        self.title_p = title_weights / title_weights.sum()  # (T,)
        self.user_state = None if user_state is None else np.asarray(user_state, dtype=np.float32)  # (U, s)
        self.user_ids = np.arange(1, len(taste) + 1) if user_ids is None else np.asarray(user_ids)
        self.title_ids = np.arange(1, len(title_genres) + 1) if title_ids is None else np.asarray(title_ids)
        rng = np.random.default_rng(config.seed)
        n_genres, k = len(genre_names), config.n_artworks
        # artwork j of title t is id t * K + j; genre = -1 for a tone artwork, tone = -1 for a genre artwork
        self.artwork_genre = np.full(len(title_genres) * k, -1)
        self.artwork_tone = np.full(len(title_genres) * k, -1)
        for t, genres in enumerate(title_genres):
            shown = list(genres[: min(config.max_genre_artworks, k)])
            tones = np.roll(np.arange(len(TONES)), -rng.integers(len(TONES)))  # each title starts at a random tone
            n_tone = k - len(shown)
            self.artwork_genre[t * k: t * k + len(shown)] = shown
            self.artwork_tone[t * k + len(shown): (t + 1) * k] = np.resize(tones, n_tone)
        self.title_appeal = rng.normal(0.0, config.title_spread, len(title_genres))
        self.artwork_appeal = rng.normal(0.0, config.artwork_noise, len(self.artwork_genre))
        self.arm_table = np.zeros((len(self.artwork_genre), n_genres + len(TONES)), dtype=np.float32)
        is_genre = self.artwork_genre >= 0
        self.arm_table[np.flatnonzero(is_genre), self.artwork_genre[is_genre]] = 1.0
        self.arm_table[np.flatnonzero(~is_genre), n_genres + self.artwork_tone[~is_genre]] = 1.0
        self.arm_names = [f"genre:{g}" for g in genre_names] + [f"tone:{t}" for t in TONES]
        self.artwork_feature = self.arm_table.argmax(axis=1)  # (A,) the one feature each artwork shows
        # the mean and sd of genre shares that z-scored the tastes (a service must build the same context)
        self.taste_mean, self.taste_std = np.zeros(n_genres), np.ones(n_genres)
        self.title_raw_ids = [str(t) for t in self.title_ids]  # what a serving layout names titles by
        state_names = [] if self.user_state is None else [f"state:{i}" for i in range(self.user_state.shape[1])]
        self.context_names = tuple([f"taste:{g}" for g in genre_names] + [f"hour:{b}" for b in HOUR_BUCKETS]
                                   + state_names)

    @classmethod
    def from_interaction_log(cls, log: InteractionLog, config: SimulatorConfig = SimulatorConfig(),
                             user_state: np.ndarray | None = None) -> ArtworkSimulator:
        """Titles, genres, tastes and hours from a log with genre metadata and an ``hour`` column (MovieLens).

        ``user_state``, if given, is ``(n_users + 1, s)`` indexed by user id (row 0 is padding).
        """
        if "hour" not in log.interactions or "genres" not in log.item_meta:
            raise ValueError(f"{log.name}: the simulator needs an 'hour' column and item genres")
        names = [g for g in log.genres.raw_ids if g not in UNKNOWN_GENRES]
        column = {g: j for j, g in enumerate(names)}
        genres_of = [np.array([column[g] for g in gs if g in column], dtype=np.int64) for gs in log.item_meta["genres"]]
        items = np.array([i for i, gs in zip(log.item_meta.index, genres_of) if len(gs)])  # item ids with a genre
        users = log.interactions["user_id"].to_numpy() - 1
        item_ids = log.interactions["item_id"].to_numpy()
        # each interaction spreads one unit over its title's genres; shares are z-scored across members
        position = pd.Series(np.arange(len(log.item_meta)), index=log.item_meta.index)
        lengths = np.array([len(gs) for gs in genres_of])
        indptr, flat = np.concatenate([[0], np.cumsum(lengths)]), np.concatenate(genres_of)
        row = position[item_ids].to_numpy()  # (N,) each interaction's row of item_meta
        n_genres = lengths[row]  # (N,)
        starts = np.repeat(indptr[row], n_genres)
        offsets = np.arange(n_genres.sum()) - np.repeat(np.cumsum(n_genres) - n_genres, n_genres)
        shares = np.zeros((log.n_users, len(names)))
        np.add.at(shares, (np.repeat(users, n_genres), flat[starts + offsets]),
                  np.repeat(1.0 / np.maximum(n_genres, 1), n_genres))
        shares /= np.maximum(shares.sum(axis=1, keepdims=True), 1e-12)
        mean, std = shares.mean(axis=0), np.maximum(shares.std(axis=0), 1e-6)
        taste = np.clip((shares - mean) / std, -3.0, 3.0)
        hours = np.full((log.n_users, HOURS), config.hour_smoothing)
        np.add.at(hours, (users, log.interactions["hour"].to_numpy()), 1.0)
        popularity = np.bincount(item_ids, minlength=log.n_items + 1)[items].astype(np.float64)
        state = None if user_state is None else np.asarray(user_state)[1: log.n_users + 1]
        sim = cls(taste, hours, [genres_of[position[i]] for i in items], popularity, names, config, state,
                  user_ids=np.arange(1, log.n_users + 1), title_ids=items)
        sim.taste_mean, sim.taste_std = mean, std
        sim.title_raw_ids = [str(log.items.raw_ids[i - 1]) for i in items]
        return sim

    @classmethod
    def synthetic(cls, n_users: int = 300, n_titles: int = 60, n_genres: int = 4,
                  config: SimulatorConfig = SimulatorConfig()) -> ArtworkSimulator:
        """A small simulator with made-up members and titles (tests): Gaussian tastes, uniform hours."""
        rng = np.random.default_rng(config.seed + 1)
        taste = rng.normal(size=(n_users, n_genres))
        genres = [rng.choice(n_genres, size=rng.integers(1, 3), replace=False) for _ in range(n_titles)]
        return cls(taste, np.ones((n_users, HOURS)), genres, np.ones(n_titles), [f"g{j}" for j in range(n_genres)],
                   config)

    # --- serving --------------------------------------------------------------------------------

    @property
    def n_titles(self) -> int:
        return len(self.title_p)

    def title_artworks(self, title: np.ndarray) -> np.ndarray:
        """(n, K) artwork ids of each title."""
        return title[:, None] * self.config.n_artworks + np.arange(self.config.n_artworks)

    def requests(self, n: int, rng: np.random.Generator) -> Requests:
        """``n`` impressions: members uniformly, titles by popularity, hours from each member's own habits."""
        user = rng.integers(0, len(self.taste), n)
        title = rng.choice(self.n_titles, size=n, p=self.title_p)
        hour = np.minimum((self.hour_cdf[user] < rng.random((n, 1))).sum(axis=1), 23)
        return Requests(user, title, hour)

    def context(self, req: Requests) -> np.ndarray:
        """(n, d) what a policy sees of the member: taste, hour bucket, and the optional user state."""
        hour_bucket = hour_bucket_ids(req.hour, len(HOUR_BUCKETS))  # (n,)
        parts = [self.taste[req.user], np.eye(len(HOUR_BUCKETS), dtype=np.float32)[hour_bucket]]
        if self.user_state is not None:
            parts.append(self.user_state[req.user])
        return np.concatenate(parts, axis=1)

    def candidates(self, req: Requests) -> Candidates:
        return Candidates(self.title_artworks(req.title), self.arm_table)

    def play_probabilities(self, req: Requests) -> np.ndarray:
        """(n, K) true chance that the member plays the title if shown each of its artworks."""
        art = self.title_artworks(req.title)  # (n, K)
        genre, tone = self.artwork_genre[art], self.artwork_tone[art]
        taste = np.take_along_axis(self.taste[req.user], np.maximum(genre, 0), axis=1)  # (n, K)
        tone_effect = TONE_BY_HOUR[np.maximum(tone, 0), hour_bucket_ids(req.hour, len(HOUR_BUCKETS))[:, None]]  # (n, K)
        c = self.config
        logit = (c.base_logit + self.title_appeal[req.title][:, None] + self.artwork_appeal[art]
                 + np.where(genre >= 0, c.taste_effect * taste, 0.0) + np.where(tone >= 0, c.tone_effect * tone_effect, 0.0))
        return expit(logit)

    # --- truth ----------------------------------------------------------------------------------

    def value_on(self, req: Requests, probabilities: np.ndarray) -> float:
        """Expected reward of a policy with these ``(n, K)`` action probabilities on these requests."""
        return float((probabilities * self.play_probabilities(req)).sum(axis=1).mean())

    def true_value(self, policy: Policy, n: int = 200_000, seed: int = 10_007, chunk: int = 20_000) -> float:
        """A policy's value over the request distribution, exact in the arms and rewards and Monte Carlo in
        the ``n`` requests (standard error about 0.1% of the value at the default)."""
        rng, total = np.random.default_rng(seed), 0.0
        for start in range(0, n, chunk):
            req = self.requests(min(chunk, n - start), rng)
            probs = policy.action_probabilities(self.context(req), self.candidates(req))
            total += self.value_on(req, probs) * len(req)
        return total / n

    def artwork_values(self) -> np.ndarray:
        """(n_artworks,) each artwork's play probability averaged over members and their hours (exact)."""
        c, k = self.config, self.config.n_artworks
        title = np.arange(len(self.artwork_genre)) // k
        base = c.base_logit + self.title_appeal[title] + self.artwork_appeal  # (A,)
        values = np.empty(len(base))
        is_genre = self.artwork_genre >= 0
        taste = self.taste[:, self.artwork_genre[is_genre]]  # (U, A_genre)
        values[is_genre] = expit(base[is_genre] + c.taste_effect * taste).mean(axis=0)
        bucket_p = np.diff(self.hour_cdf, prepend=0.0, axis=1).reshape(len(self.taste), 4, 6).sum(axis=2)  # (U, 4)
        tone = self.artwork_tone[~is_genre]
        per_bucket = expit(base[~is_genre][:, None] + c.tone_effect * TONE_BY_HOUR[tone])  # (A_tone, 4)
        values[~is_genre] = per_bucket @ bucket_p.mean(axis=0)
        return values

    def best_artwork_policy(self) -> PreferencePolicy:
        """The best single artwork per title for the whole audience: what a non-personalized A/B test finds."""
        return PreferencePolicy(self.artwork_values(), temperature=0.0, name="best artwork per title")

    def production_policy(self, key_art: float = 1.5, bright: float = 0.5) -> PreferencePolicy:
        """A biased logger with a house style: mostly the title's first (key) artwork, bright art next."""
        scores = np.zeros(len(self.artwork_genre))
        scores[:: self.config.n_artworks] += key_art
        scores[self.artwork_tone == TONES.index("bright")] += bright
        return PreferencePolicy(scores, temperature=1.0, name="production")

    # --- logs -----------------------------------------------------------------------------------

    def simulate_log(self, policy: Policy, n: int, seed: int) -> BanditLog:
        """``n`` impressions served by ``policy``, with its propensities and Bernoulli plays."""
        rng = np.random.default_rng(seed)
        req = self.requests(n, rng)
        context, arms = self.context(req), self.candidates(req)
        probs = policy.action_probabilities(context, arms)
        action = sample_slots(probs, rng)
        rows = np.arange(n)
        reward = (rng.random(n) < self.play_probabilities(req)[rows, action]).astype(np.float64)
        meta = pd.DataFrame({"user_id": self.user_ids[req.user], "title_id": self.title_ids[req.title],
                             "hour": req.hour})
        return BanditLog(context, arms, action, probs[rows, action], reward, self.context_names,
                         meta=meta, source=f"simulated log ({policy.name}, seed {seed})")

    def requests_of(self, log: BanditLog) -> Requests:
        """The requests behind a log this simulator wrote (to score other policies on the same rows)."""
        user = pd.Index(self.user_ids).get_indexer(log.meta["user_id"])
        title = pd.Index(self.title_ids).get_indexer(log.meta["title_id"])
        return Requests(user, title, log.meta["hour"].to_numpy())
