"""Data preparation out of core: a loader's file, through DuckDB, to Parquet under the cache dir, to the same Split.

Runs in DuckDB under ``data.duckdb.memory_limit``, spilling to ``data.duckdb.temp_directory``: read and
check the file (:mod:`~marquee.data.duckdb_read`), drop identical rows, map event types and check values,
order events exactly as :func:`~marquee.data.log.event_order` does, apply the filters (value, repeated
pairs, k-core), build the vocabularies (sorted raw ids), derive local hour and weekday, and assign the
split's parts (:mod:`~marquee.data.duckdb_splits`). The tie-break hash is pandas' own
(``hash_pandas_object`` of the raw (user, item) pair; for string ids a keyed SipHash, which SQL cannot
compute): a vectorised Python UDF computes it on DuckDB's batches of ids, as does ``zone_offsets`` for a
configured time zone. The encoded log (``log.parquet``, in
the log's order, with a ``part`` column) and the vocabularies are written under
``data.duckdb.cache_dir``, in a folder named by a hash of the data config and the file's size and
modification time, and reused while both stay the same.

Still in memory: the InteractionLog and the Split handed on are pandas frames read from that Parquet
(about 24 bytes per event for the log, plus the split's parts, which pandas copies), and so is every
later step (catalog, windows and sequences, training, evaluation). Item and user metadata are read
by the loaders, as on the pandas path. A split other than the four built-in ones runs in pandas on
the log read back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from marquee.data.atomic import write_json
from marquee.data.build import EPOCH_WEEKDAY, align_meta, zone_offsets
from marquee.data.duckdb_read import RAW, connect, floor_div, floor_mod, ident, ingest, lit
from marquee.data.duckdb_splits import STRATEGY, SUPPORTED, parts_sql, to_split
from marquee.data.errors import DataError, where
from marquee.data.events import EventSchema
from marquee.data.filters import Filters, report
from marquee.data.log import ORDER_KEYS, InteractionLog
from marquee.data.scan import RawScan
from marquee.data.splits import Split
from marquee.data.vocab import Vocabulary

log = logging.getLogger(__name__)

PREP_VERSION = 1  # bump when the same input would be prepared differently, so cached folders go stale
MANIFEST = "_SUCCESS.json"
LOG_COLUMNS = ("user_id", "item_id", "timestamp", "event", "value", "hour", "dow", "device")  # build_log's order


@dataclass(frozen=True)
class DuckDBSettings:
    """``data.duckdb``: DuckDB's memory before it spills to disk, its threads, and where prepared logs are kept.

    ``temp_directory`` None: a folder beside the prepared files; ``cache_dir`` None: the system's temporary
    folder; ``threads`` None: DuckDB's default (one per core); ``auto_threshold_mb``: the size of the
    interaction file above which ``data.engine=auto`` picks DuckDB.
    """

    memory_limit: str = "2GB"
    temp_directory: str | None = None
    threads: int | None = None
    cache_dir: str | None = None
    auto_threshold_mb: float = 1024.0


def prepare(scan: RawScan, events: EventSchema, filters: Filters, split: Any, timezone: tzinfo | None,
            settings: DuckDBSettings, config: dict) -> Split | InteractionLog:
    """The Split of ``scan``'s log by ``split`` (None: the InteractionLog), prepared out of core or read from cache.

    ``config`` is the resolved data config: with the file's size and modification time it names the cache folder.
    """
    in_sql = split is not None and type(split) in SUPPORTED
    stat = scan.path.stat()
    key = {"version": PREP_VERSION, "data": config, "split": in_sql,
           "file": [str(scan.path.resolve()), stat.st_size, stat.st_mtime_ns]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    root = Path(settings.cache_dir) if settings.cache_dir else Path(tempfile.gettempdir()) / "marquee-prepared"
    folder = root / f"{scan.name}-{digest}"
    if (folder / MANIFEST).is_file():
        log.info("%s: prepared log read from %s", scan.name, folder)
    else:
        _prepare_folder(scan, events, filters, split if in_sql else None, timezone, settings, folder, key)
    manifest = json.loads((folder / MANIFEST).read_text())
    interaction_log, part = read_prepared(folder, manifest, scan, events)
    if split is None:
        return interaction_log
    return to_split(interaction_log, part, manifest["strategy"]) if in_sql else split(interaction_log)


def _prepare_folder(scan: RawScan, events: EventSchema, filters: Filters, split: Any, timezone: tzinfo | None,
                    settings: DuckDBSettings, folder: Path, key: dict) -> None:
    """Prepare into a work folder beside ``folder`` and rename it onto ``folder``: never half-written."""
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=_mkdir(folder.parent)))
    try:
        spill = Path(settings.temp_directory) if settings.temp_directory else work / "spill"
        con = connect(work / "prep.duckdb", settings.memory_limit, _mkdir(spill), settings.threads)
        try:
            started = time.perf_counter()
            out = _mkdir(work / "out")
            manifest = _build(con, scan, events, filters, split, timezone, out)
            seconds = round(time.perf_counter() - started, 2)
            write_json({**manifest, "key": key, "seconds": seconds}, out / MANIFEST)
        finally:
            con.close()
        if folder.is_dir() and not (folder / MANIFEST).is_file():
            shutil.rmtree(folder)  # left without its manifest: not to be trusted
        try:
            os.replace(out, folder)
        except OSError:  # another process prepared the same folder meanwhile: keep theirs
            if not (folder / MANIFEST).is_file():
                raise
        log.info("%s: prepared out of core in %.1f s into %s", scan.name, seconds, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _build(con, scan: RawScan, events: EventSchema, filters: Filters, split: Any, timezone: tzinfo | None,
           out: Path) -> dict:
    """Every step from the file to ``out/log.parquet`` and the vocabularies; returns the manifest's facts."""
    ingest(con, scan)
    fields = [*scan.fields, *(["timestamp"] if scan.ordinal_time else [])]
    _register_udfs(con, timezone)
    _events(con, scan, events, fields)
    kept = _filters(con, scan, filters)
    for kind in ("user", "item"):  # ids 1..n in the sorted order of the raw ids, as Vocabulary.fit
        con.execute(f"CREATE TABLE {kind}s AS SELECT raw_id, CAST(row_number() OVER (ORDER BY raw_id) AS INTEGER) "
                    f"AS id FROM (SELECT DISTINCT {kind}_id AS raw_id FROM {kept})")
        con.execute(f"COPY (SELECT raw_id, id FROM {kind}s ORDER BY id) TO {lit(str(out / f'{kind}s.parquet'))} "
                    "(FORMAT parquet)")
    devices = [d for (d,) in con.execute(f"SELECT DISTINCT device FROM {kept} ORDER BY device").fetchall()] \
        if "device" in fields else []
    con.execute(f"CREATE VIEW encoded AS {_encoded_sql(kept, fields, devices, scan.ordinal_time, timezone)}")
    n_users, n_items = (con.execute(f"SELECT count(*) FROM {k}s").fetchall()[0][0] for k in ("user", "item"))
    parts = "SELECT * FROM encoded"
    if split is not None:
        positive = [code for code, kind in enumerate(events.kinds.values()) if kind.positive]
        parts = parts_sql(con, split, scan.name, scan.ordinal_time, positive, n_users, n_items)
    present = _columns(con, "encoded")
    columns = [c for c in LOG_COLUMNS if c in present] + (["part"] if split is not None else [])
    con.execute(f"COPY (SELECT {', '.join(columns)} FROM ({parts}) ORDER BY _ord) TO {lit(str(out / 'log.parquet'))} "
                "(FORMAT parquet, COMPRESSION zstd)")
    rows = con.execute(f"SELECT count(*) FROM {kept}").fetchall()[0][0]
    return {"rows": rows, "n_users": n_users, "n_items": n_items, "devices": devices,
            "strategy": STRATEGY[type(split)] if split is not None else None}


