"""From a Hydra ``data`` config to an InteractionLog and its Split."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig

from marquee.data.build import build_log
from marquee.data.log import InteractionLog
from marquee.data.splits import Split

log = logging.getLogger(__name__)


def load_log(data_cfg: DictConfig) -> InteractionLog:
    """Instantiate the configured loader, then validate, filter and encode what it reads.

    ``data_cfg.timezone`` (an IANA name, null: UTC) is the clock of timestamps that carry no offset
    of their own; hour and weekday are read on it.
    """
    raw = instantiate(data_cfg.source).load()
    events = instantiate(data_cfg.events) if data_cfg.get("events") else None
    filters = instantiate(data_cfg.filters) if data_cfg.get("filters") else None
    interaction_log = build_log(raw, events, filters, timezone=data_cfg.get("timezone"))
    log.info("%s: %d users, %d items, %d interactions", interaction_log.name, interaction_log.n_users,
             interaction_log.n_items, len(interaction_log))
    return interaction_log


def prepare_split(data_cfg: DictConfig) -> Split:
    """Load the configured data set and split it with the configured strategy."""
    return instantiate(data_cfg.split)(load_log(data_cfg))
