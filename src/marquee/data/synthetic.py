"""Synthetic streaming logs with planted tastes, popularity, hour and device effects, streamed to Parquet.

Every draw that shapes the log is kept in a :class:`Truth`, so a test or a study can check that a
model recovers what was planted. Users are generated in chunks of about ``chunk_size``
interactions, each chunk with its own random stream, so memory stays bounded at any size.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from marquee.data.atomic import atomic_path, write_json, write_parquet
from marquee.data.build import SECONDS_PER_DAY, hour_and_weekday

GENERATOR_VERSION = 1  # bump when the same config would produce different data, so caches go stale
MANIFEST = "_SUCCESS.json"
ROW_GROUP_ROWS = 1_000_000  # readers prefer row groups far larger than the sampling chunks
FILES = ("interactions.parquet", "items.parquet", "users.parquet", "truth.npz")

# name, peak hour (UTC), strength of its hour-of-day profile, log-shift of its weight on mobile
GENRES = (
    ("Drama", 21, 0.3, -0.20),
    ("Comedy", 20, 0.3, 0.25),
    ("Action", 22, 0.5, -0.10),
    ("Thriller", 23, 0.8, 0.00),
    ("Horror", 0, 1.2, 0.00),
    ("Romance", 22, 0.5, 0.10),
    ("Sci-Fi", 23, 0.5, -0.15),
    ("Documentary", 19, 0.5, 0.10),
    ("Animation", 16, 1.0, 0.00),
    ("Kids", 15, 1.4, -0.10),
    ("Crime", 22, 0.4, -0.05),
    ("Fantasy", 20, 0.4, -0.10),
    ("Mystery", 23, 0.5, 0.00),
    ("Reality", 20, 0.4, 0.30),
    ("Anime", 1, 0.7, 0.20),
    ("Music", 18, 0.3, 0.30),
    ("Family", 18, 0.8, -0.10),
    ("Stand-Up", 22, 0.4, 0.30),
)
DEVICES = ("tv", "mobile", "tablet", "web")
DEVICE_SHARE = np.array([0.45, 0.30, 0.10, 0.15])  # mean of the users' preferred-device distributions
DEVICE_WATCH = np.array([0.0, -0.6, -0.2, -0.1])  # logit shift of the mean watch fraction per device
EVENTS = ("play", "complete", "skip")
SKIP_BELOW, COMPLETE_FROM = 0.1, 0.9
# relative traffic per UTC hour: quiet before dawn, busiest in the evening
ACTIVITY_BY_HOUR = np.array([4, 3, 2, 1, 1, 1, 1, 2, 3, 3, 3, 3, 4, 4, 4, 5, 6, 7, 8, 9, 10, 10, 8, 6], dtype=float)
GAP_SHAPE = 0.3  # Gamma shape of gaps between a user's events; < 1 gives binges and long pauses
WATCH_CONCENTRATION = 1.5  # a + b of the watch-fraction Beta; small puts mass near 0 and 1
WATCH_BIAS, WATCH_TASTE = -0.5, 1.0  # logit of mean watch fraction = bias + taste * log(G * taste + 0.1) + ...

SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("timestamp", pa.int64()),
        ("event", pa.dictionary(pa.int8(), pa.string())),
        ("value", pa.float32()),
        ("hour", pa.int8()),
        ("dow", pa.int8()),
        ("device", pa.dictionary(pa.int8(), pa.string())),
    ]
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Size, planted effects and seed of a synthetic log; the same config always gives the same files."""

    n_users: int = 2_000
    n_items: int = 1_000
    n_interactions: int = 100_000  # exact total
    n_genres: int = 18  # the first n of GENRES
    max_genres_per_item: int = 3
    popularity_exponent: float = 1.0  # Zipf: the r-th most popular item weighs r ** -exponent
    taste_alpha: float = 0.3  # Dirichlet concentration of tastes; small means users love a few genres
    hour_strength: float = 1.0  # 0 removes the hour-of-day effect on genres
    device_strength: float = 1.0  # 0 removes device effects on genres and watch fractions
    activity_sigma: float = 1.0  # lognormal spread of how active users are
    min_per_user: int = 5
    start_date: str = "2022-01-01"  # midnight UTC of this day starts the time span
    span_days: int = 365
    seed: int = 0
    chunk_size: int = 100_000  # interactions sampled at a time (whole users); small chunks stay in cache

    def __post_init__(self) -> None:
        checks = {
            "n_users": self.n_users >= 1,
            "n_genres": 1 <= self.n_genres <= len(GENRES),
            "n_items": self.n_items >= self.n_genres,
            "max_genres_per_item": 1 <= self.max_genres_per_item <= self.n_genres,
            "min_per_user": self.min_per_user >= 5,
            "n_interactions": self.n_interactions >= self.min_per_user * self.n_users,
            "taste_alpha": self.taste_alpha > 0,
            "span_days": self.span_days >= 1,
            "seed": self.seed >= 0,
            "chunk_size": self.chunk_size >= 1,
        }
        bad = [key for key, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"synthetic config: invalid {bad} in {self}; need n_genres <= {len(GENRES)} <= n_items, "
                "min_per_user >= 5 and n_interactions >= min_per_user * n_users"
            )

    @property
    def t0(self) -> int:
        """Unix seconds of the start of the time span."""
        return int(np.datetime64(self.start_date, "D").astype("datetime64[s]").astype(np.int64))


