"""A/B tests in the service: deterministic, restart-stable bucketing of members into two bundles, the variant and
bundle id in every response and impression, and the readout (cluster bootstrap over members) of a service log."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from marquee.export.__main__ import main as export_main
from marquee.serve import ArgumentError, parse
from marquee.serving.ab import ab_readout, bucket, member_key
from marquee.serving.ab import main as ab_main
from marquee.serving.app import create_app
from marquee.serving.impressions import EVENTS, IMPRESSIONS, read_impressions
from tests.helpers import free_port
from tests.test_serving import N_HISTORIES, bundle, bundle_dir, histories, run_dir  # noqa: F401 - module fixtures


@pytest.fixture(scope="module")
def bundle_b(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The same run exported again: another manifest (its time of export), so another bundle id."""
    folder = tmp_path_factory.mktemp("bundle_b")
    time.sleep(1.1)  # the manifest's time has seconds
    return export_main([f"run_dir={run_dir}", f"out={folder / 'bundle'}"])


def test_bucketing_is_deterministic_close_to_the_split_and_salted():
    keys = [member_key(str(u), None, None) for u in range(1000)]
    for split in (0.5, 0.2):
        variants = [bucket(k, split) for k in keys]
        assert variants == [bucket(k, split) for k in keys]  # a pure function of (salt, key)
        assert abs(variants.count("B") / len(keys) - split) < 0.05
    assert {bucket(k, 0.0) for k in keys} == {"A"} and {bucket(k, 1.0) for k in keys} == {"B"}
    assert [bucket(k, 0.5, "other") for k in keys] != [bucket(k, 0.5) for k in keys]
    assert member_key(3, "cookie", [1]) == "user:3" and member_key(None, "cookie", [1]) == "key:cookie"
    assert member_key(None, None, [1, 2]) == member_key(None, None, ["1", "2"]) != member_key(None, None, [2, 1])


