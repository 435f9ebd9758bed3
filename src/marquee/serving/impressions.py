"""The durable impression and event log, and its compaction into Parquet for the bandit.

``<log_dir>/impressions.jsonl`` holds one JSON line per page served: what the whole page shares (member,
history, context, candidates, policy, variant) once, and under ``impressions`` one entry per title shown
(its impression id, row, score, artwork, arms, the feature index each arm shows, propensity).
:func:`read_impressions` flattens pages into one record per impression (lines of the older layout, one per
impression, read as they are). ``<log_dir>/events.jsonl`` holds one line per member action (``POST
/events``). Every append is written, flushed and fsynced before the service answers, so whatever a client
was told is on disk even if the process is killed right after; concurrent requests share one fsync (group
commit: the first waiter syncs everything written so far, the others wait for it). A line cut short by a
crash (never acknowledged) is cut off when the log is reopened.

:func:`compact` joins the two into ``joined.parquet`` (every column) and ``artwork_log.parquet``, the
impression-log format ``python -m marquee.bandit source=artwork_log`` reads (docs/impression_log.md).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

IMPRESSIONS, EVENTS = "impressions.jsonl", "events.jsonl"
REWARDING = ("play",)  # events that count as reward 1 in the bandit log


def new_id() -> str:
    return uuid.uuid4().hex


def _repair(path: Path) -> None:
    """Cut a last line a crash left without its newline (it was never acknowledged)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines log, skipping a torn last line."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):
                yield json.loads(line)


def read_impressions(path: Path) -> Iterator[dict[str, Any]]:
    """One record per impression: each page's shared fields with each of its titles' own; ``arm_feature_ids`` the
    feature each artwork shows, and ``arm_features`` the same as one-hot rows of ``n_arm_features`` (both empty
    for a title without features)."""
    for line in read_lines(path):
        titles = line.pop("impressions", None)
        if titles is None:  # the older layout: already one line per impression
            yield line
            continue
        n = line.get("n_arm_features", 0)
        for title in titles:
            ids = title.get("arm_features", [])
            yield {**line, **title, "arm_feature_ids": ids,
                   "arm_features": [[float(j == i) for j in range(n)] for i in ids]}


