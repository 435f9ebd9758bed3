"""Each entry point's ``--help`` lists its own config groups, with the options on disk, and no other entry point's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from marquee.config_dir import CONFIG_DIR
from marquee.config_help import format_config_groups


def help_groups(entry: str, *overrides: str) -> dict[str, list[str]]:
    """``python -m marquee.<entry> --help``'s config groups: group -> options, ``*`` kept on the one in use."""
    done = subprocess.run([sys.executable, "-m", f"marquee.{entry}", *overrides, "--help"], env=os.environ.copy(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    section = done.stdout.split("== Config groups ==\n", 1)[1].split("== Config ==", 1)[0]
    rows = [line.split(": ", 1) for line in section.splitlines()[2:] if line.strip()]
    return {group: [] if options.startswith("(") else options.split(", ") for group, options in rows}


def defaults_groups(entry: str) -> set[str]:
    """The groups named in ``configs/<entry>.yaml``'s defaults list, Hydra's own left out."""
    defaults = yaml.safe_load((CONFIG_DIR / f"{entry}.yaml").read_text())["defaults"]
    return {next(iter(d)).split("@")[0].removeprefix("override ") for d in defaults
            if isinstance(d, dict)} - {"hydra"}


def on_disk(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.fixture(scope="module", params=["train", "eval", "bandit"])
def entry(request) -> tuple[str, dict[str, list[str]]]:
    return request.param, help_groups(request.param)


def test_help_lists_the_groups_of_its_defaults_with_the_options_on_disk(entry):
    name, groups = entry
    # every group of the defaults list, plus the nested ones its options pull in (data/split)
    assert defaults_groups(name) <= set(groups) and all(g.split("/")[0] in defaults_groups(name) for g in groups)
    for group, options in groups.items():
        assert [o.rstrip("*") for o in options] == on_disk(group), group


def test_each_entry_point_lists_only_its_own_groups(entry):
    name, groups = entry
    if name == "bandit":
        assert {"source", "policies", "data"} <= set(groups) and not {"model", "datamodule", "trainer"} & set(groups)
        assert groups["source"] == ["artwork_log", "obd", "simulator*"]
    elif name == "train":
        assert {"model", "data", "datamodule", "evaluation"} <= set(groups)
        assert not {"source", "policies"} & set(groups)
    else:
        assert set(groups) == {"evaluation", "paths"}


def test_help_marks_the_option_an_override_chose():
    assert help_groups("bandit", "source=obd", "policies=obd")["source"] == ["artwork_log", "obd*", "simulator"]


def test_groups_are_sorted_and_hydra_own_groups_left_out():
    choices = {"hydra/launcher": "basic", "hydra": "default", "model": None, "data": "ml1m", "data/split": "temporal"}
    options = {"model": ["sasrec", "ease"], "data": ["ml1m", "ml100k"], "data/split": ["temporal"]}
    assert format_config_groups(choices, options.__getitem__).splitlines() == [
        "data: ml100k, ml1m*", "data/split: temporal*", "model: ease, sasrec"]
    assert format_config_groups({"hparams_search": None}, lambda g: []) == "hparams_search: (no options yet)"
