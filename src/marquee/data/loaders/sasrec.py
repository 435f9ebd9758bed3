"""Loader for the SASRec text layout: one ``user item`` pair per line, each user's lines in time order."""

from __future__ import annotations

from pathlib import Path

from marquee.data.parsing import read_numeric, require_file
from marquee.data.raw import REQUIRED_COLUMNS, RawLog
from marquee.data.scan import RawScan, ScanColumn

_WHAT = "SASRec interactions: '<user id> <item id>' per line, separated by one space"


class SasrecText:
    """A SASRec-preprocessed data set such as ``Video.txt``: no timestamps, so time is the line's order.

    ``timestamp`` is the 0-based position of the line among its user's lines (``ordinal_time``);
    every line is an ``interaction`` event of value 1.
    """

    def __init__(self, path: str | Path, name: str = "video_games"):
        self.path, self.name = Path(path), name

    def load(self) -> RawLog:
        """Read the pairs; ids stay the file's integers."""
        require_file(self.path, _WHAT)
        frame, offset = read_numeric(self.path, " ", ["user_id", "item_id"], integer=("user_id", "item_id"))
        frame["timestamp"] = frame.groupby("user_id", sort=False).cumcount().astype("int64")
        frame = frame.assign(event="interaction", value=1.0)[list(REQUIRED_COLUMNS)]
        return RawLog(self.name, frame, str(self.path), offset, ordinal_time=True)

    def scan(self) -> RawScan:
        """The pairs for the out-of-core engine, each row's time its position among its user's lines."""
        fields = {"user_id": ScanColumn("user_id", "int"), "item_id": ScanColumn("item_id", "int"),
                  "event": "interaction", "value": 1.0}
        return RawScan(self.name, require_file(self.path, _WHAT), fields, sep=" ", header=False,
                       names=("user_id", "item_id"), quote=False, ordinal_time=True)
