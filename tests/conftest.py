"""Shared fixtures: where the real benchmark data lives, and a data directory for every test.

The real data (ml-100k/, obd/, amazon-video-games/) is read from ``$MARQUEE_DATA_DIR`` when set,
else from ``../shared/data`` beside the repository. Every test that needs it asks for the
``shared_data`` fixture (directly or through another fixture), which marks it ``real_data``; where
the data is absent those tests skip, and the run says so in its header and its summary.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

pytest_plugins = ["pytester"]

# the models under test are small: one thread avoids OpenMP spinning against other work on a shared machine
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"
CONFIG_DIR = REPO_ROOT / "configs"
# read once, before any test changes the environment; absolute, as subprocesses run from other folders
SHARED_DATA = Path(os.environ.get("MARQUEE_DATA_DIR") or DEFAULT_DATA).expanduser().resolve()
PROBE = Path("ml-100k") / "ml-100k.inter"  # present in every copy of the benchmark data
HAS_SHARED_DATA = (SHARED_DATA / PROBE).is_file()
HOW_TO_SET = "set MARQUEE_DATA_DIR to the folder that holds ml-100k/, obd/ and amazon-video-games/"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_data: needs the real data sets (given by the shared_data fixture)")


def pytest_report_header(config: pytest.Config) -> str:
    source = "MARQUEE_DATA_DIR" if os.environ.get("MARQUEE_DATA_DIR") else "default; MARQUEE_DATA_DIR overrides"
    if HAS_SHARED_DATA:
        return f"real data: {SHARED_DATA} ({source})"
    return f"real data: NOT FOUND: no {PROBE} under {SHARED_DATA} ({source}); real-data tests will skip; {HOW_TO_SET}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):  # the fixture closure: indirect uses count too
            item.add_marker(pytest.mark.real_data)
        if uses_module_fixture(item):  # pytest-xdist (--dist loadgroup): one worker builds a module's fixtures once
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def uses_module_fixture(item: pytest.Item) -> bool:
    """Whether the test asks, directly or not, for a module-scoped fixture (a trained model or a served bundle)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    return any(d.scope == "module" for chain in defs for d in chain)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if HAS_SHARED_DATA:
        return
    skipped = sum("real_data" in getattr(report, "keywords", {}) for report in terminalreporter.stats.get("skipped", []))
    if skipped:
        terminalreporter.write_sep(
            "!", f"{skipped} real-data test(s) SKIPPED: no {PROBE} under {SHARED_DATA}; {HOW_TO_SET}",
            yellow=True, bold=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets ($MARQUEE_DATA_DIR, else ../shared/data); tests that need them skip where they are absent."""
    if not HAS_SHARED_DATA:
        pytest.skip(f"real data not found: no {PROBE} under {SHARED_DATA}; {HOW_TO_SET}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _data_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point MARQUEE_DATA_DIR at the real data when it exists (no test downloads anything) and caches at a temp dir."""
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("MARQUEE_DATA_DIR", str(SHARED_DATA))
    monkeypatch.setenv("MARQUEE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
