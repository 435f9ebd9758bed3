"""Loader for the synthetic streaming log: generate it once per config into a cache folder, then read it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from marquee.data.raw import RawLog
from marquee.data.scan import RawScan, ScanColumn
from marquee.data.synthetic import GENERATOR_VERSION, SyntheticConfig, is_complete, write_synthetic


class SyntheticLog:
    """A synthetic log cached under ``cache_dir`` in a folder named by a hash of its config.

    ``overrides`` are further :class:`~marquee.data.synthetic.SyntheticConfig` fields (Zipf
    exponent, effect strengths, ...). A folder without its completion manifest, or made by another
    generator version, is regenerated rather than trusted.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        n_users: int = 2_000,
        n_items: int = 1_000,
        n_interactions: int = 100_000,
        seed: int = 0,
        progress: bool = False,
        **overrides: Any,
    ):
        self.config = SyntheticConfig(
            n_users=n_users, n_items=n_items, n_interactions=n_interactions, seed=seed, **overrides
        )
        self.cache_dir = Path(cache_dir)
        self.progress = progress

    @property
    def path(self) -> Path:
        """The cache folder of this exact config and generator version."""
        key = json.dumps({"version": GENERATOR_VERSION, **asdict(self.config)}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return self.cache_dir / f"n{self.config.n_interactions}-s{self.config.seed}-{digest}"

    def load(self) -> RawLog:
        """Generate the log unless a complete copy is cached, then read it with its item and user tables."""
        source = self._generated()
        item_meta, user_meta = self._meta()
        # line_offset: Parquet rows count from 0
        return RawLog("synthetic", pd.read_parquet(source), str(source), 0, item_meta, user_meta)

    def scan(self) -> RawScan:
        """The generated interactions for the out-of-core engine, every column as the generator typed it."""
        source = self._generated()
        fields = {name: ScanColumn(name) for name in pq.read_schema(source).names}
        return RawScan("synthetic", source, fields, format="parquet", line_offset=0, meta=self._meta)

    def _generated(self) -> Path:
        if not is_complete(self.path, self.config):
            write_synthetic(self.config, self.path, progress=self.progress)
        return self.path / "interactions.parquet"

    def _meta(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        items = pd.read_parquet(self.path / "items.parquet").set_index("item_id")
        items["genres"] = items["genres"].map(list)  # Parquet lists come back as arrays; the contract wants lists
        return items, pd.read_parquet(self.path / "users.parquet").set_index("user_id")
