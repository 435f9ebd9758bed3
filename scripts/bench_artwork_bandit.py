"""Artwork bandit benchmark: OPE on the Open Bandit Dataset beside obp's figures, and online and offline studies in
the artwork simulator on MovieLens-100K titles, our policies beside Vowpal Wabbit's --cb_explore_adf.

Parts (rows are appended to experiments/artwork_bandit/results.jsonl as each configuration finishes, tagged
with the run id; the README and plots are rendered from the latest run's rows):

    obd      relative error of each estimator when the uniform-random log values the Bernoulli-TS policy,
             over obp's 30 bootstrap resamples, against the bts log's on-policy click rate
    tune     per family, 12 trials of a seeded Optuna TPE search over SPACES, each trial scored by its mean
             expected reward on the development streams (seeds 1000, 1001), never on a test stream
    online   cumulative reward and regret over T rounds on seeds 0..9, the best trial of each family
    offline  |estimate − true value| for every estimator, target policy and logging policy (fixed targets,
             not the tuned settings)

    python scripts/bench_artwork_bandit.py [--parts obd tune online offline] [--bts-prior prior_bts.yaml]
    python scripts/bench_artwork_bandit.py --resume RUN_ID    # finish a cut-short run, skipping done rows
    python scripts/bench_artwork_bandit.py --render-only      # rewrite README.md and the plots from the rows

Every row records the 1-minute load average at its start and end and the CPU count, so that the README
prints the load beside any timing it shows. A resumed tuning run replays its search: the seeded sampler asks
again, the recorded scores answer the trials already measured, and only the rest are run.

``--bts-prior`` is obp's ``obp/policy/conf/prior_bts.yaml`` (the ZOZOTOWN production Beta priors, Apache-2.0,
not shipped with marquee); with it the OBD part also values obp's exact evaluation policy.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: one thread, as the machine is shared
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from provenance import measured, run_id_date, stamp

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "experiments" / "artwork_bandit"
ROWS = OUT_DIR / "results.jsonl"
PARTS = ("obd", "tune", "online", "offline")
OBD_ESTIMATORS = ("dm", "ips", "snips", "dr", "sndr", "switch_dr", "dr_os")
ALL_ESTIMATORS = ("replay", "ips", "snips", "dm", "dr", "sndr", "switch_dr", "dr_os")
# obp 0.5 examples/obd README: BTS valued from the random log, campaign all, logistic regression, 30 runs
OBP_RELATIVE_ERROR = {"dm": 0.156876, "ips": 0.311082, "snips": 0.311795, "dr": 0.292464, "sndr": 0.302407,
                      "switch_dr": 0.258410, "dr_os": 0.159520}
OBP_NAMES = {"dm": "DM", "ips": "IPW", "snips": "SNIPW", "dr": "DR", "sndr": "SNDR", "switch_dr": "Switch-DR",
             "dr_os": "DRos", "replay": "replay", "naive": "logging CTR (no OPE)"}
# the reward model's L2 weights tried by cross-validation on the random log: decades from 0.1 to 10⁶ (at 10⁶
# the model predicts within 10⁻⁵ of a constant), beside the intercept-only model that is their limit
N_BOOT_OBD, L2_GRID = 30, (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
ROUNDS, SEEDS, DEV_SEEDS, CHECKPOINT = 5000, tuple(range(10)), (1000, 1001), 100
# Tuning: the same budget for every family, N_TRIALS trials of a seeded TPE search over these ranges (name:
# (low, high, log scale)), each trial scored by its mean expected reward over the development streams
N_TRIALS, TPE_SEED, TPE_STARTUP = 12, 0, 5
EDGE = 0.1  # a chosen value within this share of its range's width (on its scale) of a bound is flagged
SPACES = {
    "LinUCB": {"alpha": (0.01, 3.0, True), "ridge": (0.1, 100.0, True)},
    "linear TS": {"scale": (0.01, 3.0, True), "ridge": (0.1, 100.0, True)},
    "NeuralLinear": {"scale": (0.01, 3.0, True), "ridge": (0.1, 100.0, True)},
    "ε-greedy (neural)": {"epsilon": (0.001, 0.5, True)},
    "VW squarecb": {"gamma_scale": (1.0, 1e5, True), "l": (0.01, 10.0, True)},
    "VW ε-greedy": {"epsilon": (0.001, 0.5, True), "l": (0.01, 10.0, True)},
}
OURS = ("LinUCB", "linear TS", "NeuralLinear", "ε-greedy (neural)")
FIXED = {"uniform": {}, "best artwork per title": {}, "VW squarecb (defaults)": {"args": "--squarecb"}}
OFFLINE_LOGS, OFFLINE_ROWS = 10, 10_000


# --- shared --------------------------------------------------------------------------------------


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM"


def load() -> dict:
    """The 1/5/15-minute load averages and the CPU count now (other work on the machine slows the timings)."""
    return {"loadavg": [round(v, 2) for v in os.getloadavg()], "cpu_count": os.cpu_count()}


_CODE: dict = {}  # marquee's commit and dirty flag when this process started: the code it imported


def append(row: dict) -> None:
    """Append a row with its end-of-row load and stamp; ``git_commit`` is the commit this process started from (the
    checkout's HEAD can move while a long run goes on), ``head_at_write`` the HEAD when the row was written."""
    from marquee.run_record import code_version

    if not _CODE:
        _CODE.update(code_version())
    end, stamped = load(), stamp()
    with ROWS.open("a") as f:
        f.write(json.dumps({**row, "loadavg_end": end["loadavg"], "cpu_count": end["cpu_count"], **stamped,
                            "git_commit": _CODE["git_commit"], "git_dirty": _CODE["git_dirty"],
                            "head_at_write": stamped["git_commit"]}) + "\n")


def read() -> list[dict]:
    return [json.loads(line) for line in ROWS.read_text().splitlines()] if ROWS.is_file() else []


def done_keys(run_id: str) -> set[str]:
    return {r["key"] for r in read() if r["run_id"] == run_id}


def simulator():
    from hydra import compose, initialize_config_dir

    from marquee.bandits.simulator import ArtworkSimulator
    from marquee.config_dir import CONFIG_DIR
    from marquee.data.pipeline import load_log

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data=ml100k", "paths.output_dir=unused"])
    return ArtworkSimulator.from_interaction_log(load_log(cfg.data))


# --- OBD -----------------------------------------------------------------------------------------


def choose_l2(log, feature_map) -> tuple[float, dict, float]:
    """The reward model's L2 weight with the lowest 3-fold cross-validated log loss on the random log alone, the
    loss at every weight, and the loss of the intercept-only model (each fold's click rate), their limit."""
    from marquee.bandits.reward_model import LogisticRewardModel, logged_features

    x, y = logged_features(log, feature_map), log.reward
    fold = np.random.default_rng(0).permutation(len(y)) % 3

    def loss(p: np.ndarray, k: int) -> float:
        p = np.clip(p, 1e-9, 1 - 1e-9)
        return -float((y[fold == k] * np.log(p) + (1 - y[fold == k]) * np.log(1 - p)).sum())

    losses = {l2: sum(loss(LogisticRewardModel(l2).fit(x[fold != k], y[fold != k]).predict(x[fold == k]), k)
                      for k in range(3)) / len(y) for l2 in L2_GRID}
    constant = sum(loss(np.full(int((fold == k).sum()), y[fold != k].mean()), k) for k in range(3)) / len(y)
    return min(losses, key=losses.get), losses, constant


def run_obd(run_id: str, data_dir: Path, bts_prior: Path | None) -> None:
    from marquee.bandits.estimators import diagnostics, estimator_terms
    from marquee.bandits.features import concat_features
    from marquee.bandits.obd import N_POSITIONS, load_obd, position_columns
    from marquee.bandits.policies import ArmDistributionPolicy
    from marquee.bandits.policies.static import bernoulli_ts_distribution
    from marquee.bandits.reward_model import LogisticRewardModel, cross_fit_q_hat

    done = done_keys(run_id)
    random_log, bts_log = load_obd(data_dir / "obd", "random", "all"), load_obd(data_dir / "obd", "bts", "all")
    truth = float(bts_log.reward.mean())
    positions = position_columns(random_log.context_names)
    targets = {"bts logged frequencies": ArmDistributionPolicy.from_log(bts_log, positions)}
    if bts_prior is not None:
        import yaml

        prior = yaml.safe_load(bts_prior.read_text())["all"]
        table = bernoulli_ts_distribution(prior["alpha"], prior["beta"], N_POSITIONS, n_sim=1_000_000, seed=12345)
        targets["bts zozotown prior"] = ArmDistributionPolicy(table, positions)
    l2, losses, constant = choose_l2(random_log, concat_features)
    for name, policy in targets.items():
        for b in range(N_BOOT_OBD):
            key = f"obd/{name}/{b}"
            if key in done:
                continue
            started, load_start = time.perf_counter(), load()["loadavg"]
            # obp's resample: RandomState(b).choice(n, n, replace=True)
            idx = np.random.RandomState(b).choice(np.arange(len(random_log)), size=len(random_log), replace=True)
            log = random_log.take(idx)
            q_hat = cross_fit_q_hat(lambda: LogisticRewardModel(l2), log, concat_features, n_folds=3, seed=b)
            target = policy.action_probabilities(log.context, log.candidates)
            terms = estimator_terms(log, target, q_hat, ALL_ESTIMATORS)
            values = {e: t.value for e, t in terms.items()}
            values["naive"] = float(log.reward.mean())
            weights = diagnostics(terms["ips"].weights)
            append({"run_id": run_id, "key": key, "part": "obd", "target": name, "bootstrap": b, "truth": truth,
                    "random_rows": len(random_log), "random_clicks": int(random_log.reward.sum()),
                    "bts_rows": len(bts_log), "bts_clicks": int(bts_log.reward.sum()), "l2": l2, "l2_grid": list(L2_GRID),
                    "cv_log_loss": losses, "cv_log_loss_constant": constant, "values": values,
                    "relative_error": {e: abs(v - truth) / truth for e, v in values.items()},
                    "ips_max_weight": weights["max_weight"], "ips_ess": weights["ess"],
                    "lambda": {e: terms[e].params.get("lambda") for e in ("switch_dr", "dr_os")},
                    "seconds": time.perf_counter() - started, "loadavg_start": load_start, "machine": machine()})
        print(f"obd {name}: done")


# --- online --------------------------------------------------------------------------------------


def make_policy(family: str, params: dict, sim, seed: int):
    from marquee.bandits.policies import EpsilonGreedy, LinearTS, LinUCB, NeuralLinear, UniformPolicy
    from marquee.bandits.reward_model import NeuralRewardModel

    if family == "uniform":
        return UniformPolicy()
    if family == "best artwork per title":
        return sim.best_artwork_policy()
    if family == "LinUCB":
        return LinUCB(**params)
    if family == "linear TS":
        return LinearTS(**params, seed=seed)
    if family == "NeuralLinear":
        return NeuralLinear(**params, model=NeuralRewardModel(hidden=(64,), seed=seed), seed=seed)
    if family == "ε-greedy (neural)":
        return EpsilonGreedy(**params, model=NeuralRewardModel(hidden=(64,), seed=seed))
    from marquee.bandits.policies.vw import VowpalWabbitPolicy

    return VowpalWabbitPolicy(params["args"], seed=seed, name=family)


def policy_params(family: str, search: dict) -> dict:
    """What ``make_policy`` takes for one trial's searched values, rounded to 3 significant digits (what runs)."""
    values = {k: float(f"{v:.3g}") for k, v in search.items()}
    if family == "VW squarecb":
        return {"args": f"--squarecb --gamma_scale {values['gamma_scale']:g} -l {values['l']:g}"}
    if family == "VW ε-greedy":
        return {"args": f"--epsilon {values['epsilon']:g} -l {values['l']:g}"}
    return values


def online_row(run_id: str, key: str, part: str, family: str, params: dict, sim, seed: int, **extra) -> dict:
    import torch

    from marquee.bandits.online import run_online

    torch.manual_seed(seed)
    load_start = load()["loadavg"]
    started = time.perf_counter()
    run = run_online(sim, make_policy(family, params, sim, seed), ROUNDS, seed)
    seconds = time.perf_counter() - started
    at = np.arange(CHECKPOINT, ROUNDS + 1, CHECKPOINT) - 1
    row = {"run_id": run_id, "key": key, "part": part, "family": family, "params": params, **extra, "seed": seed,
           "rounds": ROUNDS, "expected_reward": float(run.expected.sum()), "reward": float(run.reward.sum()),
           "regret": float(run.regret[-1]), "oracle_reward": float(run.best.sum()),
           "last_1000_mean": float(run.expected[-1000:].mean()), "checkpoints": (at + 1).tolist(),
           "cumulative_expected": np.cumsum(run.expected)[at].round(3).tolist(),
           "cumulative_regret": run.regret[at].round(3).tolist(), "seconds": seconds, "loadavg_start": load_start,
           "machine": machine(),
           "simulator": {"titles": sim.n_titles, "members": len(sim.taste), "artworks": sim.config.n_artworks}}
    append(row)
    print(f"{part} {family} {params} seed {seed}: reward {row['expected_reward']:.1f} regret {row['regret']:.1f} "
          f"({seconds:.0f}s, load {load_start[0]:.1f})", flush=True)
    return row


def run_tune(run_id: str, sim) -> None:
    """Per family, N_TRIALS trials of a seeded TPE search; a trial's score is its mean expected reward over the
    development streams. Rows already in the run answer their trials (the sampler asks the same values again)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = {r["key"]: r for r in read() if r["run_id"] == run_id and r["part"] == "tune"}
    for family, space in SPACES.items():
        distributions = {name: optuna.distributions.FloatDistribution(low, high, log=log)
                         for name, (low, high, log) in space.items()}
        sampler = optuna.samplers.TPESampler(seed=TPE_SEED, n_startup_trials=TPE_STARTUP)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for number in range(N_TRIALS):
            trial = study.ask(distributions)
            params = policy_params(family, trial.params)
            rewards = []
            for seed in DEV_SEEDS:
                key = f"tune/{family}/{number}/{seed}"
                row = rows.get(key)
                if row is not None and row["search"] != trial.params:
                    raise SystemExit(f"{key}: the sampler asked {trial.params}, the row has {row['search']}; "
                                     "the search cannot be replayed (different SPACES, seed or optuna?)")
                if row is None:
                    row = online_row(run_id, key, "tune", family, params, sim, seed, trial=number,
                                     search=trial.params, space={k: list(v) for k, v in space.items()},
                                     sampler=f"optuna {optuna.__version__} TPESampler(seed={TPE_SEED}, "
                                             f"n_startup_trials={TPE_STARTUP})")
                rewards.append(row["expected_reward"])
            study.tell(trial, float(np.mean(rewards)))
        best = study.best_trial
        print(f"tune {family}: best trial {best.number} {policy_params(family, best.params)} "
              f"{best.value:.1f}", flush=True)


def tune_scores(rows: list[dict]) -> dict[str, list[dict]]:
    """Per family, one entry per trial measured on every development stream: params, search, mean reward."""
    out: dict[str, list[dict]] = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family]
        trials = dict.fromkeys(r.get("trial", json.dumps(r["params"], sort_keys=True)) for r in mine)
        seeds = sorted({r["seed"] for r in mine})
        for t in trials:
            of = [r for r in mine if r.get("trial", json.dumps(r["params"], sort_keys=True)) == t]
            if sorted(r["seed"] for r in of) != seeds:
                continue  # not yet measured on every development stream
            out.setdefault(family, []).append({
                "trial": t, "params": of[0]["params"], "search": of[0].get("search"), "space": of[0].get("space"),
                "expected_reward": float(np.mean([r["expected_reward"] for r in of])),
                "regret": float(np.mean([r["regret"] for r in of])),
                "per_seed": {r["seed"]: r["expected_reward"] for r in of}})
    return out


def tuned(run_id: str) -> dict[str, dict]:
    """The best trial of each family on the development streams (by mean expected reward), plus the fixed entries."""
    tune = [r for r in read() if r["part"] == "tune"]
    run = run_id if any(r["run_id"] == run_id for r in tune) else (tune[-1]["run_id"] if tune else run_id)
    scores = tune_scores([r for r in tune if r["run_id"] == run])  # this run's tuning, else the latest run's
    best = {f: max(trials, key=lambda t: t["expected_reward"])["params"] for f, trials in scores.items()
            if len(trials) == N_TRIALS or run != run_id}
    return {**FIXED, **best}


def run_online_part(run_id: str, sim) -> None:
    done = done_keys(run_id)
    settings = tuned(run_id)
    missing = [f for f in SPACES if f not in settings]
    if missing:
        raise SystemExit(f"no tuning rows for {missing} in run {run_id}; run the 'tune' part first")
    for seed in SEEDS:
        for family, params in settings.items():
            key = f"online/{family}/{seed}"
            if key not in done:
                online_row(run_id, key, "online", family, params, sim, seed)


# --- offline -------------------------------------------------------------------------------------


def run_offline(run_id: str, sim) -> None:
    import torch

    from marquee.bandits.estimators import evaluate_policy
    from marquee.bandits.features import cross_features
    from marquee.bandits.policies import EpsilonMixture, LinearTS, LinUCB, SoftmaxPolicy, UniformPolicy
    from marquee.bandits.reward_model import LogisticRewardModel, NeuralRewardModel, cross_fit_q_hat

    done = done_keys(run_id)
    torch.manual_seed(0)
    train = sim.simulate_log(UniformPolicy(), 5000, seed=500)  # the targets' own training data
    pilot = sim.simulate_log(UniformPolicy(), 2000, seed=501)  # what the ε-greedy logger learned from
    targets = {
        "best artwork per title (deterministic)": sim.best_artwork_policy(),
        "LinUCB greedy (deterministic)": LinUCB(alpha=0.0, ridge=5.0).fit(train),
        "linear TS (stochastic)": LinearTS(scale=0.15, ridge=5.0).fit(train),
        "softmax, neural (stochastic)": SoftmaxPolicy(temperature=0.3, model=NeuralRewardModel(hidden=(64,))).fit(train),
    }
    loggers = {"uniform": UniformPolicy(),
               "ε-greedy (0.2)": EpsilonMixture(LinUCB(alpha=0.0, ridge=5.0).fit(pilot), 0.2),
               "production": sim.production_policy()}
    truth = {name: sim.true_value(policy) for name, policy in targets.items()}
    for logger_name, logger in loggers.items():
        for r in range(OFFLINE_LOGS):
            key = f"offline/{logger_name}/{r}"
            if key in done:
                continue
            started = time.perf_counter()
            log = sim.simulate_log(logger, OFFLINE_ROWS, seed=600 + r)
            q_hat = cross_fit_q_hat(lambda: LogisticRewardModel(1.0), log, cross_features, n_folds=3, seed=r)
            results = {}
            for name, policy in targets.items():
                table = evaluate_policy(log, policy.action_probabilities(log.context, log.candidates), q_hat,
                                        ALL_ESTIMATORS, n_boot=200, seed=r)
                results[name] = {e: {"value": float(table.loc[e, "value"]), "ci_low": float(table.loc[e, "ci_low"]),
                                     "ci_high": float(table.loc[e, "ci_high"]), "ess": float(table.loc[e, "ess"])}
                                 for e in ALL_ESTIMATORS}
            append({"run_id": run_id, "key": key, "part": "offline", "logger": logger_name, "log": r,
                    "rows": OFFLINE_ROWS, "truth": truth, "logger_value": float(log.reward.mean()),
                    "results": results, "seconds": time.perf_counter() - started, "machine": machine()})
            print(f"offline {logger_name} log {r}: {time.perf_counter() - started:.0f}s")


# --- rendering -----------------------------------------------------------------------------------


def _ci(values: list[float], seed: int = 0) -> tuple[float, float, float]:
    from marquee.evaluation.statistics import bootstrap_ci

    return bootstrap_ci(np.asarray(values, dtype=float), n_boot=2000, seed=seed)


def load_per_core(r: dict) -> float | None:
    """A row's 1-minute load average per core, mean of its start and end readings (None: not recorded)."""
    if "loadavg_start" not in r or "loadavg_end" not in r:
        return None
    return (r["loadavg_start"][0] + r["loadavg_end"][0]) / 2 / r["cpu_count"]


def _load_range(rows: list[dict]) -> str:
    loads = [load_per_core(r) for r in rows]
    known = [v for v in loads if v is not None]
    if not known:
        return "not recorded"
    low, high = f"{min(known):.2f}", f"{max(known):.2f}"
    text = low if low == high else f"{low}–{high}"
    return text + (f" ({len(loads) - len(known)} rows without it)" if len(known) < len(loads) else "")


def _same_as_shown(rows: list[dict], part: str, run: str, shown: list[dict]) -> str:
    """' (identical ...)' when an earlier online or tuning run measured the same rows with the same rewards."""
    if part not in ("tune", "online"):
        return ""
    mine = {r["key"]: (r["params"], r["expected_reward"]) for r in rows if r["part"] == part and r["run_id"] == run}
    if mine == {r["key"]: (r["params"], r["expected_reward"]) for r in shown}:
        return f" (the same {len(mine)} settings and streams, identical expected plays in every row)"
    return ""


def render() -> None:
    rows = read()
    if not rows:
        raise SystemExit(f"no rows in {ROWS}; run without --render-only first")
    latest = {}
    for r in rows:  # the latest run that measured each part
        latest[r["part"]] = r["run_id"]
    if "online" in latest and any(r["part"] == "tune" and r["run_id"] == latest["online"] for r in rows):
        latest["tune"] = latest["online"]  # the tuning that chose the settings the online rows ran
    latest = {p: latest[p] for p in PARTS if p in latest}
    by_part = {p: [r for r in rows if r["part"] == p and r["run_id"] == latest.get(p)] for p in PARTS}
    shown = [r for p in PARTS for r in by_part[p]]
    machines = sorted({r["machine"] for r in shown})
    dirty = [r for r in shown if r.get("git_dirty")]
    lines = [
        "# Artwork bandit: off-policy evaluation and online learning",
        "",
        ("Written by `scripts/bench_artwork_bandit.py`; `python scripts/bench_artwork_bandit.py --render-only` "
         "rewrites it and its plots from `results.jsonl`, showing the newest run of each part."),
        (f"Runs {', '.join(f'`{run}` ({part})' for part, run in latest.items())}; machine recorded by the rows: "
         f"{'; '.join(machines)}. The script asks for one BLAS and one torch thread. 1-minute load average per "
         "core over each part's rows (mean of the readings at a row's start and end): "
         + "; ".join(f"{p} {_load_range(by_part[p])}" for p in latest) + "."),
        "",
        *measured([(f"{r['part']} (run `{r['run_id']}`)", r["finished_at"][:10] if r.get("finished_at")
                    else run_id_date(r["run_id"]), r.get("git_commit")) for r in shown],
                  "each row's `finished_at`, else the start date its run id names"),
    ]
    older = {p: [run for run in dict.fromkeys(r["run_id"] for r in rows if r["part"] == p) if run != latest[p]]
             for p in latest}
    if any(older.values()):
        lines += ["Earlier runs in `results.jsonl`, not shown here: " + "; ".join(
            f"{p} {', '.join(f'`{run}`' + _same_as_shown(rows, p, run, by_part[p]) for run in runs)}"
            for p, runs in older.items() if runs) + ".", ""]
    moved = [r for r in shown if r.get("head_at_write") and r["head_at_write"] != r.get("git_commit")]
    if moved:
        lines += [(f"{len(moved)} rows were written after other commits had landed in the checkout; their commit "
                   "above is the one the measuring process started from (the code it had imported)."), ""]
    if dirty:
        parts = ", ".join(dict.fromkeys(f"{r['part']} (run `{r['run_id']}`)" for r in dirty))
        lines += [(f"{len(dirty)} of the {len(shown)} rows ({parts}) were measured from a working tree with "
                   "uncommitted changes on top of the commit named; the rows record that, not the changes."), ""]
    lines += render_obd(by_part["obd"])
    lines += render_online(by_part["tune"], by_part["online"])
    lines += render_offline(by_part["offline"])
    (OUT_DIR / "README.md").write_text("\n".join(lines))
    print(f"wrote {OUT_DIR / 'README.md'}")


def _weight(value: float) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _l2_note(r0: dict) -> str:
    """Where the chosen L2 weight sits in the grid the row records, and the measured log losses."""
    losses = {float(k): v for k, v in r0["cv_log_loss"].items()}
    grid, l2 = sorted(losses), float(r0["l2"])
    text = f" (grid {{{', '.join(map(_weight, grid))}}}; log loss per example " + ", ".join(
        f"{_weight(g)}: {losses[g]:.8g}" for g in grid)
    constant = r0.get("cv_log_loss_constant")
    if constant is not None:
        text += f"; intercept-only model, each fold's click rate: {constant:.8g}"
    text += ")."
    falling = all(losses[a] > losses[b] for a, b in itertools.pairwise(grid))
    if l2 == grid[-1]:
        text += (" The chosen weight is the grid's upper edge"
                 + (", and the loss falls at every step toward it" if falling else "") + ".")
        if constant is not None and constant <= losses[l2]:
            text += (" The intercept-only model, the limit of ever stronger regularization, scores "
                     + ("lower still:" if constant < losses[l2] else "the same:")
                     + " cross-validation finds no click signal in these features, so the reward model is the constant"
                     " click rate and DM can only repeat the log's click rate (compare the no-OPE row).")
    elif l2 == grid[0]:
        text += " The chosen weight is the grid's lower edge."
    else:
        text += " The chosen weight is inside the grid."
    return text


def render_obd(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    r0 = rows[0]
    truth, l2 = r0["truth"], r0["l2"]
    targets = sorted({r["target"] for r in rows}, key=lambda t: t != "bts zozotown prior")
    counted = "random_rows" in r0  # rows measured before the logs' sizes were recorded lack them
    obp_best = min(OBP_RELATIVE_ERROR, key=OBP_RELATIVE_ERROR.get)
    lines = [
        "## Open Bandit Dataset: valuing Bernoulli TS from the uniform-random log",
        "",
        "Campaign `all`. The uniform-random log"
        + (f" ({r0['random_rows']:,} impressions, {r0['random_clicks']} clicks)" if counted else "") + " values",
        f"the Bernoulli Thompson sampling policy, whose on-policy click rate in its own log is **{truth:.4f}**"
        + (f" ({r0['bts_clicks']} clicks in {r0['bts_rows']:,}: itself uncertain by about "
           f"±{1 / np.sqrt(r0['bts_clicks']):.0%}, one Poisson standard error)" if counted else "")
        + f". Relative error = |estimate − {truth:.4f}| / {truth:.4f}",
        f"over obp's {len({r['bootstrap'] for r in rows})} bootstrap resamples of the random log (`RandomState(b).choice`, b = 0..{max(r['bootstrap'] for r in rows)}, as",
        "`examples/obd/evaluate_off_policy_estimators.py`). The reward model of DM and the DR family is",
        "L2-regularized logistic regression on [position, user features, item features], one model for all",
        f"positions, cross-fitted on 3 folds; its L2 weight ({_weight(l2)}) was chosen by 3-fold cross-validated log loss",
        "on the random log alone, never by the error against the truth" + _l2_note(r0),
        "Switch-DR and DRos pick λ from obp's grid",
        "{10, 50, …, 10⁴, ∞} by SLOPE, as obp's tuned estimators do. obp's numbers are quoted from its README",
        "(obp 0.5, logistic regression with C = 100 fitted per position, `n_runs 30`), not re-run here.",
        "",
        "Two versions of the evaluation policy:",
        "",
        "- **bts zozotown prior**: obp's exact evaluation policy — Bernoulli TS with the ZOZOTOWN production",
        "  Beta priors (`obp/policy/conf/prior_bts.yaml`, copied with its licence note to `obp_prior_bts.yaml` here), its action distribution",
        "  per position by 10⁶ Monte Carlo rankings (`marquee.bandits.policies.static.bernoulli_ts_distribution`).",
        "- **bts logged frequencies**: needs nothing outside the data — the policy's average behaviour in the bts",
        "  log, each item's share of the impressions at each position (`ArmDistributionPolicy.from_log`).",
        "",
    ]
    header = "| estimator | obp 0.5 (README) | " + " | ".join(
        f"marquee, {t}: mean ± sd [95% CI of mean]" for t in targets) + " |"
    lines += [header, "|---|---|" + "---|" * len(targets)]
    best = {}
    for e in ("naive", "replay", *OBD_ESTIMATORS):
        cells = []
        for t in targets:
            errs = [r["relative_error"][e] for r in rows if r["target"] == t]
            mean, low, high = _ci(errs)
            best.setdefault(t, []).append((mean, e))
            cells.append(f"{mean:.3f} ± {np.std(errs, ddof=1):.3f} [{low:.3f}, {high:.3f}]")
        obp = f"{OBP_RELATIVE_ERROR[e]:.3f}" if e in OBP_RELATIVE_ERROR else ""
        lines.append(f"| {OBP_NAMES[e]} | {obp} | " + " | ".join(cells) + " |")
    lines += ["", "Every row of this section comes from run "
              + ", ".join(f"`{run}`" for run in dict.fromkeys(r["run_id"] for r in rows)) + ".", ""]

    def paired(t: str, e: str) -> tuple[float, float, float]:
        mine = [r for r in rows if r["target"] == t]
        return _ci(np.array([r["relative_error"][e] - r["relative_error"]["naive"] for r in mine]))

    for t in targets:
        ranked = sorted((m, e) for m, e in best[t] if e != "naive")
        m, lo, hi = paired(t, ranked[0][1])
        same = lo <= 0 <= hi
        lines.append(f"- {t}: our lowest mean relative error is {OBP_NAMES[ranked[0][1]]}'s, {ranked[0][0]:.3f} "
                     f"({'at or below' if ranked[0][0] <= OBP_RELATIVE_ERROR[obp_best] else 'above'} obp's lowest, "
                     f"{OBP_NAMES[obp_best]} {OBP_RELATIVE_ERROR[obp_best]:.3f})"
                     + (f"; {OBP_NAMES[ranked[0][1]]} minus the no-OPE row, paired over resamples: {m:+.3f} "
                        f"[{lo:+.3f}, {hi:+.3f}]"
                        + (": **not distinguishable from the logging CTR row, which does no OPE**." if same else ".")))
    for t in targets:
        mine = [r for r in rows if r["target"] == t]
        m, lo, hi = paired(t, "dm")
        gap = np.array([abs(r["values"]["dm"] - r["values"]["naive"]) / r["values"]["naive"] for r in mine])
        verdict = ("**indistinguishable from the no-OPE constant**" if lo <= 0 <= hi
                   else ("lower than the no-OPE row's" if hi < 0 else "higher than the no-OPE row's"))
        lines.append(f"- {t}: DM's relative error is {verdict} (DM minus no-OPE, paired over resamples: "
                     f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]); DM's estimate differs from the resample's own click rate by "
                     f"a relative {gap.mean():.2g} on average, at most {gap.max():.2g}.")
    lines.append("")
    if "bts zozotown prior" in targets:
        zoz = [r for r in rows if r["target"] == "bts zozotown prior"]
        ours = {e: np.mean([r["relative_error"][e] for r in zoz]) for e in ("ips", "snips")}
        lines += [(f"Protocol check: with obp's evaluation policy, the estimators that read no reward model give "
                   f"IPW {ours['ips']:.3f} and SNIPW {ours['snips']:.3f}"),
                  (f"against obp's {OBP_RELATIVE_ERROR['ips']:.3f} and {OBP_RELATIVE_ERROR['snips']:.3f}. The "
                   "model-based rows use another reward model than obp's (one pooled, regularized model here)."), ""]
    for t in targets:
        mine = [r for r in rows if r["target"] == t]
        naive = np.array([r["relative_error"]["naive"] for r in mine])
        lines.append(f"- {t}: IPS weights up to {np.mean([r['ips_max_weight'] for r in mine]):.1f} (mean over "
                     f"resamples), effective sample size {np.mean([r['ips_ess'] for r in mine]):,.0f}"
                     + (f" of {r0['random_rows']:,}." if counted else "."))
    naive = [r["values"]["naive"] for r in rows]
    worse = {t: sum(np.mean([r["relative_error"][e] for r in rows if r["target"] == t])
                    > np.mean([r["relative_error"]["naive"] for r in rows if r["target"] == t]) for e in OBD_ESTIMATORS)
             for t in targets}
    lines += [
        "",
        "Read with care: the *logging CTR* row does no off-policy evaluation at all — it reports the resampled",
        f"random log's own click rate (mean {np.mean(naive):.4f} over the resamples) for any policy. Its mean relative",
        "error is below that of " + "; ".join(f"{n} of the {len(OBD_ESTIMATORS)} OPE estimators for {t}"
                                               for t, n in worse.items()) + ";",
        "the bracketed paired differences say whether the best estimator did better than that row.",
        "",
    ]
    return lines


