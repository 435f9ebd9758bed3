"""Artwork chosen by a policy file: the probabilities and context it logs, its checks, the A/B test of two
policies with each valued from the other's log, and the bandit run that writes the files a service loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from marquee.serving.ab import ab_readout, bucket, member_key
from marquee.serving.app import create_app
from marquee.serving.artwork import PolicyArtwork, PolicyFileError, check_policy
from marquee.serving.impressions import IMPRESSIONS, compact, read_impressions
from tests.helpers import artwork_policy, write_policy
from tests.test_serving import bundle, bundle_dir, run_dir  # noqa: F401 - module fixtures

REPO = Path(__file__).resolve().parents[1]


def _page(client: TestClient, body: dict) -> list[dict]:
    answer = client.post("/recommend", json={"k": 10, "rows": 1, **body})
    assert answer.status_code == 200, answer.text
    return [t for row in answer.json()["rows"] for t in row["items"]]


def test_a_policy_file_picks_the_artwork_it_prefers_and_logs_what_it_knew(bundle, bundle_dir, tmp_path):  # noqa: F811
    policy = artwork_policy(bundle, epsilon=0.2, skip=3)  # tone "dark" at night; the last 3 titles not in it
    path = write_policy(tmp_path / "dark_at_night.json", policy)
    history = [str(r) for r in bundle.items.raw_ids[:4]]
    with TestClient(create_app(bundle_dir, tmp_path / "log", policy=path, seed=0)) as c:
        assert c.get("/health").json()["policy"] == "test policy"
        night = [t for _ in range(5) for t in _page(c, {"history": history, "context": {"hour": 2}})]
        day = _page(c, {"history": history, "context": {"hour": 14}})
    known = set(policy["layout"]["titles"])
    dark = [t for t in night if str(t["item_id"]) in known]
    for t in dark:  # greedy on "dark" w.p. 0.8, then each of the title's K artworks w.p. 0.2 / K
        k = len(policy["layout"]["titles"][str(t["item_id"])])
        assert t["propensity"] == pytest.approx(0.8 * t["artwork"].endswith(":tone:dark") + 0.2 / k)
    assert len(dark) >= 40 and sum(t["artwork"].endswith(":tone:dark") for t in dark) > 0.7 * len(dark)
    for t in night + day:  # a title the file lacks: 4 synthetic variants, uniformly
        if str(t["item_id"]) not in known:
            assert t["artwork"].rsplit(":a", 1)[1] in "0123" and t["propensity"] == 0.25
    for t in day:  # by day every artwork scores 0: a tie, each 1/K
        k = len(policy["layout"]["titles"].get(str(t["item_id"]), range(4)))
        assert t["propensity"] == pytest.approx(1 / k)
    logged = list(read_impressions(tmp_path / "log" / IMPRESSIONS))
    first = next(r for r in logged if str(r["item_id"]) in known)
    # the context by hand: genre shares of the history, z-scored with the file's mean 0.1 and sd 0.2, then night
    meta = bundle.item_metadata(np.arange(1, 5))  # the history: the first 4 titles
    genres = policy["layout"]["genres"]
    shares = np.zeros(len(genres))
    for gs in meta["genres"]:
        if not isinstance(gs, float) and len(gs):  # NaN: a title without genres adds nothing
            shares[[genres.index(g) for g in gs]] += 1 / len(gs)
    expected = [*np.clip((shares / shares.sum() - 0.1) / 0.2, -3, 3), 1.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(first["context_vector"], expected)
    assert first["context_names"][-4:] == ["hour:night", "hour:morning", "hour:afternoon", "hour:evening"]
    features = policy["layout"]["arm_features"]
    assert [features[int(np.argmax(f))] for f in first["arm_features"]] == [
        features[a] for a in policy["layout"]["titles"][str(first["item_id"])]]
    assert first["arms"][first["slot"]] == first["arm"] and first["policy_id"]
    assert (tmp_path / "log" / "policies" / f"{first['policy_id']}.json").is_file()
    table = compact(tmp_path / "log")["artwork_log"]
    import pandas as pd

    frame = pd.read_parquet(table)
    assert len(frame) == len(logged) and len(frame["context"][0]) == len(genres) + 4


def test_bad_policy_files_are_refused_naming_what_is_wrong(bundle):  # noqa: F811
    good = artwork_policy(bundle)
    check_policy(good)
    cases = [({**good, "format": "other"}, "not a marquee-artwork-policy"),
             ({**good, "kind": "bandit"}, "kind must be"),
             ({**good, "epsilon": 0.0}, "epsilon must be in (0, 1]"),
             ({**good, "theta": good["theta"][:-1]}, "theta needs"),
             ({**good, "version": 99}, "newer than"),
             ({**good, "layout": {**good["layout"], "titles": {"x": [999]}}}, "title 'x'"),
             ({**good, "layout": {**good["layout"], "titles": {"y": [0] * 65}}}, "more than 64"),
             ({**good, "layout": {k: v for k, v in good["layout"].items() if k != "taste_std"}}, "taste_std")]
    for policy, message in cases:
        with pytest.raises(PolicyFileError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            PolicyArtwork(policy)


def test_an_ab_test_of_two_policies_values_each_from_the_others_log(bundle, bundle_dir, tmp_path):  # noqa: F811
    """Members play a dark artwork at night w.p. 0.6 and anything else w.p. 0.2: the policy that prefers dark art
    (B) earns more, and each policy's off-policy estimate from the other's log lands near its measured rate."""
    uniform = write_policy(tmp_path / "uniform.json", artwork_policy(bundle, kind="uniform", name="uniform"))
    dark = write_policy(tmp_path / "dark.json", artwork_policy(bundle, epsilon=0.2, name="dark at night"))
    rng = np.random.default_rng(0)
    history = [str(r) for r in bundle.items.raw_ids[:3]]
    app = create_app(bundle_dir, tmp_path / "log", policy=uniform, policy_b=dark, split=0.5, seed=0)
    variants = app.state.service.variants
    assert variants["A"].bundle is variants["B"].bundle  # one bundle, two policies: loaded once
    with TestClient(app) as c:
        health = c.get("/health").json()
        assert {v["variant"]: v["policy"] for v in health["variants"]} == {"A": "uniform", "B": "dark at night"}
        for m in range(160):
            for t in _page(c, {"history": history, "member_key": f"m{m}", "context": {"hour": 1}}):
                if rng.random() < (0.6 if t["artwork"].endswith(":tone:dark") else 0.2):
                    c.post("/events", json={"impression_id": t["impression_id"], "event": "play"})
    logged = list(read_impressions(tmp_path / "log" / IMPRESSIONS))
    assert all(r["variant"] == bucket(member_key(None, r["member"][4:], None), 0.5) for r in logged)
    readout = ab_readout(tmp_path / "log", reps=400)
    rates = {a.variant: a.play_rate for a in readout.arms}
    assert rates["B"] > rates["A"] + 0.15  # about 0.2 + 0.4 * 0.85 = 0.54 against 0.2 + 0.4 / 3.5 = 0.31
    difference = readout.differences[0]
    assert difference.ci_low > 0
    estimates = {(o.target, o.logged): o for o in readout.off_policy}
    assert set(estimates) == {("A", "B"), ("B", "A")}
    for (target, _), o in estimates.items():
        assert o.ci_low - 0.03 <= rates[target] <= o.ci_high + 0.03, (o, rates)
        assert abs(o.value - rates[target]) < 0.08
    assert "valued from the other's log" in readout.table()


def test_ab_policies_must_share_a_layout_and_both_have_one(bundle, bundle_dir, tmp_path):  # noqa: F811
    a = write_policy(tmp_path / "a.json", artwork_policy(bundle, kind="uniform"))
    other = write_policy(tmp_path / "b.json", artwork_policy(bundle, skip=2))
    with pytest.raises(PolicyFileError, match="layout .* differs"):
        create_app(bundle_dir, tmp_path / "log", policy=a, policy_b=other)
    with pytest.raises(PolicyFileError, match="one variant has an artwork policy file and the other synthetic"):
        create_app(bundle_dir, tmp_path / "log", policy_b=a)


def test_the_bandit_writes_served_policies_that_a_service_loads(bundle_dir, tmp_path):  # noqa: F811
    """``marquee.bandit save_policies=true`` on the simulator: a uniform and an ε-greedy LinUCB file, the latter
    valued in the report as what the service runs, and loadable by the service as is."""
    out = tmp_path / "bandit"
    command = [sys.executable, "-m", "marquee.bandit", "data=synthetic", "source.n_rows=3000",
               "source.true_value_requests=3000", "n_boot=50", "save_policies=true", "served_epsilon=0.2",
               "~policies.softmax", "~policies.linear_ts", f"hydra.run.dir={out}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    files = sorted(p.name for p in (out / "policies").iterdir())
    assert files == ["linucb.json", "uniform.json"]
    served = json.loads((out / "policies" / "linucb.json").read_text())
    assert served["kind"] == "linear" and served["epsilon"] == 0.2
    report = (out / "report.md").read_text()
    assert "linucb_served" in report and "True values" in report
    # every probability is at least ε / K and the rest goes to the best arm by the posterior mean
    chooser = PolicyArtwork(served)
    arms = next(iter(served["layout"]["titles"].values()))
    context = np.zeros((1, len(served["layout"]["genres"]) + 4))
    context[0, -1] = 1.0
    p = chooser.probabilities(context, np.array([arms]))[0]
    assert p.min() == pytest.approx(0.2 / len(arms)) and p.sum() == pytest.approx(1.0)
    with TestClient(create_app(bundle_dir, tmp_path / "log", policy=out / "policies" / "linucb.json")) as c:
        assert c.get("/health").json()["policy"] == "linucb"