def _register_udfs(con, timezone: tzinfo | None) -> None:
    """``marquee_tie(user, item)``: pandas' hash of the raw pair; ``marquee_offset(ts)``: seconds east of UTC."""
    types = {name: kind for name, kind, *_ in con.execute(f"DESCRIBE {RAW}").fetchall()}

    def tie(users: pa.Array, items: pa.Array) -> pa.Array:
        pair = pd.DataFrame({"user_id": users.to_pandas(), "item_id": items.to_pandas()})
        return pa.array(pd.util.hash_pandas_object(pair, index=False).to_numpy(), pa.uint64())

    con.create_function("marquee_tie", tie, [types["user_id"], types["item_id"]], "UBIGINT", type="arrow")
    if timezone is not None:
        con.create_function("marquee_offset", lambda ts: pa.array(zone_offsets(ts.to_numpy(), timezone), pa.int64()),
                            ["BIGINT"], "BIGINT", type="arrow")


def _events(con, scan: RawScan, events: EventSchema, fields: list[str]) -> None:
    """Table ``ordered``: distinct rows with known events (as codes), numbered ``_ord`` in the log's order."""
    position = ", CAST(row_number() OVER (PARTITION BY user_id ORDER BY rowid) - 1 AS BIGINT) AS timestamp" \
        if scan.ordinal_time else ""  # ordinal time: the row's place among its user's rows in the file
    columns = ", ".join(ident(f) for f in scan.fields)
    con.execute(f"CREATE VIEW rows AS SELECT rowid AS _row, {columns}{position} FROM {RAW}")
    listed = ", ".join(ident(f) for f in fields)
    con.execute(f"CREATE TABLE firsts AS SELECT min(_row) AS _row FROM rows GROUP BY {listed}")
    total, distinct = (con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("rows", "firsts"))
    if distinct < total:
        log.warning("%s: dropped %d duplicate rows (identical in every column; first copy kept)", scan.path,
                    total - distinct)
    codes = " ".join(f"WHEN {lit(label)} THEN {events.names.index(kind)}" for label, kind in events.lookup.items())
    others = "".join(f", {ident(f)}" for f in fields if f != "event")
    distinct_rows = "rows SEMI JOIN firsts USING (_row)" if distinct < total else "rows"
    con.execute(f"CREATE VIEW typed AS SELECT _row{others}, CAST(event AS VARCHAR) AS label, "
                f"CASE CAST(event AS VARCHAR) {codes} END AS event FROM {distinct_rows}")
    unknown, first = con.execute("SELECT count(*), min(_row) FROM typed WHERE event IS NULL").fetchall()[0]
    if unknown:
        label = con.execute(f"SELECT label FROM typed WHERE _row = {first}").fetchall()[0][0]
        if events.unknown == "error":
            raise events.unknown_error(str(scan.path), first + scan.line_offset, label)
        log.warning("%s: dropped %d rows with events outside %s", scan.path, unknown, sorted(events.lookup))
    _check_values(con, scan, events)
    known = "SELECT * FROM typed WHERE event IS NOT NULL"
    if "device" in fields:
        missing = con.execute(f"SELECT count(*) FROM ({known}) WHERE device IS NULL").fetchall()[0][0]
        if missing:
            log.warning("%s: %d rows without device set to 'unknown'", scan.path, missing)
        known = f"SELECT * REPLACE (coalesce(CAST(device AS VARCHAR), 'unknown') AS device) FROM ({known})"
    rest = [ident(c) for c in sorted(c for c in fields if c not in ORDER_KEYS)]
    keys = ", ".join(["user_id", "timestamp", "marquee_tie(user_id, item_id)", "item_id", "event", "value", *rest,
                      "_row"])  # _row last: numpy's lexsort is stable
    columns = ", ".join(ident(f) for f in fields)
    # a table filled by an ORDER BY keeps that order (preserve_insertion_order), so rowid is the place in the log
    con.execute(f"CREATE TABLE sorted_rows AS SELECT {columns} FROM ({known}) ORDER BY {keys}")
    con.execute("CREATE VIEW ordered AS SELECT rowid AS _ord, * FROM sorted_rows")
    for drop in ("VIEW typed", "TABLE firsts", "VIEW rows", f"TABLE {RAW}"):  # their disk blocks are reused
        con.execute(f"DROP {drop}")


