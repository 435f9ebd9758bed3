"""Saving a fitted model with the config that builds it, and loading it back for re-evaluation or export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from marquee.data.atomic import atomic_path
from marquee.models.base import Recommender

MODEL_FILE = "model.pt"


def save_model(model: Recommender, model_cfg: DictConfig, directory: str | Path,
               data_args: dict[str, Any] | None = None, **extra: Any) -> Path:
    """Write the model's state dict, its config, the data facts it was built with (see
    :mod:`marquee.models.catalog`) and ``extra`` (e.g. the data fingerprint) atomically."""
    path = Path(directory) / MODEL_FILE
    payload = {"state_dict": model.state_dict(), "model_config": OmegaConf.to_container(model_cfg, resolve=True),
               "n_items": model.n_items, "data_args": data_args or {"n_items": model.n_items}, **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Recommender, dict[str, Any]]:
    """Rebuild the model from its saved config and load its weights; returns it with the saved payload."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved model at '{path}' (expected the {MODEL_FILE} a training run writes)")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    data_args = payload.get("data_args") or {"n_items": payload["n_items"]}
    model = instantiate(OmegaConf.create(payload["model_config"]), **data_args)
    model.load_state_dict(payload["state_dict"])
    return model, payload
