"""Read a loader's interaction file into a DuckDB table, out of core, checked as the pandas loaders check it.

Each field of a :class:`~marquee.data.scan.RawScan` is converted in SQL by the rules of
:mod:`marquee.data.parsing` (an integer may be written ``1.0``, a number must be finite, ...) and
flagged where it breaks them; the first flagged row stops the read with the pandas path's own
error, naming file, line and column (fields in the loader's order, a missing value before a bad
one, as :func:`~marquee.data.parsing.to_number` checks them). DuckDB keeps the file's row order
when it fills a table, so a row's ``rowid`` is its data row: line = rowid + ``scan.line_offset``.
DuckDB skips blank lines, which pandas reads as rows of missing values; the first blank line is
found by a streamed byte scan and counts as a missing value in every field.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from marquee.data.errors import DataError, where
from marquee.data.parsing import fewer_fields, raise_on_surplus_fields, read_header
from marquee.data.raw import REQUIRED_COLUMNS
from marquee.data.scan import RawScan, ScanColumn

RAW = "raw"  # the table ingest() fills: one column per field, then a _bad_<field> flag per checked field
MISSING, BAD, OUTSIDE, INFINITE = 1, 2, 3, 4  # flag values; 0 is a good field
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
            "FLOAT", "DOUBLE")
_CHUNK = 1 << 26  # bytes read at a time when looking for a blank line


def connect(database: Path, memory_limit: str, temp_directory: Path, threads: int | None = None):
    """A DuckDB connection on ``database`` that spills to ``temp_directory`` beyond ``memory_limit`` (e.g. ``2GB``)."""
    con = duckdb.connect(str(database))
    con.execute(f"SET memory_limit = {lit(memory_limit)}")
    con.execute(f"SET temp_directory = {lit(str(temp_directory))}")
    con.execute("SET preserve_insertion_order = true")  # a table filled from a file keeps its rows in file order
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def lit(value: object) -> str:
    """A SQL literal: strings quoted, numbers as written."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def source_sql(scan: RawScan) -> str:
    """The table function that reads ``scan``'s file: every CSV field as text, Parquet columns as typed."""
    path = lit(str(scan.path))
    if scan.format == "parquet":
        return f"read_parquet({path})"
    names = scan.names if not scan.header else tuple(read_header(scan.path, scan.sep).columns)
    columns = "{" + ", ".join(f"{lit(str(n))}: 'VARCHAR'" for n in names) + "}"
    quote = lit('"' if scan.quote else "")
    return (f"read_csv({path}, delim={lit(scan.sep)}, header={str(scan.header).lower()}, columns={columns}, "
            f"quote={quote}, escape={quote}, auto_detect=false, null_padding=true, skip=0)")