def _check_values(con, scan: RawScan, events: EventSchema) -> None:
    """Raise at the first row whose value lies outside its event type's range, as EventSchema.check_values."""
    cases = []
    for code, kind in enumerate(events.kinds.values()):
        if kind.value is None:
            continue
        outside = [f"value {op} {lit(bound)}" for op, bound in (("<", kind.value.low), (">", kind.value.high))
                   if np.isfinite(bound)]
        if outside:
            cases.append(f"WHEN {code} THEN {' OR '.join(outside)}")
    if not cases:
        return
    bad = con.execute(f"SELECT _row, event, value FROM typed WHERE CASE event {' '.join(cases)} ELSE false END "
                      "ORDER BY _row LIMIT 1").fetchall()
    if bad:
        row, code, value = bad[0]
        raise events.value_error(str(scan.path), row + scan.line_offset, events.names[code], float(value))


def _filters(con, scan: RawScan, filters: Filters) -> str:
    """The relation of events that pass ``filters`` (in ``_ord`` order), logging what each dropped."""
    n0, users0 = con.execute("SELECT count(*), count(DISTINCT user_id) FROM ordered").fetchall()[0]
    current, n = "ordered", n0
    if filters.min_value is not None:
        con.execute(f"CREATE TABLE passed AS SELECT * FROM ordered WHERE value >= {lit(float(filters.min_value))}")
        current, n = "passed", _report_rows(con, "passed", n, f"value < {filters.min_value}", scan.name)
    if filters.dedup != "none" or filters.user_core or filters.item_core:
        con.execute(f"CREATE TABLE kept_keys AS SELECT _ord, user_id, item_id FROM {current}")
        if filters.dedup != "none":  # one row per pair: its first (or last) in the log's order
            direction = "ASC" if filters.dedup == "keep_first" else "DESC"
            con.execute("CREATE OR REPLACE TABLE kept_keys AS SELECT * FROM kept_keys QUALIFY row_number() OVER "
                        f"(PARTITION BY user_id, item_id ORDER BY _ord {direction}) = 1")
            n = _report_rows(con, "kept_keys", n, f"repeated (user, item) pairs ({filters.dedup})", scan.name)
        if filters.user_core or filters.item_core:
            before = n
            core = {"user_id": filters.user_core, "item_id": filters.item_core}
            keep = " AND ".join(f"{c} IN (SELECT {c} FROM kept_keys GROUP BY {c} HAVING count(*) >= {k})"
                                for c, k in core.items())
            while True:  # drop users and items below their core, both counted on the same rows, until none is
                con.execute(f"CREATE OR REPLACE TABLE kept_keys AS SELECT * FROM kept_keys WHERE {keep}")
                after = con.execute("SELECT count(*) FROM kept_keys").fetchall()[0][0]
                if after == n:
                    break
                n = after
            report(before - n, f"k-core (users >= {filters.user_core}, items >= {filters.item_core})",
                            scan.name)
        con.execute(f"CREATE TABLE kept AS SELECT * FROM {current} SEMI JOIN kept_keys USING (_ord)")
        current = "kept"
    if n == 0:
        raise DataError(f"{scan.name}: no interactions left after filters {filters}; loosen them")
    lost = users0 - con.execute(f"SELECT count(DISTINCT user_id) FROM {current}").fetchall()[0][0]
    if lost:
        log.info("%s: %d users lost every interaction to the filters and were dropped", scan.name, lost)
    log.info("%s: filters kept %d of %d interactions", scan.name, n, n0)
    return current


