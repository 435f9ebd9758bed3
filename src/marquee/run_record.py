"""What every run records beside its outputs: status and times, resolved config, code version, data fingerprint."""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import marquee
from marquee.data.atomic import update_json, write_json
from marquee.data.log import InteractionLog
from marquee.rank_zero import is_rank_zero


def code_version() -> dict[str, Any]:
    """The git commit of marquee's source tree and whether it had uncommitted changes (None outside git)."""
    root = Path(marquee.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False)
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


def command() -> list[str]:
    """The command line, its program named without the machine's path (``train.py model=ease``)."""
    return [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else []


def _now() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


class RunRecord:
    """``run.json`` of one run: written when the run starts, completed with its data, closed with its status.

    ``status`` is ``running``, then ``finished``, ``failed`` (with ``error``, the one-line reason,
    and a ``FAILED`` file beside it) or ``interrupted``; ``started`` and ``ended`` are local times
    with their offset. Only rank zero writes.
    """

    def __init__(self, output_dir: str | Path, cfg: DictConfig):
        self.path = Path(output_dir) / "run.json"
        self.cfg = cfg

    def start(self) -> None:
        """Record the config, code, versions and command, with status ``running``."""
        if is_rank_zero():
            write_json({"status": "running", "started": _now(), "config": OmegaConf.to_container(self.cfg, resolve=True),
                        "code": code_version(), "versions": library_versions(), "command": command()}, self.path,
                       sort_keys=False)

    def data(self, log: InteractionLog) -> None:
        """Record the data's name, fingerprint and size, and save its vocabularies beside the record."""
        if is_rank_zero():
            log.save_vocabularies(self.path.parent / "vocab")
            update_json({"data": {"name": log.name, "fingerprint": log.fingerprint, "users": log.n_users,
                                  "items": log.n_items, "interactions": len(log)}}, self.path, sort_keys=False)

    def finish(self) -> None:
        if is_rank_zero():
            update_json({"status": "finished", "ended": _now()}, self.path, sort_keys=False)

    def fail(self, reason: str, status: str = "failed") -> None:
        """Close the record as ``failed`` (``interrupted``, ``pruned``) with its one-line reason; ``FAILED`` if failed."""
        if is_rank_zero():
            update_json({"status": status, "ended": _now(), "error": reason}, self.path, sort_keys=False)
            if status == "failed":
                (self.path.parent / "FAILED").write_text(reason + "\n")


def log_traceback_to_files(error: BaseException) -> None:
    """Write ``error`` with its traceback into the run's log files only (the screen gets at most one line)."""
    logger = logging.getLogger("marquee")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "stopped: %s", (error,),
                               (type(error), error, error.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


@contextmanager
def recorded_run(output_dir: str | Path, cfg: DictConfig, describe: Callable[[BaseException], str]
                 ) -> Iterator[RunRecord]:
    """Start ``run.json``; close it ``finished``, or ``failed`` with ``describe(error)`` and the traceback logged."""
    record = RunRecord(output_dir, cfg)
    record.start()
    try:
        yield record
    except KeyboardInterrupt as error:
        record.fail("interrupted by the user", status="interrupted")
        log_traceback_to_files(error)
        raise
    except Exception as error:
        record.fail(describe(error), status=getattr(error, "run_status", "failed"))  # a pruned trial: "pruned"
        log_traceback_to_files(error)
        raise
    record.finish()
