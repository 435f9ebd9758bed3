"""A/B tests in the service: deterministic bucketing of members, and the readout of the service's log.

**Bucketing.** A request's member key is ``user:<raw user_id>`` when it names a member, else
``key:<member_key>`` (a stable key the client sends for an anonymous member), else
``history:<sha256 of the inline history>``. :func:`bucket` hashes ``salt`` and the key with SHA-256 and
puts the member in variant "B" when the hash, read as a number in [0, 1), is below ``split``: the same
member always gets the same variant (no state, so across restarts too), a new salt reshuffles everyone,
and a request cannot choose its variant.

**Readout.** :func:`ab_readout` reads ``impressions.jsonl`` and ``events.jsonl`` (the files
:func:`marquee.serving.impressions.compact` reads) and gives, per variant, impressions, members, plays and
the play rate (impressions followed by a ``play`` event / impressions), and the difference of each variant
from the first ("B" - "A") with a 95% percentile CI from a cluster bootstrap over members (a member's
impressions are correlated, so members are the resampled units, each variant resampled on its own) and a
two-sided p-value from the normal approximation with the bootstrap's standard error.

``python -m marquee.serving.ab LOG_DIR [reps=2000] [seed=0]`` prints the table; a log without two
variants ends with one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SALT = "marquee-ab-v1"
from marquee.serving.impressions import EVENTS, IMPRESSIONS, REWARDING, read_impressions


def member_key(user_id: object | None, key: str | None, history: Sequence[object] | None) -> str | None:
    """The key a request is bucketed by: its member, else its ``member_key``, else a hash of its history."""
    if user_id is not None:
        return f"user:{user_id}"
    if key is not None:
        return f"key:{key}"
    if history is not None:
        return "history:" + hashlib.sha256(json.dumps([str(i) for i in history]).encode()).hexdigest()[:32]
    return None


def bucket(key: str, split: float = 0.5, salt: str = DEFAULT_SALT) -> str:
    """Variant "B" for a share ``split`` of keys, "A" for the rest; a pure function of ``(salt, key)``."""
    digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return "B" if int.from_bytes(digest[:8], "big") / 2.0**64 < split else "A"


@dataclass
class Arm:
    variant: str
    bundle_ids: list[str]
    impressions: int
    members: int
    plays: int
    play_rate: float


@dataclass
class Difference:
    variant: str  # this variant minus the baseline
    baseline: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    reps: int


@dataclass
class OffPolicy:
    """The self-normalized IPS estimate of ``target``'s play rate from the impressions ``logged`` served."""

    target: str  # the variant whose policy is valued
    policy: str  # its name
    logged: str  # the variant whose impressions are read
    value: float
    ci_low: float
    ci_high: float
    impressions: int
    effective: float  # effective sample size of the weights, (sum w)^2 / sum w^2


@dataclass
class Readout:
    arms: list[Arm]
    differences: list[Difference]
    off_policy: list[OffPolicy] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'variant':<8} {'impressions':>11} {'members':>8} {'plays':>7} {'play_rate':>9}  bundle_id"]
        lines += [f"{a.variant:<8} {a.impressions:>11} {a.members:>8} {a.plays:>7} {a.play_rate:>9.4f}  "
                  f"{','.join(a.bundle_ids)}" for a in self.arms]
        for d in self.differences:
            lines.append(f"{d.variant} - {d.baseline}: {d.diff:+.4f}  95% CI [{d.ci_low:+.4f}, {d.ci_high:+.4f}]  "
                         f"p = {d.p_value:.4g}  (cluster bootstrap over members, {d.reps} reps)")
        if self.off_policy:
            lines.append("off-policy: each variant's artwork policy valued from the other's log (SNIPS, 95% CI by the "
                         "same cluster bootstrap)")
            lines += [f"  {o.target} ({o.policy}) from {o.logged}'s log: {o.value:.4f} [{o.ci_low:.4f}, {o.ci_high:.4f}]"
                      f"  over {o.impressions} impressions, effective {o.effective:.0f}" for o in self.off_policy]
        return "\n".join(lines)


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.endswith("\n")]  # a torn last line is skipped


def _member(record: dict[str, Any]) -> str:
    if record.get("member") is not None:
        return str(record["member"])
    if record.get("user_id") is not None:
        return f"user:{record['user_id']}"
    return f"request:{record.get('request_id')}"  # an old line without a member key: its page is its unit