@dataclass
class Truth:
    """Everything planted; user row ``u`` is raw user id ``u + 1``, item row ``i`` raw item id ``i + 1``."""

    tastes: np.ndarray  # (U, G) float32, rows sum to 1
    device_pref: np.ndarray  # (U, D) float32, rows sum to 1
    counts: np.ndarray  # (U,) int64 interactions per user
    start: np.ndarray  # (U,) float64 seconds after t0 where the user's activity window opens
    duration: np.ndarray  # (U,) float64 length of that window in seconds
    age: np.ndarray  # (U,) int16
    item_genres: np.ndarray  # (I, G) bool
    item_popularity: np.ndarray  # (I,) float64 Zipf weight, sums to 1
    item_quality: np.ndarray  # (I,) float32 logit shift of watch fractions
    item_year: np.ndarray  # (I,) int16
    hour_profiles: np.ndarray  # (24, G) float32 multiplier of genre weights by UTC hour, mean 1 per genre
    device_genre: np.ndarray  # (D, G) float32 multiplier of genre weights by device
    device_watch: np.ndarray  # (D,) float32 logit shift of watch fractions by device
    genre_names: np.ndarray  # (G,) str

    def save(self, path: Path) -> None:
        """Write all arrays to one ``.npz``, atomically."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object stops numpy appending '.npz'
            arrays = {k.name: getattr(self, k.name) for k in fields(self)}
            np.savez_compressed(f, device_names=np.array(DEVICES), **arrays)


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent random stream per (seed, purpose, chunk)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def plant_truth(cfg: SyntheticConfig) -> Truth:
    """Draw user tastes and habits, item genres and popularity, and the hour and device effects."""
    n_g, n_u, n_i = cfg.n_genres, cfg.n_users, cfg.n_items
    genres = GENRES[:n_g]
    peak = np.array([g[1] for g in genres], dtype=float)
    amp = np.array([g[2] for g in genres]) * cfg.hour_strength
    hours = np.arange(24)[:, None]
    hour_profiles = np.exp(amp * np.cos(2 * np.pi * (hours - peak) / 24))  # (24, G), peak at the genre's hour
    hour_profiles /= hour_profiles.mean(0)
    device_genre = np.ones((len(DEVICES), n_g))  # (D, G); tv and web keep tastes as they are
    device_genre[DEVICES.index("mobile")] = np.exp(cfg.device_strength * np.array([g[3] for g in genres]))
    tablet_boost = np.array([0.3 if g[0] in ("Kids", "Animation", "Family") else 0.0 for g in genres])
    device_genre[DEVICES.index("tablet")] = np.exp(cfg.device_strength * tablet_boost)  # children borrow tablets

    users = _rng(cfg.seed, 0)
    tastes = users.dirichlet(np.full(n_g, cfg.taste_alpha), size=n_u)
    device_pref = users.dirichlet(2.0 * DEVICE_SHARE * len(DEVICES), size=n_u)
    activity = users.lognormal(0.0, cfg.activity_sigma, size=n_u)
    extra = users.multinomial(cfg.n_interactions - cfg.min_per_user * n_u, activity / activity.sum())
    span = cfg.span_days * SECONDS_PER_DAY
    start = users.random(n_u) * span
    duration = (span - start) * users.uniform(0.05, 1.0, size=n_u)  # the window ends inside the span
    age = np.clip(np.rint(users.normal(34, 12, size=n_u)), 13, 80).astype(np.int16)

    items = _rng(cfg.seed, 1)
    n_per_item = items.choice(np.arange(1, cfg.max_genres_per_item + 1), size=n_i, p=_harmonic(cfg.max_genres_per_item))
    keys = items.random((n_i, n_g))  # (I, G); an item takes the genres with its smallest keys
    keys[items.permutation(n_i)[:n_g], np.arange(n_g)] = -1.0  # every genre has at least one item
    item_genres = keys.argsort(1).argsort(1) < n_per_item[:, None]
    popularity = np.empty(n_i)
    popularity[items.permutation(n_i)] = np.arange(1, n_i + 1, dtype=float) ** -cfg.popularity_exponent
    return Truth(
        tastes=tastes.astype(np.float32),
        device_pref=device_pref.astype(np.float32),
        counts=(cfg.min_per_user + extra).astype(np.int64),
        start=start,
        duration=duration,
        age=age,
        item_genres=item_genres,
        item_popularity=popularity / popularity.sum(),
        item_quality=items.normal(0.0, 0.5, size=n_i).astype(np.float32),
        item_year=(2024 - np.minimum(items.exponential(12.0, size=n_i), 94)).astype(np.int16),
        hour_profiles=hour_profiles.astype(np.float32),
        device_genre=device_genre.astype(np.float32),
        device_watch=(cfg.device_strength * DEVICE_WATCH).astype(np.float32),
        genre_names=np.array([g[0] for g in genres]),
    )


def _harmonic(k: int) -> np.ndarray:
    """P(an item has j genres) proportional to 1/j: most items have one genre, few have many."""
    p = 1.0 / np.arange(1, k + 1)
    return p / p.sum()


class _Sampler:
    """Turns a Truth into interaction chunks; per-genre cumulative popularity makes item draws one searchsorted."""

    def __init__(self, cfg: SyntheticConfig, truth: Truth):
        self.cfg, self.truth = cfg, truth
        flat, items = [], []
        for g in range(cfg.n_genres):
            members = np.flatnonzero(truth.item_genres[:, g])
            cum = np.cumsum(truth.item_popularity[members])
            flat.append(g + cum / cum[-1])  # genre g's segment runs over (g, g + 1]; its last value is exactly g + 1
            items.append(members)
        self.genre_cum = np.concatenate(flat)  # (sum of genre sizes,) increasing
        self.genre_items = np.concatenate(items)
        self.day_cdf = np.concatenate([[0.0], np.cumsum(ACTIVITY_BY_HOUR) / ACTIVITY_BY_HOUR.sum()])  # (25,)
        self.n_genres = np.float32(cfg.n_genres)
        # (24 * D, G): row hour * D + device multiplies the genre weights, one gather instead of two
        self.hour_device = (truth.hour_profiles[:, None, :] * truth.device_genre[None, :, :]).reshape(-1, cfg.n_genres)

    def chunks(self) -> Iterator[pa.Table]:
        """Yield the log as Arrow tables of whole users, about ``chunk_size`` rows each, in user order."""
        cum = np.cumsum(self.truth.counts)
        cuts = np.searchsorted(cum, np.arange(self.cfg.chunk_size, cum[-1], self.cfg.chunk_size), side="left") + 1
        bounds = np.unique(np.concatenate([[0], cuts, [self.cfg.n_users]]))
        for k, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            yield self._chunk(int(lo), int(hi), _rng(self.cfg.seed, 2, k))

    def _chunk(self, lo: int, hi: int, rng: np.random.Generator) -> pa.Table:
        t = self.truth
        counts = t.counts[lo:hi]
        user = np.repeat(np.arange(lo, hi), counts)  # (N,) user row of each interaction; rows come grouped by user
        ts = self._timestamps(lo, hi, counts, rng)
        hour, dow = hour_and_weekday(ts)  # the genre below is chosen with the timestamp's own hour
        device = _pick(np.repeat(t.device_pref[lo:hi], counts, axis=0), rng)  # (N,)
        weights = np.repeat(t.tastes[lo:hi], counts, axis=0)  # (N, G)
        # taste x hour profile x device shift, as in the planted model
        weights *= np.take(self.hour_device, hour.astype(np.intp) * len(DEVICES) + device, axis=0)
        genre = _pick(weights, rng)
        idx = np.searchsorted(self.genre_cum, genre + rng.random(len(genre)), side="right")
        item = self.genre_items[np.minimum(idx, len(self.genre_items) - 1)]  # (N,) item row, by popularity within genre

        taste = t.tastes[user, genre]
        liking = WATCH_TASTE * np.log(self.n_genres * taste + 0.1)  # 0 at a uniform taste, > 0 for a loved genre
        logit = WATCH_BIAS + liking + t.item_quality[item] + t.device_watch[device]
        mean = 1.0 / (1.0 + np.exp(-logit))
        value = rng.beta(mean * WATCH_CONCENTRATION, (1.0 - mean) * WATCH_CONCENTRATION).astype(np.float32)
        event = np.where(value < SKIP_BELOW, 2, np.where(value >= COMPLETE_FROM, 1, 0)).astype(np.int8)  # EVENTS
        columns = {
            "user_id": user.astype(np.int64) + 1,
            "item_id": item.astype(np.int64) + 1,
            "timestamp": ts,
            "event": pa.DictionaryArray.from_arrays(event, pa.array(EVENTS)),
            "value": value,
            "hour": hour,
            "dow": dow,
            "device": pa.DictionaryArray.from_arrays(device.astype(np.int8), pa.array(DEVICES)),
        }
        return pa.table(columns, schema=SCHEMA)

    def _timestamps(self, lo: int, hi: int, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Increasing Unix seconds per user inside the user's window, busier in the evening (UTC)."""
        gaps = rng.gamma(GAP_SHAPE, size=int(counts.sum()))  # (N,)
        tail = rng.gamma(GAP_SHAPE, size=len(counts))  # gap after the last event, so it is not pinned to the end
        cs = np.cumsum(gaps)
        first = np.cumsum(counts) - counts  # (n,) first row of each user
        base = cs[first] - gaps[first]
        total = cs[first + counts - 1] - base + tail
        pos = (cs - np.repeat(base, counts)) / np.repeat(total, counts)  # (N,) in (0, 1), increasing per user
        t = np.repeat(self.truth.start[lo:hi], counts) + pos * np.repeat(self.truth.duration[lo:hi], counts)
        day, sec = np.divmod(t, SECONDS_PER_DAY)
        # a monotone warp of the time of day keeps the order but moves traffic to busy hours
        sec = np.interp(sec / SECONDS_PER_DAY, self.day_cdf, np.linspace(0.0, 1.0, 25)) * SECONDS_PER_DAY
        return self.cfg.t0 + (day * SECONDS_PER_DAY + sec).astype(np.int64)