def ingest(con, scan: RawScan) -> None:
    """Fill table ``raw`` with ``scan``'s rows in file order, one typed column per field; raise at the first bad one."""
    source = source_sql(scan)
    types = {name: kind for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    columns, flagged = [], []
    for field, spec in scan.fields.items():
        if not isinstance(spec, ScanColumn):
            columns.append(f"{lit(spec)} AS {field}")
            continue
        value, flag = _convert(spec, field, types[spec.column])
        columns.append(f"{value} AS {field}")
        if flag:
            columns.append(f"{flag} AS _bad_{field}")
            flagged.append(field)
    try:
        con.execute(f"CREATE TABLE {RAW} AS SELECT {', '.join(columns)} FROM {source}")
    except duckdb.Error as err:
        raise _read_error(scan, err) from err
    if scan.format == "csv" and not con.execute(f"SELECT count(*) FROM {RAW}").fetchall()[0][0]:
        empty = scan.path.stat().st_size == 0 or not scan.header
        raise DataError(f"{where(scan.path)}: {'the file is empty' if empty else 'the file has no data rows'}")
    _check(con, scan, types, source, flagged)


def _convert(spec: ScanColumn, field: str, file_type: str) -> tuple[str, str | None]:
    """SQL for the field's value and for its flag (None: nothing to check), by the rules of ``spec.kind``."""
    x = ident(spec.column)
    if spec.kind == "native":
        if field == "value" and file_type in _NUMERIC:
            return x, f"CASE WHEN {x} IS NULL THEN {MISSING} WHEN NOT isfinite({x}) THEN {INFINITE} ELSE 0 END"
        required = field in REQUIRED_COLUMNS and field != "event"
        return x, f"CAST({x} IS NULL AS TINYINT)" if required else None
    if spec.kind in ("text", "nullable_text"):
        return f"CAST({x} AS VARCHAR)", f"CAST({x} IS NULL AS TINYINT)" if spec.kind == "text" else None
    number = f"TRY_CAST({x} AS DOUBLE)"
    ok = f"coalesce(isfinite({number}), false)"
    if file_type == "VARCHAR":
        ok += f" AND NOT contains({x}, '_')"  # DuckDB reads 1_000 as a number, pandas does not
    if spec.kind == "int":
        ok += f" AND {number} = floor({number})"
        value = f"CASE WHEN {ok} THEN coalesce(TRY_CAST({x} AS BIGINT), TRY_CAST({number} AS BIGINT)) END"
        if spec.divisor != 1:
            value = floor_div(value, spec.divisor)
    elif spec.kind == "seconds":
        value = f"CASE WHEN {ok} THEN CAST(floor({number}) AS BIGINT) END"
    else:
        value = f"CASE WHEN {ok} THEN {number} END"
    outside = ""
    if spec.bounds is not None:
        outside = f" WHEN {value} NOT BETWEEN {spec.bounds[0]} AND {spec.bounds[1]} THEN {OUTSIDE}"
    return value, f"CASE WHEN {x} IS NULL THEN {MISSING} WHEN NOT ({ok}) THEN {BAD}{outside} ELSE 0 END"


def floor_div(value: str, divisor: int) -> str:
    """SQL for integer division rounding down, as numpy's ``//`` (DuckDB's ``//`` rounds towards zero)."""
    return f"((({value}) - {floor_mod(value, divisor)}) // {int(divisor)})"


def floor_mod(value: str, modulus: int) -> str:
    """SQL for the remainder of :func:`floor_div`, in ``0..modulus - 1`` as numpy's ``%``."""
    return f"(((({value}) % {int(modulus)}) + {int(modulus)}) % {int(modulus)})"


def _check(con, scan: RawScan, types: dict[str, str], source: str, flagged: list[str]) -> None:
    """Raise the error the pandas path raises first, if any row was flagged or a blank line exists."""
    firsts = _first_flagged(con, flagged)
    blank = _first_blank_line(scan.path) if scan.format == "csv" else None
    if blank is not None:  # a blank line is a missing value in every field read from the file
        blank -= scan.line_offset
        for field in flagged:
            first = firsts[(field, MISSING)]
            firsts[(field, MISSING)] = blank if first is None else min(first, blank)
    line = scan.line_offset

    def at(row: int, column: str) -> str:
        return where(scan.path, row + line, column)

    if scan.names:  # headerless: a short line, unless a blank line comes first, is named before any field
        last = next((f for f, s in scan.fields.items() if isinstance(s, ScanColumn) and s.column == scan.names[-1]),
                    None)
        short = firsts.get((last, MISSING))
        if short is not None and short != blank:
            fields = con.execute(f"SELECT * FROM {source} LIMIT 1 OFFSET {short}").fetchall()[0]
            fewer_fields(pd.Series(fields, index=list(scan.names)), scan.path, scan.sep, short + line)
    loader = [(f, s) for f, s in scan.fields.items() if isinstance(s, ScanColumn) and s.kind != "native"]
    for field, spec in loader:
        if firsts.get((field, MISSING)) is not None:
            raise DataError(f"{at(firsts[(field, MISSING)], spec.column)}: missing value")
        if firsts.get((field, BAD)) is not None:
            row = firsts[(field, BAD)]
            text = con.execute(f"SELECT {ident(spec.column)} FROM {source} LIMIT 1 OFFSET {row}").fetchall()[0][0]
            kind = "an integer" if spec.kind == "int" else "a number"
            raise DataError(f"{at(row, spec.column)}: {text!r} is not {kind}" + (f"; {spec.hint}" if spec.hint else ""))
        if firsts.get((field, OUTSIDE)) is not None:
            row = firsts[(field, OUTSIDE)]
            value = con.execute(f"SELECT {field} FROM {RAW} WHERE rowid = {row}").fetchall()[0][0]
            lo, hi = spec.bounds
            raise DataError(f"{at(row, spec.column)}: {value} is outside {lo}..{hi} for {field}")
    # what build_log checks of every loader's output: no missing ids, times or values; numbers; finite values
    for field in (c for c in REQUIRED_COLUMNS if c != "event"):
        if firsts.get((field, MISSING)) is not None:
            raise DataError(f"{at(firsts[(field, MISSING)], field)}: missing value")
    for field in ("timestamp", "value"):
        spec = scan.fields.get(field)
        if isinstance(spec, ScanColumn) and spec.kind == "native" and types[spec.column] not in _NUMERIC:
            raise DataError(f"{where(scan.path, column=field)}: loader produced {types[spec.column]}, expected numbers")
    if firsts.get(("value", INFINITE)) is not None:
        raise DataError(f"{at(firsts[('value', INFINITE)], 'value')}: not a finite number")


def _first_flagged(con, flagged: list[str]) -> dict[tuple[str, int], int | None]:
    """(field, flag) -> the first row with that flag (None: no row), in one pass over the table."""
    keys = [(f, c) for f in flagged for c in (MISSING, BAD, OUTSIDE, INFINITE)]
    if not keys:
        return {}
    aggregates = ", ".join(f"min(rowid) FILTER (WHERE _bad_{f} = {c})" for f, c in keys)
    return dict(zip(keys, con.execute(f"SELECT {aggregates} FROM {RAW}").fetchall()[0], strict=True))


def _first_blank_line(path: Path) -> int | None:
    """The number of the first empty line of ``path`` (None: there is none), found by a streamed byte scan."""
    with open(path, "rb") as f:
        if f.read(1) in (b"\n", b"\r"):
            return 1
        f.seek(0)
        seen, carry = 0, b""  # seen: newlines before carry, the last bytes of the previous chunk
        while chunk := f.read(_CHUNK):
            text = carry + chunk
            hits = [i for i in (text.find(b"\n\n"), text.find(b"\n\r\n")) if i >= 0]
            if hits:
                return seen + text[: min(hits) + 1].count(b"\n") + 1
            carry = text[-2:]
            seen += text[:-2].count(b"\n")
    return None


def _read_error(scan: RawScan, err: duckdb.Error) -> DataError:
    """DuckDB's reading error as a DataError naming the file (and the line, where pandas would name it)."""
    message = str(err).split("\n")[0].strip()
    if scan.format == "parquet":
        return DataError(f"{where(scan.path)}: not a readable Parquet file ({message})")
    if "unicode" in str(err).lower():
        return DataError(f"{where(scan.path)}: not readable as utf-8 text ({message})")
    if scan.names:
        raise_on_surplus_fields(scan.path, scan.sep, len(scan.names))
    return DataError(f"{where(scan.path)}: cannot be parsed with separator {scan.sep!r}: {message}")