def _boot_rates(plays: np.ndarray, shown: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Play rates of ``reps`` resamples of the members (with replacement), in chunks to bound memory."""
    n, out, done = len(shown), np.empty(reps), 0
    chunk = max(1, min(reps, 2_000_000 // max(n, 1)))
    while done < reps:
        m = min(chunk, reps - done)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=m).astype(np.float64)
        total = counts @ shown
        out[done:done + m] = np.divide(counts @ plays, total, out=np.zeros(m), where=total > 0)
        done += m
    return out


def ab_readout(log_dir: str | Path, reps: int = 2000, seed: int = 0) -> Readout:
    """The A/B readout of a service log folder (see the module's doc); ValueError without two variants."""
    log_dir = Path(log_dir).expanduser()
    impressions = list(read_impressions(log_dir / IMPRESSIONS))
    if not impressions:
        raise ValueError(f"'{log_dir / IMPRESSIONS}' holds no impressions")
    played = {e["impression_id"] for e in _read(log_dir / EVENTS) if e.get("event") in REWARDING}
    per: dict[str, dict[str, list[int]]] = {}  # variant -> member -> [impressions, plays]
    bundles: dict[str, set[str]] = {}
    for r in impressions:
        variant = r.get("variant")
        if variant is None:
            continue
        counts = per.setdefault(str(variant), {}).setdefault(_member(r), [0, 0])
        counts[0] += 1
        counts[1] += r["impression_id"] in played
        bundles.setdefault(str(variant), set()).add(str(r.get("bundle_id")))
    if len(per) < 2:
        found = ", ".join(sorted(per)) or "none"
        raise ValueError(f"'{log_dir}' is not an A/B log: it needs impressions of two variants, and holds "
                         f"{found} ({len(impressions)} impressions)")
    rng = np.random.default_rng(seed)
    arms, boots = [], {}
    for variant in sorted(per):
        table = np.array(list(per[variant].values()), dtype=np.float64)
        shown, plays = table[:, 0], table[:, 1]
        arms.append(Arm(variant, sorted(bundles[variant]), int(shown.sum()), len(table), int(plays.sum()),
                        float(plays.sum() / shown.sum())))
        boots[variant] = _boot_rates(plays, shown, reps, rng)
    base = arms[0]
    differences = []
    for arm in arms[1:]:
        diffs = boots[arm.variant] - boots[base.variant]
        diff = arm.play_rate - base.play_rate
        se = float(diffs.std(ddof=1))
        p = 1.0 if se == 0 and diff == 0 else (0.0 if se == 0 else math.erfc(abs(diff) / se / math.sqrt(2)))
        low, high = np.quantile(diffs, [0.025, 0.975])
        differences.append(Difference(arm.variant, base.variant, diff, float(low), float(high), p, reps))
    return Readout(arms, differences, off_policy(log_dir, impressions, played, reps, rng))


def off_policy(log_dir: Path, impressions: list[dict[str, Any]], played: set[str], reps: int,
               rng: np.random.Generator) -> list[OffPolicy]:
    """Each variant's artwork policy valued on every other variant's impressions, when both served policy files
    (kept by the service under ``policies/``) of one layout; empty otherwise.

    Self-normalized IPS (sum of w * play over sum of w, w = target probability / logged propensity of the
    artwork shown), which is the same ratio of member sums as the play rate, so the same cluster bootstrap
    gives its CI. Written here rather than taken from marquee.bandits' estimators, which import torch.
    """
    from marquee.serving.artwork import PolicyArtwork  # numpy only

    ids = {str(r["variant"]): r.get("policy_id") for r in impressions if r.get("variant") is not None}
    files = {v: log_dir / "policies" / f"{i}.json" for v, i in ids.items() if i}
    if len(files) < 2 or len(files) != len(ids) or not all(f.is_file() for f in files.values()):
        return []
    policies = {v: PolicyArtwork(json.loads(f.read_text()), where=str(f)) for v, f in files.items()}
    if len({p.layout for p in policies.values()}) > 1:
        return []
    out = []
    for logged in sorted(policies):
        rows = [r for r in impressions if str(r.get("variant")) == logged and r.get("policy_id") == ids[logged]
                and r.get("arm_feature_ids")]  # a title without features (not in the layout): no policy chose it
        if not rows:
            continue
        context = np.array([r["context_vector"] for r in rows], dtype=np.float64)  # (n, d)
        width = max(len(r["arm_feature_ids"]) for r in rows)
        arms, mask = np.zeros((len(rows), width), dtype=np.int64), np.zeros((len(rows), width), dtype=bool)
        for i, r in enumerate(rows):
            arms[i, : len(r["arm_feature_ids"])] = r["arm_feature_ids"]
            mask[i, : len(r["arm_feature_ids"])] = True
        slot = np.array([r["slot"] for r in rows])
        propensity = np.array([r["propensity"] for r in rows], dtype=np.float64)
        reward = np.array([r["impression_id"] in played for r in rows], dtype=np.float64)
        members = [_member(r) for r in rows]
        for target in sorted(policies):
            if target == logged:
                continue
            p = policies[target].probabilities(context, arms, mask)[np.arange(len(rows)), slot]
            w = p / propensity  # (n,)
            per: dict[str, list[float]] = {}
            for m, wi, ri in zip(members, w, reward, strict=True):
                sums = per.setdefault(m, [0.0, 0.0])
                sums[0] += wi
                sums[1] += wi * ri
            table = np.array(list(per.values()))
            boots = _boot_rates(table[:, 1], table[:, 0], reps, rng)
            low, high = np.quantile(boots, [0.025, 0.975])
            out.append(OffPolicy(target, policies[target].name, logged, float((w * reward).sum() / w.sum()),
                                 float(low), float(high), len(rows), float(w.sum() ** 2 / (w**2).sum())))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0 if argv else 2
    options = {"reps": 2000, "seed": 0}
    try:
        for arg in argv[1:]:
            key, eq, value = arg.partition("=")
            if not eq or key not in options:
                raise ValueError(f"unknown argument '{arg}'; give LOG_DIR [reps=N] [seed=S]")
            try:
                options[key] = int(value)
            except ValueError:
                raise ValueError(f"{key}: expected an integer, got {value!r}") from None
        readout = ab_readout(argv[0], **options)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(readout.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
