"""Shared fixtures: where the real benchmark data lives, and a data directory for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# the models under test are small: one thread avoids OpenMP spinning against other work on a shared machine
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CONFIG_DIR = REPO_ROOT / "configs"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets in ../shared/data; tests that need them skip where it is absent."""
    if not (SHARED_DATA / "ml-100k" / "ml-100k.inter").is_file():
        pytest.skip(f"real data not found under {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _data_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point MARQUEE_DATA_DIR at ../shared/data when it exists (no test downloads anything) and caches at a temp dir."""
    if SHARED_DATA.is_dir() and "MARQUEE_DATA_DIR" not in os.environ:
        monkeypatch.setenv("MARQUEE_DATA_DIR", str(SHARED_DATA))
    monkeypatch.setenv("MARQUEE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