class ImpressionLog:
    """Append-only impressions and events under ``log_dir``; knows every impression id it holds."""

    def __init__(self, log_dir: str | Path):
        self.dir = Path(log_dir).expanduser().resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.synced = threading.Condition()  # group commit: who syncs, and how far the files are durable
        self.written = self.durable = 0  # appends written to the files, and how many of them are fsynced
        self.syncing = False
        self.files = {}
        for name in (IMPRESSIONS, EVENTS):
            _repair(self.dir / name)
            self.files[name] = open(self.dir / name, "a", encoding="utf-8")  # noqa: SIM115 - open for the log's life
        self._fsync_dir()
        self.known = {r["impression_id"] for r in read_impressions(self.dir / IMPRESSIONS)}

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _append(self, name: str, records: list[dict[str, Any]]) -> int:
        """Write ``records`` (under ``self.lock``); returns the append's number for :meth:`_wait_durable`."""
        self.files[name].write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        self.written += 1
        return self.written

    def _wait_durable(self, number: int) -> None:
        """Return once append ``number`` is fsynced: sync everything written so far, or wait for whoever does."""
        with self.synced:
            while self.durable < number:
                if self.syncing:
                    self.synced.wait()
                    continue
                self.syncing = True
                self.synced.release()
                try:
                    with self.lock:
                        upto = self.written
                        for f in self.files.values():
                            f.flush()
                    for f in self.files.values():
                        os.fsync(f.fileno())
                finally:
                    self.synced.acquire()
                    self.syncing = False
                self.durable = max(self.durable, upto)
                self.synced.notify_all()

    def page(self, record: dict[str, Any]) -> None:
        """Append one page (its titles under ``impressions``), durably, before the service answers."""
        with self.lock:
            number = self._append(IMPRESSIONS, [record])
            self.known.update(t["impression_id"] for t in record["impressions"])
        self._wait_durable(number)

    def event(self, record: dict[str, Any]) -> None:
        """Append a member's event; KeyError when its impression id was never logged here."""
        with self.lock:
            if record["impression_id"] not in self.known:
                raise KeyError(record["impression_id"])
            number = self._append(EVENTS, [record])
        self._wait_durable(number)

    def keep_policy(self, policy_id: str, policy: dict[str, Any]) -> Path:
        """Keep the artwork policy the impressions name by ``policy_id`` as ``policies/<policy_id>.json``, once."""
        path = self.dir / "policies" / f"{policy_id}.json"
        with self.lock:
            if not path.is_file():
                path.parent.mkdir(exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(json.dumps(policy))
                os.replace(tmp, path)
        return path

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def compact(log_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Join ``log_dir``'s impressions with their events; write ``joined.parquet`` and ``artwork_log.parquet``.

    The joined file has every impression field plus ``events`` (JSON list), ``played`` and ``last_value``.
    The artwork log numbers impressions 1.. in log order (``impression_id`` there is int64; the service's
    id stays in ``joined.parquet``), ``user_id``/``title_id`` are the bundle's internal ids (0: a request
    without a known member), and ``reward`` is 1 when a ``play`` event followed. Reads marquee.bandits
    (and so torch) only here, never in the service.
    """
    import pandas as pd

    from marquee.bandits import write_artwork_log

    log_dir = Path(log_dir).expanduser().resolve()
    out = Path(out_dir).expanduser().resolve() if out_dir else log_dir
    out.mkdir(parents=True, exist_ok=True)
    impressions = pd.DataFrame(list(read_impressions(log_dir / IMPRESSIONS)))
    if impressions.empty:
        raise ValueError(f"'{log_dir / IMPRESSIONS}' holds no impressions to compact")
    events: dict[str, list[dict[str, Any]]] = {}
    for event in read_lines(log_dir / EVENTS):
        events.setdefault(event["impression_id"], []).append(event)
    own = [events.get(i, []) for i in impressions["impression_id"]]
    joined = impressions.assign(
        events=[json.dumps(e) for e in own], played=[any(e["event"] in REWARDING for e in es) for es in own],
        last_value=[es[-1].get("value") if es else None for es in own])
    one_hot = [[[float(j == k) for j in range(len(a))] for k in range(len(a))] for a in impressions["arms"]]
    if "arm_features" in impressions:  # older lines lack them: their synthetic variants are one-hot by slot
        one_hot = [f if isinstance(f, list) else o for f, o in zip(impressions["arm_features"], one_hot)]
    for column in ("history", "context", "candidates", "arms", "context_vector", "arm_features",
                   "arm_feature_ids"):  # nested: kept as JSON text
        if column in joined:
            joined[column] = joined[column].map(json.dumps)
    paths = {"joined": out / "joined.parquet", "artwork_log": out / "artwork_log.parquet"}
    tmp = paths["joined"].with_name(f".{paths['joined'].name}.tmp")
    joined.to_parquet(tmp, index=False)
    os.replace(tmp, paths["joined"])
    bandit = pd.DataFrame({
        "timestamp": impressions["time"].astype("int64"),
        "user_id": impressions["user"], "title_id": impressions["item"], "position": impressions["row"],
        "hour": impressions["hour"], "context": impressions["context_vector"], "arms": impressions["arms"],
        "arm_features": one_hot, "chosen": impressions["arm"], "propensity": impressions["propensity"],
        "reward": [float(p) for p in joined["played"]], "policy": impressions["policy"]})
    # a title a policy's layout lacks was shown with synthetic artwork and no features: no policy chose it
    bandit = bandit[[len(f) > 0 for f in one_hot]].reset_index(drop=True)
    if bandit.empty:
        raise ValueError(f"'{log_dir / IMPRESSIONS}': no impression has artwork features for the bandit's log")
    bandit.insert(0, "impression_id", range(1, len(bandit) + 1))
    write_artwork_log(bandit, paths["artwork_log"], context_names=impressions["context_names"].iloc[0])
    return paths
