"""A memory preflight for models whose memory grows with the square of the catalog (EASE, dense ItemKNN).

Without it such a model on a large catalog fills the machine and is killed by the operating system
with no message. Before allocating, the model states what it needs; where that exceeds what is
available, :func:`check_memory` stops with a message that names the need, what the machine has and
what to use instead. ``MARQUEE_MEMORY_LIMIT`` (e.g. ``8GB``) states a limit below the machine's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

LIMIT_ENV = "MARQUEE_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class InsufficientMemory(MemoryError):
    """A model would need more memory than is available; the message says how much and what to do instead."""


def parse_bytes(text: str) -> int:
    """``'512MB'``, ``'8 GB'``, ``'1.5G'`` or a plain number of bytes -> bytes (binary units)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)B?\s*", str(text).upper())
    if not match:
        raise ValueError(f"{LIMIT_ENV}={text!r}: expected a size such as 8GB, 512MB or a number of bytes")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _cgroup_room() -> int | None:
    """Bytes the cgroup (v2) still allows this process, where a limit is set."""
    limit, usage = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        text = limit.read_text().strip()
        return None if text == "max" else int(text) - int(usage.read_text())
    except (OSError, ValueError):
        return None


def available_bytes() -> int:
    """Memory this process may still allocate: ``MARQUEE_MEMORY_LIMIT`` if set, else the machine's available
    memory (``MemAvailable``), lowered to the container's limit where one is set."""
    if os.environ.get(LIMIT_ENV):
        return parse_bytes(os.environ[LIMIT_ENV])
    candidates = []
    try:
        meminfo = Path("/proc/meminfo").read_text()
        candidates.append(int(re.search(r"MemAvailable:\s+(\d+) kB", meminfo).group(1)) * 1024)
    except (OSError, AttributeError):
        candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    room = _cgroup_room()
    if room is not None:
        candidates.append(room)
    return min(candidates)


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def check_memory(what: str, need: int, detail: str, instead: str) -> None:
    """Stop before allocating when ``what`` needs more than is available.

    ``need`` is the peak in bytes, ``detail`` says what makes it up, ``instead`` what to use instead.
    """
    have = available_bytes()
    if need > have:
        source = f"the limit {LIMIT_ENV}" if os.environ.get(LIMIT_ENV) else "this machine"
        raise InsufficientMemory(f"{what} needs about {gib(need)} ({detail}), but {source} has {gib(have)} "
                                 f"available. Instead: {instead}")
