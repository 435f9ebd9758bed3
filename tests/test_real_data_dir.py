"""The real data comes from $MARQUEE_DATA_DIR (else ../shared/data), and its absence is said out loud."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
NEEDS_DATA = '''
def test_reads_the_real_data(shared_data):
    assert (shared_data / "ml-100k" / "ml-100k.inter").is_file()

def test_needs_nothing():
    pass
'''


def _run_with_data_dir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_inner=NEEDS_DATA)
    monkeypatch.setenv("MARQUEE_DATA_DIR", str(data_dir))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider")


def test_absent_data_is_named_in_the_header_and_one_loud_summary_line(pytester, monkeypatch, tmp_path):
    empty = tmp_path / "no-data-here"
    empty.mkdir()
    result = _run_with_data_dir(pytester, monkeypatch, empty)
    result.assert_outcomes(passed=1, skipped=1)
    header = [line for line in result.outlines if line.startswith("real data:")]
    assert len(header) == 1 and "NOT FOUND" in header[0] and str(empty) in header[0], result.outlines
    loud = [line for line in result.outlines if "real-data test(s) SKIPPED" in line]
    assert len(loud) == 1, result.outlines
    assert str(empty) in loud[0] and "1 real-data test(s)" in loud[0] and "MARQUEE_DATA_DIR" in loud[0]


def test_the_real_data_named_by_the_variable_is_used(pytester, monkeypatch, shared_data):
    result = _run_with_data_dir(pytester, monkeypatch, shared_data)
    result.assert_outcomes(passed=2)
    header = [line for line in result.outlines if line.startswith("real data:")]
    assert header == [f"real data: {shared_data} (MARQUEE_DATA_DIR)"]
    assert not any("SKIPPED" in line for line in result.outlines)
