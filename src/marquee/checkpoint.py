"""Saving any fitted system (one model or composed stages) with what rebuilds it, and loading it back.

``model.pt`` holds the Catalog, each stage's model config, the config that composes the stages
(none for a single model), the system's state dict and the data fingerprint; artifacts that a
state dict cannot hold (an ANN index) lie in ``artifacts/`` beside it. Loading needs nothing else:
``marquee.eval``, export and the tests read a single model and a cascade alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from marquee.data.atomic import atomic_path
from marquee.data.catalog import Catalog
from marquee.models.base import Recommender

MODEL_FILE = "model.pt"
ARTIFACTS = "artifacts"
FORMAT = 2  # 1: a single model with the data facts of its constructor (before the Catalog)


def _plain(cfg: DictConfig | dict | None) -> dict | None:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def build(cfg: DictConfig | dict, **objects: Any) -> Any:
    """Instantiate ``cfg`` with live ``objects`` (a Catalog, models) as keyword arguments, passed as they are.

    Hydra's ``instantiate(cfg, **kwargs)`` would turn a dataclass into a config and copy modules; a partial does not.
    """
    return instantiate(OmegaConf.create(_plain(cfg)), _partial_=True)(**objects)


def compose_system(models: dict[str, Recommender], system_cfg: DictConfig | dict | None) -> Recommender:
    """The one Recommender the stages make: the only stage's model, or ``system_cfg`` built around the models."""
    if not system_cfg:
        if len(models) != 1:
            raise ValueError(f"pipeline.system is null, so the pipeline must have one stage; it has {list(models)}")
        return next(iter(models.values()))
    return build(system_cfg, **models)


def save_system(system: Recommender, model_cfgs: dict[str, DictConfig | dict], system_cfg: DictConfig | dict | None,
                catalog: Catalog, directory: str | Path, **extra: Any) -> Path:
    """Write ``directory/model.pt`` (and ``directory/artifacts/``) atomically; ``extra`` joins the payload."""
    directory = Path(directory)
    system.save_artifacts(directory / ARTIFACTS)
    payload = {"format": FORMAT, "catalog": catalog.state(),
               "stages": {name: _plain(cfg) for name, cfg in model_cfgs.items()}, "system": _plain(system_cfg),
               "state_dict": system.state_dict(), **extra}
    path = directory / MODEL_FILE
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_system(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Recommender, dict[str, Any]]:
    """Rebuild every stage's model from its config and the saved Catalog, compose them, load weights and artifacts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved model at '{path}' (expected the {MODEL_FILE} a training run writes)")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if payload.get("format") != FORMAT:
        raise ValueError(f"'{path}' was saved by an older marquee (format {payload.get('format', 1)}, this one reads "
                         f"{FORMAT}); train the run again")
    catalog = Catalog.from_state(payload["catalog"])
    models = {name: build(cfg, catalog=catalog) for name, cfg in payload["stages"].items()}
    system = compose_system(models, payload["system"])
    system.load_state_dict(payload["state_dict"])
    system.load_artifacts(path.parent / ARTIFACTS)
    return system, payload