def _ask(client: TestClient, body: dict) -> dict:
    answer = client.post("/recommend", json={"k": 2, "rows": 1, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_two_bundles_side_by_side_each_member_keeps_its_variant_across_restarts(bundle_dir, bundle_b, histories,  # noqa: F811
                                                                              tmp_path):
    log = tmp_path / "log"
    members = [{"user_id": str(u)} for u in range(1, N_HISTORIES + 1)]
    members += [{"history": [1, 2], "member_key": f"cookie-{i}"} for i in range(30)]
    members += [{"history": [i, 7]} for i in range(1, 11)]  # anonymous, no key: bucketed by the history
    seen: dict[int, tuple[str, str]] = {}
    for restart in range(2):
        with TestClient(create_app(bundle_dir, log, histories=histories, seed=0, variant_b=bundle_b,
                                   split=0.5)) as c:
            health = c.get("/health").json()
            ids = {v["variant"]: v["bundle_id"] for v in health["variants"]}
            assert set(ids) == {"A", "B"} and ids["A"] != ids["B"] and health["split"] == 0.5
            assert {v["variant"]: v["share"] for v in health["variants"]} == {"A": 0.5, "B": 0.5}
            for i, body in enumerate(members):
                for _ in range(2 if restart == 0 else 1):
                    page = _ask(c, body)
                    key = member_key(body.get("user_id"), body.get("member_key"), body.get("history"))
                    assert page["variant"] == bucket(key, 0.5) and page["bundle_id"] == ids[page["variant"]]
                    assert seen.setdefault(i, (page["variant"], page["bundle_id"])) == (page["variant"],
                                                                                       page["bundle_id"])
            refused = c.post("/recommend", json={"user_id": "1", "variant": "B"})  # a request cannot choose
            assert refused.status_code == 422 and "variant" in refused.json()["error"]
            shown = next(t for t in page["rows"][0]["items"])
            assert c.post("/events", json={"impression_id": shown["impression_id"], "event": "play"}).status_code == 200
    assert {v for v, _ in seen.values()} == {"A", "B"}
    logged = list(read_impressions(log / IMPRESSIONS))
    assert len(logged) == 2 * 2 * len(members) + 2 * len(members)
    for record in logged:
        assert record["variant"] in ("A", "B") and record["bundle_id"] == ids[record["variant"]]
        assert bucket(record["member"], 0.5) == record["variant"]
    readout = ab_readout(log, reps=200)
    assert [a.variant for a in readout.arms] == ["A", "B"] and sum(a.impressions for a in readout.arms) == len(logged)
    assert sum(a.members for a in readout.arms) == len(members) and sum(a.plays for a in readout.arms) == 2


def test_a_single_bundle_service_stays_as_it_was(bundle_dir, tmp_path):  # noqa: F811
    with TestClient(create_app(bundle_dir, tmp_path)) as c:
        health = c.get("/health").json()
        assert health["variants"] == [] and health["split"] is None
        page = _ask(c, {"history": [1, 2]})
    assert page["variant"] is None
    assert {r["variant"] for r in read_impressions(tmp_path / IMPRESSIONS)} == {None}
    with pytest.raises(ValueError, match="not an A/B log"):
        ab_readout(tmp_path)


def _plant(log_dir: Path, rates: dict[str, float], members: int = 300, seed: int = 0, spread: float = 0.0) -> None:
    """Members of each variant with 2-9 impressions each; a member's own play rate is the variant's rate, or with
    ``spread`` 0 or 1 for a share of members (correlated impressions within a member)."""
    rng = np.random.default_rng(seed)
    log_dir.mkdir(parents=True, exist_ok=True)
    impressions, events, n = [], [], 0
    for variant, rate in rates.items():
        for m in range(members):
            own = rate if rng.random() >= spread else float(rng.random() < rate)
            for _ in range(int(rng.integers(2, 10))):
                n += 1
                impressions.append({"impression_id": f"i{n}", "request_id": f"r{n}", "user_id": None,
                                    "member": f"key:{variant}{m}", "variant": variant, "bundle_id": f"bundle{variant}"})
                if rng.random() < own:
                    events.append({"event_id": f"e{n}", "impression_id": f"i{n}", "event": "play"})
                elif rng.random() < 0.3:
                    events.append({"event_id": f"e{n}", "impression_id": f"i{n}", "event": "skip"})
    (log_dir / IMPRESSIONS).write_text("".join(json.dumps(r) + "\n" for r in impressions))
    (log_dir / EVENTS).write_text("".join(json.dumps(r) + "\n" for r in events))


def test_the_readout_finds_a_planted_lift_and_covers_zero_under_the_null(tmp_path):
    _plant(tmp_path / "lift", {"A": 0.1, "B": 0.3})
    readout = ab_readout(tmp_path / "lift")
    a, b = readout.arms
    assert (a.variant, b.variant, a.members, b.members) == ("A", "B", 300, 300)
    assert abs(a.play_rate - 0.1) < 0.03 and abs(b.play_rate - 0.3) < 0.03 and a.bundle_ids == ["bundleA"]
    d = readout.differences[0]
    assert (d.variant, d.baseline) == ("B", "A") and d.ci_low > 0 and d.p_value < 1e-6
    assert d.diff == pytest.approx(b.play_rate - a.play_rate) and d.ci_low < d.diff < d.ci_high
    for seed in range(3):
        _plant(tmp_path / f"null{seed}", {"A": 0.15, "B": 0.15}, seed=seed)
        d = ab_readout(tmp_path / f"null{seed}").differences[0]
        assert d.ci_low < 0 < d.ci_high and d.p_value > 0.05


def test_the_bootstrap_resamples_members_not_impressions(tmp_path):
    """With members who always or never play, impressions are not independent: the CI is wider than the naive one."""
    _plant(tmp_path, {"A": 0.2, "B": 0.2}, spread=1.0)
    readout = ab_readout(tmp_path, reps=1000)
    naive = 1.96 * np.sqrt(sum(a.play_rate * (1 - a.play_rate) / a.impressions for a in readout.arms))
    d = readout.differences[0]
    assert (d.ci_high - d.ci_low) / 2 > 1.5 * naive


def test_a_log_with_one_variant_is_refused_in_one_line(tmp_path, capsys):
    _plant(tmp_path / "one", {"A": 0.1})
    with pytest.raises(ValueError, match="needs impressions of two variants, and holds A"):
        ab_readout(tmp_path / "one")
    done = subprocess.run([sys.executable, "-m", "marquee.serving.ab", str(tmp_path / "one")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert ab_main([str(tmp_path / "missing")]) == 2
    _plant(tmp_path / "two", {"A": 0.1, "B": 0.3})
    capsys.readouterr()
    assert ab_main([str(tmp_path / "two"), "reps=300"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["variant", "impressions", "members"] and "B - A: +0.1" in out
    assert "95% CI" in out and "300 reps" in out


def test_serve_starts_an_ab_test_from_the_command_line(bundle_dir, bundle_b, tmp_path):  # noqa: F811
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "marquee.serve", f"bundle={bundle_dir}", f"variant_b={bundle_b}",
                                "split=0.3", "salt=test", f"port={port}", f"log_dir={tmp_path}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline, health = time.monotonic() + 60, None
        while health is None and time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read().decode()
                time.sleep(0.2)
        assert health is not None, "the service did not answer /health within 60 s"
        assert {v["variant"]: v["share"] for v in health["variants"]} == {"A": 0.7, "B": 0.3}
        page = httpx.post(f"http://127.0.0.1:{port}/recommend", json={"history": [1], "member_key": "m1", "k": 2,
                                                                     "rows": 1}).json()
        assert page["variant"] == bucket("key:m1", 0.3, "test")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_arguments_for_an_ab_test():
    settings = parse(["bundle=a", "port=0", "variant_b=b", "split=0.2", "salt=s"])
    assert settings["variant_b"] == "b" and settings["split"] == 0.2 and settings["salt"] == "s"
    for args, message in ((["split=0.2"], "only with an A/B test"), (["variant_b=b", "split=1.5"], "within [0, 1]"),
                          (["variant_b=b", "split=half"], "split: expected a number")):
        with pytest.raises(ArgumentError, match=message.replace("[", r"\[")):
            parse(["bundle=a", "port=0", *args])
