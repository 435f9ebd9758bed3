"""What every run records beside its outputs: resolved config, code version, data fingerprint, vocabularies."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import marquee
from marquee.data.atomic import write_json
from marquee.data.log import InteractionLog


def code_version() -> dict[str, Any]:
    """The git commit of marquee's source tree and whether it had uncommitted changes (None outside git)."""
    root = Path(marquee.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"marquee": marquee.__version__, "git_commit": commit, "git_dirty": dirty}


def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import numpy
    import pandas
    import pytorch_lightning
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "platform": platform.platform(),
    }


def write_run_record(output_dir: str | Path, cfg: DictConfig, log: InteractionLog, **extra: Any) -> Path:
    """Write ``run.json`` (config, code, data fingerprint, versions) and the vocabularies into ``output_dir``."""
    output_dir = Path(output_dir)
    log.save_vocabularies(output_dir / "vocab")
    record = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "code": code_version(),
        "versions": library_versions(),
        "command": sys.argv,
        "data": {"name": log.name, "fingerprint": log.fingerprint, "users": log.n_users, "items": log.n_items,
                 "interactions": len(log)},
        **extra,
    }
    return write_json(record, output_dir / "run.json")