def _pick(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of ``weights`` (N, K) by inverse CDF, overwriting it; returns (N,) columns."""
    for k in range(1, weights.shape[1]):  # running sums column by column: faster than cumsum over a short axis
        weights[:, k] += weights[:, k - 1]
    r = rng.random(len(weights), dtype=weights.dtype) * weights[:, -1]
    return np.minimum((weights <= r[:, None]).sum(1), weights.shape[1] - 1)


def item_frame(truth: Truth) -> pd.DataFrame:
    """Items with a made-up title, a year and their genres as a list of names."""
    rng = np.random.default_rng(0)  # titles are decoration: fixed words, so they never disturb the planted draws
    adjectives = ("Silent", "Last", "Hidden", "Broken", "Golden", "Midnight", "Lost", "Crimson", "Endless", "Wild")
    nouns = ("River", "Kingdom", "Signal", "Garden", "Promise", "Harbor", "Echo", "Frontier", "Orchard", "Machine")
    a, n = rng.integers(0, len(adjectives), size=(2, len(truth.item_year)))
    return pd.DataFrame(
        {
            "item_id": np.arange(1, len(truth.item_year) + 1, dtype=np.int64),
            "title": [f"The {adjectives[i]} {nouns[j]} {k + 1}" for k, (i, j) in enumerate(zip(a, n))],
            "year": truth.item_year,
            "genres": [truth.genre_names[row].tolist() for row in truth.item_genres],
        }
    )


def user_frame(truth: Truth) -> pd.DataFrame:
    """Users with an age and the device they use most."""
    return pd.DataFrame(
        {
            "user_id": np.arange(1, len(truth.age) + 1, dtype=np.int64),
            "age": truth.age,
            "preferred_device": np.array(DEVICES)[truth.device_pref.argmax(1)],
        }
    )


def generate_frame(cfg: SyntheticConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Truth]:
    """The whole log in memory (for small sizes): interactions, items, users and the planted truth."""
    truth = plant_truth(cfg)
    interactions = pa.concat_tables(_Sampler(cfg, truth).chunks()).to_pandas()
    return interactions, item_frame(truth), user_frame(truth), truth


def is_complete(out_dir: str | Path, cfg: SyntheticConfig | None = None) -> bool:
    """True if ``out_dir`` holds a finished log (of ``cfg`` if given): its manifest, written last, vouches for it."""
    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("generator_version") != GENERATOR_VERSION:
        return False
    if cfg is not None and manifest.get("config") != asdict(cfg):
        return False
    sizes = manifest.get("files", {})
    return all((out_dir / name).is_file() and (out_dir / name).stat().st_size == sizes.get(name) for name in FILES)


def _row_groups(chunks: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Gather small sampling chunks into tables of at least ``rows`` rows, one Parquet row group each."""
    pending: list[pa.Table] = []
    for table in chunks:
        pending.append(table)
        if sum(t.num_rows for t in pending) >= rows:
            yield pa.concat_tables(pending)
            pending = []
    if pending:
        yield pa.concat_tables(pending)


def _parquet_writer(path: Path) -> pq.ParquetWriter:
    """Zstd, with dictionaries only on columns of few distinct values (on timestamps they cost time for nothing)."""
    dictionary = ["item_id", "event", "hour", "dow", "device"]
    return pq.ParquetWriter(path, SCHEMA, compression="zstd", use_dictionary=dictionary)


def write_synthetic(cfg: SyntheticConfig, out_dir: str | Path, progress: bool = True) -> Path:
    """Stream the log to ``out_dir`` chunk by chunk, each file atomically, and the manifest last."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)  # a crash from here on must leave the folder untrusted
    truth = plant_truth(cfg)
    bar = tqdm(total=cfg.n_interactions, unit="it", unit_scale=True, desc="synthetic log", disable=not progress)
    with atomic_path(out_dir / "interactions.parquet") as tmp, _parquet_writer(tmp) as w:
        written = None
        with ThreadPoolExecutor(1) as pool:  # compress and write one row group while sampling the next
            for table in _row_groups(_Sampler(cfg, truth).chunks(), ROW_GROUP_ROWS):
                if written is not None:
                    written.result()
                written = pool.submit(w.write_table, table, row_group_size=table.num_rows)
                bar.update(table.num_rows)
            if written is not None:
                written.result()
    bar.close()
    write_parquet(item_frame(truth), out_dir / "items.parquet")
    write_parquet(user_frame(truth), out_dir / "users.parquet")
    truth.save(out_dir / "truth.npz")
    sizes = {name: (out_dir / name).stat().st_size for name in FILES}
    write_json({"generator_version": GENERATOR_VERSION, "config": asdict(cfg), "files": sizes}, out_dir / MANIFEST)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    """Command line: ``marquee-synth --n-interactions 10000000 --out /tmp/x`` (every config field is a flag)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    for f in fields(SyntheticConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = vars(parser.parse_args(argv))
    out, progress = args.pop("out"), not args.pop("no_progress")
    started = time.perf_counter()
    write_synthetic(SyntheticConfig(**args), out, progress=progress)
    seconds = time.perf_counter() - started
    print(f"wrote {args['n_interactions']:,} interactions to {out} in {seconds:.1f}s")


if __name__ == "__main__":
    main()
