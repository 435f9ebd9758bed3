"""From a Hydra ``data`` config to an InteractionLog and its Split, in memory (pandas) or out of core (DuckDB)."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from marquee.data.build import build_log
from marquee.data.context import resolve_timezone
from marquee.data.events import EventSchema
from marquee.data.filters import Filters
from marquee.data.log import InteractionLog
from marquee.data.scan import RawScan
from marquee.data.splits import Split
from marquee.errors import ConfigError

log = logging.getLogger(__name__)

ENGINES = ("pandas", "duckdb", "auto")


def load_log(data_cfg: DictConfig) -> InteractionLog:
    """Instantiate the configured loader, then validate, filter and encode what it reads.

    ``data_cfg.timezone`` (an IANA name, null: UTC) is the clock of timestamps that carry no offset
    of their own; hour and weekday are read on it. ``data_cfg.engine`` picks the engine (:func:`out_of_core`).
    """
    return _prepare(data_cfg, None)


def prepare_split(data_cfg: DictConfig) -> Split:
    """Load the configured data set and split it with the configured strategy."""
    return _prepare(data_cfg, instantiate(data_cfg.split))


def _prepare(data_cfg: DictConfig, split: Any) -> InteractionLog | Split:
    source = instantiate(data_cfg.source)
    events = instantiate(data_cfg.events) if data_cfg.get("events") else EventSchema()
    filters = instantiate(data_cfg.filters) if data_cfg.get("filters") else Filters()
    scan = out_of_core(data_cfg, source)
    if scan is not None:
        from marquee.data.duckdb_prep import prepare

        resolved = OmegaConf.to_container(data_cfg, resolve=True)
        config = {k: v for k, v in resolved.items() if k not in ("engine", "duckdb")}  # what the data is, not how
        result = prepare(scan, events, filters, split, resolve_timezone(data_cfg.get("timezone")),
                         duckdb_settings(data_cfg), config)
        interaction_log = result if split is None else result.log
    else:
        interaction_log = build_log(source.load(), events, filters, timezone=data_cfg.get("timezone"))
        result = interaction_log if split is None else split(interaction_log)
    log.info("%s: %d users, %d items, %d interactions", interaction_log.name, interaction_log.n_users,
             interaction_log.n_items, len(interaction_log))
    return result


def duckdb_settings(data_cfg: DictConfig):
    """``data.duckdb`` as :class:`~marquee.data.duckdb_prep.DuckDBSettings` (defaults where absent)."""
    from marquee.data.duckdb_prep import DuckDBSettings

    given = OmegaConf.to_container(data_cfg.duckdb, resolve=True) if data_cfg.get("duckdb") else {}
    try:
        return DuckDBSettings(**given)
    except TypeError as err:
        known = list(DuckDBSettings.__dataclass_fields__)
        raise ConfigError("data.duckdb", f"{err}; expected some of {known}") from err


def out_of_core(data_cfg: DictConfig, source: object) -> RawScan | None:
    """The scan to prepare out of core under ``data.engine``, or None for the pandas path.

    ``pandas`` (the default where the key is absent) reads in memory; ``duckdb`` reads out of core and
    stops if it cannot (no ``duckdb`` package, or a loader or option it does not read); ``auto`` uses
    DuckDB when the interaction file is larger than ``data.duckdb.auto_threshold_mb`` and it can.
    """
    engine = data_cfg.get("engine") or "pandas"
    if engine not in ENGINES:
        raise ConfigError("data.engine", f"expected one of {list(ENGINES)}, got {engine!r}")
    if engine == "pandas":
        return None
    scan, why = None, None
    if importlib.util.find_spec("duckdb") is None:
        why = "the duckdb package is not installed (pip install 'marquee[scale]')"
    elif not hasattr(source, "scan"):
        why = f"{type(source).__name__} has no out-of-core reader"
    else:
        try:
            scan = source.scan()
        except NotImplementedError as err:
            why = str(err)
    if why:
        if engine == "duckdb":
            raise ConfigError("data.engine", f"duckdb cannot prepare this data: {why}; use data.engine=pandas")
        log.info("data.engine=auto: reading in memory (pandas): %s", why)
        return None
    threshold = duckdb_settings(data_cfg).auto_threshold_mb
    if engine == "auto" and scan.size_bytes < threshold * 2**20:
        return None
    return scan