def render_online(tune: list[dict], online: list[dict]) -> list[str]:
    if not online:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(r["family"] for r in online))
    per = {f: sorted((r for r in online if r["family"] == f), key=lambda r: r["seed"]) for f in families}
    seeds = sorted({r["seed"] for r in online})
    sim = online[0].get("simulator")  # rows measured before it was recorded lack it
    lines = [
        "## Artwork simulator, online: learning while serving",
        "",
        "MovieLens-100K"
        + (f": {sim['titles']:,} titles with genres, {sim['members']:,} members, {sim['artworks']} artworks per title"
           if sim else " titles and members")
        + f"; {online[0]['rounds']:,} requests per",
        f"stream, {len(seeds)} streams (seeds {seeds[0]}..{seeds[-1]}). Every policy meets the same requests and the same",
        "per-round uniform draws that decide a play (common random numbers), so per-seed differences are",
        "paired. Reward = expected plays (the true play probability of the artwork shown, summed over rounds;",
        "realized plays in brackets); regret against the best artwork for each member, title and hour. All",
        "linear learners and VW see the same features: member context ⊗ artwork one-hot (VW: `-q ca`).",
        "",
        "Test-stream rows (the table and plot below): run "
        + ", ".join(f"`{run}`" for run in dict.fromkeys(r["run_id"] for r in online))
        + "; development-stream rows (the tuning tables): run "
        + (", ".join(f"`{run}`" for run in dict.fromkeys(r["run_id"] for r in tune)) or "none") + ".",
        "",
        *_tuning_text(tune, families),
        "",
        ("| policy | setting | expected plays, mean [95% CI] over seeds | median | realized plays | "
         "regret, mean [95% CI] | play rate, last 1,000 rounds | s per 1,000 rounds (load per core) |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in sorted(families, key=lambda f: -np.mean([r["expected_reward"] for r in per[f]])):
        rs = per[f]
        reward = [r["expected_reward"] for r in rs]
        m, lo, hi = _ci(reward)
        rm, rlo, rhi = _ci([r["regret"] for r in rs])
        setting = ", ".join(f"{k}={v}" for k, v in rs[0]["params"].items()) or "—"
        loads = [load_per_core(r) for r in rs]
        load_text = f"{np.mean(loads):.2f}" if None not in loads else "not recorded"
        lines.append(f"| {f} | {setting} | {m:,.1f} [{lo:,.1f}, {hi:,.1f}] | {np.median(reward):,.1f} | "
                     f"{np.mean([r['reward'] for r in rs]):,.1f} | {rm:,.1f} [{rlo:,.1f}, {rhi:,.1f}] | "
                     f"{np.mean([r['last_1000_mean'] for r in rs]):.4f} | "
                     f"{1000 * np.mean([r['seconds'] / r['rounds'] for r in rs]):.2f} ({load_text}) |")
    loads = [load_per_core(r) for r in online]
    known = [v for v in loads if v is not None]
    if known:
        lines += ["", (f"Timing: wall seconds per 1,000 rounds, one stream at a time; in brackets the 1-minute load "
                       f"average per core while those rows ran (mean of start and end readings), "
                       f"{min(known):.2f}–{max(known):.2f} over these rows.")
                  + (" Above 0.5 per core other work shared the CPUs, so the timings include that contention and "
                     "compare policies only roughly." if max(known) > 0.5 else "")]
    else:
        lines += ["", ("Timing: wall seconds per 1,000 rounds; these rows recorded no load, so how busy the machine "
                       "was is not known.")]
    oracle = np.mean([r["oracle_reward"] for r in per[families[0]]])
    lines += ["", f"The per-request best artwork would earn {oracle:,.1f} expected plays.", ""]

    from marquee.evaluation.statistics import paired_comparison

    dev = {f: max(t["expected_reward"] for t in trials) for f, trials in tune_scores(tune).items() if f in per}
    if any(f in dev for f in OURS):  # chosen on the development streams, not on the test streams it is judged on
        ours = max((f for f in OURS if f in dev), key=dev.get)
        chosen = "our best policy on the development streams"
    else:
        ours = max((f for f in OURS if f in per), key=lambda f: np.mean([r["expected_reward"] for r in per[f]]))
        chosen = "our best policy on these test streams"
    lines += [f"Paired over the {len(seeds)} test streams, {chosen} ({ours}) against each VW learner (goal of issue 6:",
              "at or above VW squarecb):", ""]
    for vw in [f for f in families if f.startswith("VW")]:
        a = np.array([r["expected_reward"] for r in per[vw]])
        b = np.array([r["expected_reward"] for r in per[ours]])
        res = paired_comparison(a, b, n_boot=2000)
        lines.append(f"- {ours} − {vw}: {res.diff:+.1f} expected plays [{res.diff_low:+.1f}, {res.diff_high:+.1f}], "
                     f"{res.relative:+.1%}; better on {(b > a).sum()} of {len(a)} streams (paired t p = {res.p_ttest:.3g}).")
    lines += ["", "![cumulative reward and regret](online_reward.png)", ""]

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.asarray(per[families[0]][0]["checkpoints"])
    for f in families:
        cum = np.array([r["cumulative_expected"] for r in per[f]])  # (seeds, checkpoints)
        reg = np.array([r["cumulative_regret"] for r in per[f]])
        style = "-" if f in OURS else ("--" if f.startswith("VW") else ":")
        for ax, values in ((axes[0], cum / x), (axes[1], reg)):
            mean = values.mean(axis=0)
            line, = ax.plot(x, mean, style, label=f)
            ax.fill_between(x, np.percentile(values, 10, axis=0), np.percentile(values, 90, axis=0),
                            color=line.get_color(), alpha=0.12)
    axes[0].set(xlabel="round", ylabel="average play probability so far", title="Reward (mean; band: 10-90% of seeds)")
    axes[1].set(xlabel="round", ylabel="cumulative expected regret", title="Regret")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT_DIR / "online_reward.png", dpi=120)
    plt.close(fig)

    lines += _tuning_tables(tune, per)
    return lines


def _edges(trial: dict) -> list[str]:
    """Searched values within EDGE of their range's width (on the search scale) of a bound."""
    out = []
    for name, (low, high, log) in (trial["space"] or {}).items():
        value = trial["search"][name]
        scale = np.log if log else (lambda v: v)
        at = (scale(value) - scale(low)) / (scale(high) - scale(low))
        if at < EDGE or at > 1 - EDGE:
            out.append(f"{name} {'low' if at < EDGE else 'high'}")
    return out


def _range(space: dict) -> str:
    return ", ".join(f"{name} {low:g}–{high:g}{' (log)' if log else ''}" for name, (low, high, log) in space.items())


def _tuning_text(tune: list[dict], families: list[str]) -> list[str]:
    scores = tune_scores(tune)
    seeds = sorted({r["seed"] for r in tune})
    if not tune:
        return ["No tuning rows: the settings were not tuned in this run."]
    if "sampler" not in tune[0]:  # rows of the earlier hand grids
        return [(f"Tuning: every family's hand grid ran on development stream(s) {', '.join(map(str, seeds))} and "
                 "the best setting by expected reward runs on the test streams; VW squarecb also runs at its defaults.")]
    counts = {f: len(t) for f, t in scores.items()}
    budget = (f"the same budget for every family, {next(iter(counts.values()))} trials each"
              if len(set(counts.values())) == 1 else
              "unequal budgets (" + ", ".join(f"{f} {n}" for f, n in counts.items()) + " trials)")
    untuned = [f for f in families if f not in scores]
    return [
        (f"Tuning (run `{tune[0]['run_id']}`): {budget} of a TPE search ({tune[0]['sampler']}) over the ranges "
         "in the tuning table below, each trial scored by its mean expected plays over the development streams "
         f"(seeds {', '.join(map(str, seeds))}; never a test stream, {tune[0]['rounds']:,} rounds each). The best "
         f"trial of each family runs on the test streams. Not tuned: {', '.join(untuned)}."),
    ]


def _tuning_tables(tune: list[dict], per: dict[str, list[dict]]) -> list[str]:
    scores = tune_scores(tune)
    if not scores:
        return []
    seeds = sorted({r["seed"] for r in tune})
    lines = []
    if "sampler" in tune[0]:
        lines += [(f"Tuning summary (development streams {', '.join(map(str, seeds))}; a chosen value is flagged "
                   f"when it lies within {EDGE:.0%} of its range's width, on the search scale, of a bound):"), "",
                  ("| policy | range searched | trials | chosen (trial) | expected plays, development mean | "
                   "expected plays, test mean | chosen value at an edge |"),
                  "|---|---|---|---|---|---|---|"]
        for family, trials in scores.items():
            best = max(trials, key=lambda t: t["expected_reward"])
            setting = ", ".join(f"{k}={v}" for k, v in best["params"].items())
            edges = _edges(best)
            test = (f"{np.mean([r['expected_reward'] for r in per[family]]):,.1f}"
                    if family in per and per[family][0]["params"] == best["params"] else "not run")
            lines.append(f"| {family} | {_range(best['space'])} | {len(trials)} | {setting} ({best['trial']}) | "
                         f"{best['expected_reward']:,.1f} | {test} | "
                         f"{('**yes: ' + ', '.join(edges) + '**') if edges else 'no'} |")
        lines.append("")
        for family, trials in scores.items():
            best = max(trials, key=lambda t: t["expected_reward"])
            if not _edges(best):
                continue
            ties = [t for t in trials if t is not best and t["expected_reward"] == best["expected_reward"]]
            lines.append(f"- **{family}**: the chosen value sits at the {', '.join(_edges(best))} edge of its range, "
                         "so the range, not only the data, may have limited the choice"
                         + (f"; {len(ties)} other trials scored exactly the same on both development streams ("
                            + ", ".join(", ".join(f"{k}={v}" for k, v in t["params"].items()) for t in ties)
                            + ")" if ties else "")
                         + ".")
        if not any(_edges(max(t, key=lambda t: t["expected_reward"])) for t in scores.values()):
            lines.append("No chosen value sits at an edge of its range.")
        lines.append("")
    lines += ["Every trial, in the order tried (expected plays per development stream and their mean; ◀ = chosen):",
              "", "| policy | trial | setting | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | regret, mean |",
              "|---|---|---|" + "---|" * len(seeds) + "---|---|"]
    for family, trials in scores.items():
        best = max(trials, key=lambda t: t["expected_reward"])
        for t in trials:
            setting = ", ".join(f"{k}={v}" for k, v in t["params"].items())
            lines.append(f"| {family} | {t['trial'] if 'sampler' in tune[0] else '—'} | {setting} | "
                         + " | ".join(f"{t['per_seed'][s]:,.1f}" for s in seeds)
                         + f" | {t['expected_reward']:,.1f}{' ◀' if t is best else ''} | {t['regret']:,.1f} |")
    lines.append("")
    return lines


def render_offline(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loggers = list(dict.fromkeys(r["logger"] for r in rows))
    targets = list(rows[0]["truth"])
    lines = [
        "## Artwork simulator, offline: estimate against truth",
        "",
        f"{len({r['log'] for r in rows})} logs of {rows[0]['rows']:,} impressions per logging policy (uniform; ε-greedy with",
        "ε = 0.2 around LinUCB trained on a 2,000-row pilot; the biased production policy, mostly the title's key",
        "art whoever the member). Targets were trained on a separate uniform log of 5,000 rows. True values come from the",
        "simulator (200,000 fresh requests, exact over artworks). Reward model: logistic regression on the cross",
        "features, cross-fitted on 3 folds — misspecified on purpose (titles' and artworks' own appeal are not in",
        "its features). Cells: mean |estimate − true value| over the logs [95% CI]; share of logs whose 95% bootstrap",
        "CI covered the truth in brackets.",
        "",
        "True values: " + "; ".join(f"{t} {v:.4f}" for t, v in rows[0]["truth"].items()) + ".",
        "",
        "Every row of this section comes from run "
        + ", ".join(f"`{run}`" for run in dict.fromkeys(r["run_id"] for r in rows))
        + "; its targets and loggers are fixed settings, not the online part's tuned ones.",
        "",
    ]
    summary, coverage = {}, {}
    for logger in loggers:
        mine = [r for r in rows if r["logger"] == logger]
        lines += [f"### Logged by {logger} (logging policy's value ≈ {np.mean([r['logger_value'] for r in mine]):.4f})",
                  "", "| estimator | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
        for e in ALL_ESTIMATORS:
            cells = []
            for t in targets:
                errs = [abs(r["results"][t][e]["value"] - r["truth"][t]) for r in mine]
                cover = np.mean([r["results"][t][e]["ci_low"] <= r["truth"][t] <= r["results"][t][e]["ci_high"]
                                 for r in mine])
                m, lo, hi = _ci(errs)
                summary[(logger, e)] = summary.get((logger, e), []) + [m]
                coverage.setdefault(e, []).append(cover)
                cells.append(f"{m:.4f} [{lo:.4f}, {hi:.4f}] ({cover:.0%})")
            lines.append(f"| {OBP_NAMES[e]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Replay is unbiased only under the uniform logger; under the others it values the target on the rows",
        "where the logger happened to agree with it, which the logger chose. DM is only as good as its reward",
        "model, and its interval resamples rows with the reward model held fixed, so it omits the model's own",
        "error. Share of logs whose 95% interval covered the truth, lowest–highest over loggers and targets: "
        + ", ".join(f"{OBP_NAMES[e]} {min(c):.0%}–{max(c):.0%}" for e, c in coverage.items()) + ".",
        "",
        "![mean absolute error per estimator](offline_error.png)",
        "",
    ]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(loggers)
    for i, logger in enumerate(loggers):
        ax.bar(np.arange(len(ALL_ESTIMATORS)) + i * width, [np.mean(summary[(logger, e)]) for e in ALL_ESTIMATORS],
               width, label=f"logged by {logger}")
    ax.set_xticks(np.arange(len(ALL_ESTIMATORS)) + width * (len(loggers) - 1) / 2,
                  [OBP_NAMES[e] for e in ALL_ESTIMATORS])
    ax.set(ylabel="mean |estimate − truth|, averaged over targets", title="Offline estimation error in the simulator")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT_DIR / "offline_error.png", dpi=120)
    plt.close(fig)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--bts-prior", type=Path, default=Path(__file__).resolve().parents[1] / "experiments"
                        / "artwork_bandit" / "obp_prior_bts.yaml",
                        help="obp's obp/policy/conf/prior_bts.yaml (a copy with its licence note is the default)")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue a run that was cut short")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("MARQUEE_DATA_DIR", REPO.parent / "shared" / "data"))
    os.environ.setdefault("MARQUEE_DATA_DIR", str(data_dir))
    if not args.render_only:
        import torch

        torch.set_num_threads(1)
        from marquee.run_record import code_version

        _CODE.update(code_version())  # before anything runs: the commit of the code this process imports
        run_id = args.resume or time.strftime("%Y%m%d-%H%M%S")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        print(f"run {run_id}")
        if "obd" in args.parts:
            run_obd(run_id, data_dir, args.bts_prior)
        sim = simulator() if set(args.parts) & {"tune", "online", "offline"} else None
        if "tune" in args.parts:
            run_tune(run_id, sim)
        if "online" in args.parts:
            run_online_part(run_id, sim)
        if "offline" in args.parts:
            run_offline(run_id, sim)
    render()


if __name__ == "__main__":
    main()