def _report_rows(con, table: str, before: int, why: str, name: str) -> int:
    """Log what a filter dropped from ``before`` rows to ``table``'s; returns the rows left."""
    after = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    report(before - after, why, name)
    return after


def _encoded_sql(kept: str, fields: list[str], devices: list[str], ordinal_time: bool,
                 timezone: tzinfo | None) -> str:
    """SELECT of ``kept`` with ids from the vocabularies, float32 values and the context columns of build_log."""
    columns = ["k._ord", "u.id AS user_id", "i.id AS item_id", "k.timestamp", "CAST(k.event AS TINYINT) AS event",
               "CAST(k.value AS FLOAT) AS value"]
    joins = [f"{kept} k", "JOIN users u ON k.user_id = u.raw_id", "JOIN items i ON k.item_id = i.raw_id"]
    local = "k.timestamp + marquee_offset(k.timestamp)" if timezone is not None else "k.timestamp"
    derive = not ordinal_time and not {"hour", "dow"} <= set(fields)  # as build_log: hour and weekday on local time
    hour = floor_mod(floor_div(local, 3600), 24) if derive else None
    dow = floor_mod(f"{floor_div(local, 86_400)} + {EPOCH_WEEKDAY}", 7) if derive else None
    for name, derived in (("hour", hour), ("dow", dow)):
        if name in fields:
            columns.append(f"CAST(k.{name} AS TINYINT) AS {name}")
        elif derived is not None:
            columns.append(f"CAST({derived} AS TINYINT) AS {name}")
    if devices:
        codes = " ".join(f"WHEN {lit(d)} THEN {code}" for code, d in enumerate(devices))
        columns.append(f"CAST(CASE k.device {codes} END AS INTEGER) AS device")
    return f"SELECT {', '.join(columns)} FROM {' '.join(joins)}"


def _columns(con, relation: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def read_prepared(folder: Path, manifest: dict, scan: RawScan,
                  events: EventSchema) -> tuple[InteractionLog, np.ndarray | None]:
    """The InteractionLog of a prepared folder (its Parquet read through a memory map), and each row's part (an
    index of ``duckdb_splits.PARTS``; None: no split)."""
    table = pq.read_table(folder / "log.parquet", memory_map=True)
    if table.num_rows != manifest["rows"]:
        raise DataError(f"{where(folder / 'log.parquet')}: {table.num_rows} rows, the manifest says "
                        f"{manifest['rows']}; delete the folder to prepare it again")
    part = table.column("part").to_numpy() if "part" in table.column_names else None
    frame = (table.drop_columns(["part"]) if part is not None else table).to_pandas()
    frame["event"] = pd.Categorical.from_codes(frame["event"].to_numpy(), categories=events.names)
    if "device" in frame:
        frame["device"] = pd.Categorical.from_codes(frame["device"].to_numpy(), categories=manifest["devices"])
    users, items = Vocabulary.load(folder / "users.parquet"), Vocabulary.load(folder / "items.parquet")
    item_meta, user_meta = scan.meta()
    interaction_log = InteractionLog(
        name=scan.name, interactions=frame, users=users, items=items, events=events,
        item_meta=align_meta(item_meta, items, "item", scan.name, with_genres=True),
        user_meta=align_meta(user_meta, users, "user", scan.name), ordinal_time=scan.ordinal_time,
    )
    return interaction_log, part
