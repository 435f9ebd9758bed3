"""Serving bundles: a trained cascade exported, its networks held against PyTorch, its rankings against the
evaluator's, and the loader's refusals (changed files, versions) and torch-free imports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from marquee import train
from marquee.checkpoint import load_system
from marquee.config_dir import CONFIG_DIR
from marquee.data.evaluation_data import EvaluationData
from marquee.data.pipeline import prepare_split
from marquee.errors import ConfigError
from marquee.evaluation.ranking import catalog_scores
from marquee.export import writer
from marquee.export.__main__ import main as export_main
from marquee.export.bundle import load_bundle
from marquee.export.manifest import MANIFEST, BundleError, sha256
from marquee.export.networks import Input, example_inputs, stage_networks, system_stages
from marquee.export.source import resolve_run
from marquee.export.trace import check_onnx, example_sizes, export_network
from marquee.models.baselines import EASE
from marquee.models.sasrec import SASRec
from tests.helpers import minimal_policy, write_policy

# 1,100 synthetic members (1,099 evaluated on test): a two-tower retriever (flat index: exact search) and a SASRec
# ranker reading every side input, each trained one epoch; the stages read histories of different lengths
CASCADE = (
    "experiment=cascade_ml100k", "data=synthetic", "data.source.n_users=1100", "data.source.n_items=150",
    "data.source.n_interactions=20000", "trainer.max_epochs=1", "trainer.accelerator=cpu", "logger=csv",
    "callbacks=none", "+trainer.enable_progress_bar=false", "evaluation.n_boot=10", "stages=[val,test]",
    "evaluation.ks=[10]", "evaluation.progress=false", "pipeline.system.n_candidates=30", "torch_threads=1",
    "model.max_len=12", "model.hidden=16", "model.layers=2", "model.heads=2", "model.inner=32",
    "model.side_inputs=[genres,event,value,time,device]", "datamodule.windows=last", "datamodule.batch_size=256",
    "pipeline.stages.retriever.model.dim=16", "pipeline.stages.retriever.model.hidden=32",
    "pipeline.stages.retriever.model.max_len=10", "pipeline.stages.retriever.model.index.kind=flat",
    "pipeline.stages.retriever.trainer.max_epochs=1", "pipeline.stages.retriever.datamodule.windows=last",
    "pipeline.stages.retriever.datamodule.batch_size=256")
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cascade") / "run"
    cache = tmp_path_factory.getbasetemp() / "cache"  # module fixtures run before the autouse env fixture
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*CASCADE, f"paths.output_dir={out}", f"paths.cache_dir={cache}"])
    train.run(cfg)
    return out


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_policy(tmp_path_factory.mktemp("policy") / "linucb.json", minimal_policy("linear"))


@pytest.fixture(scope="module")
def bundle_dir(run_dir: Path, policy_file: Path) -> Path:
    out = run_dir.parent / "bundle"
    assert export_main([f"run_dir={run_dir}", f"out={out}", f"policy={policy_file}"]) == out
    return out


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path):
    return load_bundle(bundle_dir, threads=1)


@pytest.fixture(scope="module")
def system(run_dir: Path):
    return load_system(run_dir / "checkpoints" / "model.pt")[0].eval()


def _copy(bundle_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def _all_inputs(bundle, catalog, batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Random requests carrying every input of every stage (and ``user``, which the two-tower's forward reads)."""
    specs = {i["name"]: Input(i["name"], i["dtype"], tuple(i["axes"]))
             for stage in bundle.features["stages"].values() for i in stage["encoder"]["inputs"]}
    specs.setdefault("user", Input("user", "int64", ("batch",)))
    return example_inputs(catalog, list(specs.values()), batch, length, seed)


def test_the_bundle_holds_every_part_and_its_manifest_vouches_for_each_file(bundle_dir, run_dir, bundle):
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    record = json.loads((run_dir / "run.json").read_text())
    assert manifest["format"] == 1 and manifest["system"] == {"kind": "cascade", "retriever": "retriever",
                                                               "ranker": "ranker", "n_candidates": 30}
    assert manifest["config"] == record["config"] and manifest["data"]["fingerprint"] == record["data"]["fingerprint"]
    assert manifest["metrics"] == json.loads((run_dir / "metrics.json").read_text())
    assert {"torch", "onnx", "onnxscript", "onnxruntime", "faiss", "numpy"} <= set(manifest["versions"])
    assert manifest["marquee"]["marquee"] and set(manifest["requires"]) == {"onnxruntime", "faiss"}
    on_disk = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()} - {MANIFEST}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert sha256(bundle_dir / name) == entry["sha256"], name
    for stage in ("retriever", "ranker"):
        for network in ("encoder", "scorer"):
            for suffix in (".onnx", ".onnx.data", ".pt2"):
                assert f"{stage}/{network}{suffix}" in on_disk  # the weights beside the graph are covered too
        assert f"{stage}/item_vectors.npy" in on_disk
    assert {"retriever/index/index.faiss", "vocab/items.parquet", "vocab/users.parquet", "vocab/item_meta.parquet",
            "features.json", "policy/linucb.json"} <= on_disk
    ranker_inputs = [i["name"] for i in bundle.features["stages"]["ranker"]["encoder"]["inputs"]]
    assert ranker_inputs == ["items", "event", "value", "hour", "dow", "gap", "device", "target_hour", "target_dow",
                             "target_device"]
    assert bundle.policy == minimal_policy("linear")
    # ids and the metadata a row shows
    raw = bundle.items.raw([3, 1])
    np.testing.assert_array_equal(bundle.items.ids(raw), [3, 1])
    assert bundle.items.ids(["no such title"])[0] == 0
    rows = bundle.item_metadata(np.array([3, 1]))
    assert list(rows["id"]) == [3, 1] and {"title", "genres", "raw_id"} <= set(rows.columns)


@pytest.mark.parametrize("stage", ["ranker", "retriever"])
def test_onnx_and_pt2_scores_match_pytorch_at_every_batch_size_and_history_length(bundle, bundle_dir, system, stage):
    model = getattr(system, stage)
    encode = model.encode if stage == "ranker" else model.user_vectors
    encoder = torch.export.load(bundle_dir / stage / "encoder.pt2").module()
    scorer = torch.export.load(bundle_dir / stage / "scorer.pt2").module()
    names = [i["name"] for i in bundle.features["stages"][stage]["encoder"]["inputs"]]
    for batch in (1, 3, 17):
        for length in (1, 5, model.max_len):
            inputs = _all_inputs(bundle, system.catalog, batch, length, seed=batch * 100 + length)
            candidates = torch.randint(1, model.n_items + 1, (batch, 9), generator=torch.Generator().manual_seed(batch))
            with torch.inference_mode():
                state, scores = encode(inputs), model.score(inputs, candidates)
                pt2_state = encoder({k: inputs[k] for k in names})
                pt2_scores = scorer({"state": pt2_state, "candidates": candidates})
            arrays = {k: v.numpy() for k, v in inputs.items()}
            onnx_state = bundle.encode(arrays, stage)
            onnx_scores = bundle.score(onnx_state, candidates.numpy(), stage)
            where = f"{stage} batch {batch} length {length}"
            np.testing.assert_allclose(onnx_state, state.numpy(), **TOLERANCE, err_msg=where)
            np.testing.assert_allclose(pt2_state.numpy(), state.numpy(), **TOLERANCE, err_msg=where)
            np.testing.assert_allclose(onnx_scores, scores.numpy(), **TOLERANCE, err_msg=where)
            np.testing.assert_allclose(pt2_scores.numpy(), scores.numpy(), **TOLERANCE, err_msg=where)
    # a history longer than the stage reads is cut to its latest events, as the model cuts it
    inputs = _all_inputs(bundle, system.catalog, 4, model.max_len + 6, seed=7)
    with torch.inference_mode():
        state = encode(inputs)
    np.testing.assert_allclose(bundle.encode({k: v.numpy() for k, v in inputs.items()}, stage), state.numpy(),
                               **TOLERANCE)


def test_bert4rec_encoder_exports_with_dynamic_sizes(system, tmp_path):
    """The bidirectional variant (mask token, no causal mask, its own head) through the same exporter."""
    torch.manual_seed(0)
    model = SASRec(system.catalog, max_len=8, hidden=16, layers=1, heads=2, inner=32, bidirectional=True,
                   side_inputs=["time", "device"]).eval()
    stage = stage_networks("ranker", model)
    assert [i.name for i in stage.encoder_inputs] == ["items", "hour", "dow", "device", "target_hour", "target_dow",
                                                      "target_device"]
    sizes = example_sizes(8, stage.encoder_inputs)
    export_network(stage.encoder, stage.encoder_inputs, example_inputs(system.catalog, stage.encoder_inputs,
                                                                       sizes[0], sizes[1]), 8, tmp_path, "encoder",
                   "state")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    program = torch.export.load(tmp_path / "encoder.pt2").module()
    for batch, length in ((1, 1), (3, 5), (17, 8)):
        inputs = example_inputs(system.catalog, stage.encoder_inputs, batch, length, seed=length)
        with torch.inference_mode():
            state = model.encode(inputs).numpy()
            np.testing.assert_allclose(program(inputs).numpy(), state, **TOLERANCE)
        np.testing.assert_allclose(session.run(None, {k: v.numpy() for k, v in inputs.items()})[0], state, **TOLERANCE)
    # the exporter's own check refuses a graph that does not reproduce its module
    other = SASRec(system.catalog, max_len=8, hidden=16, layers=1, heads=2, inner=32, bidirectional=True,
                   side_inputs=["time", "device"]).eval()
    with pytest.raises(RuntimeError, match="encoder.onnx does not reproduce PyTorch"):
        check_onnx(stage_networks("ranker", other).encoder, tmp_path / "encoder.onnx", [inputs])


@pytest.mark.parametrize("part", ["cascade", "ranker", "retriever"])
def test_the_bundles_top10_equals_the_evaluators_for_every_test_user(bundle, run_dir, system, part):
    """1,099 synthetic members: the cascade through the (flat, exact) FAISS index, each stage over the full catalog.

    Equal lists, up to ties: at every rank the bundle's item scores what the framework's item scores, under the
    framework's own scores (to 1e-6), so only items tied within float rounding (ONNX against PyTorch: ~1e-7 here)
    could trade places; none did when this was written.
    """
    config = OmegaConf.create(json.loads((run_dir / "run.json").read_text())["config"])
    split = prepare_split(config.data)
    data = EvaluationData(split, max_len=system.max_len, batch_size=512)
    seen = data.seen("test")
    model = system if part == "cascade" else getattr(system, part)
    users = 0
    for batch in data.eval_dataloader("test"):
        batch = {**batch, "exclude": seen.padded(batch["user"])}  # as the evaluator hands a batch to a model
        with torch.inference_mode():
            scores = catalog_scores(model, batch, seen)  # the evaluator's scores: seen items and padding at -inf
        theirs = scores.topk(10, dim=1).indices.numpy()
        ours, our_scores = bundle.top_k({k: v.numpy() for k, v in batch.items()}, 10, exclude=batch["exclude"].numpy(),
                                        stage=None if part == "cascade" else part, exact=part != "cascade")
        assert np.isfinite(our_scores).all() and ours.shape == theirs.shape
        scores = scores.numpy()
        np.testing.assert_allclose(np.take_along_axis(scores, ours, 1), np.take_along_axis(scores, theirs, 1),
                                   rtol=0, atol=1e-6)
        users += len(ours)
    assert users >= 1000


@pytest.mark.parametrize("damage", ["flip a byte of the ranker's weights", "delete the item vocabulary",
                                    "add a file"])
def test_a_bundle_whose_files_do_not_match_the_manifest_is_refused_naming_the_file(bundle_dir, tmp_path, damage):
    copy = _copy(bundle_dir, tmp_path)
    if damage.startswith("flip"):
        path = copy / "ranker" / "encoder.onnx.data"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        expected = "file 'ranker/encoder.onnx.data' does not match its sha256"
    elif damage.startswith("delete"):
        (copy / "vocab" / "items.parquet").unlink()
        expected = "file 'vocab/items.parquet' is listed in manifest.json but missing"
    else:
        (copy / "retriever" / "extra.onnx").write_bytes(b"\x00")
        expected = "file 'retriever/extra.onnx' is not listed in manifest.json"
    with pytest.raises(BundleError, match=expected):
        load_bundle(copy)


@pytest.mark.parametrize(("change", "expected"), [
    ({"requires": {"onnxruntime": "99.0"}}, r"needs onnxruntime>=99.0, and this process has onnxruntime \d"),
    ({"format": 2}, "format 2, and this loader reads format 1 only; it was written by a newer marquee"),
])
def test_a_bundle_whose_versions_do_not_fit_is_refused(bundle_dir, tmp_path, change, expected):
    copy = _copy(bundle_dir, tmp_path)
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**manifest, **change}))
    with pytest.raises(BundleError, match=expected):
        load_bundle(copy)


def test_the_loader_serves_without_importing_torch_or_lightning(bundle_dir):
    script = f"""
import json, sys
import numpy as np
from marquee.export.bundle import load_bundle
bundle = load_bundle({str(bundle_dir)!r}, threads=1)
inputs = {{i["name"]: np.ones([2, 3][: len(i["axes"])], dtype=i["dtype"])
          for stage in bundle.features["stages"].values() for i in stage["encoder"]["inputs"]}}
items, _ = bundle.top_k(inputs, 5)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pytorch_lightning", "lightning", "hydra")
               or m.startswith(("marquee.models", "marquee.data", "marquee.training", "marquee.retrieval")))
print(json.dumps({{"items": items.tolist(), "heavy": heavy}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and len(result["items"]) == 2 and all(len(r) == 5 for r in result["items"])


def test_a_failing_export_leaves_no_bundle_and_no_temporary_folder(run_dir, tmp_path, monkeypatch):
    def crash(directory, stage, catalog):
        directory.mkdir()
        (directory / "encoder.onnx").write_bytes(b"half a graph")
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer, "write_stage", crash)
    out = tmp_path / "bundles" / "b"
    with pytest.raises(RuntimeError, match="disk full"):
        writer.export_run(run_dir, out)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_export_mistakes_end_in_one_line_before_any_work(run_dir, bundle_dir, tmp_path, capsys):
    cases = [([f"run_dir={tmp_path / 'nothing'}", f"out={tmp_path / 'b'}"], "run_dir: '"),
             ([f"run_dir={run_dir}", f"out={bundle_dir}"], "out: '"),
             ([f"run_dir={run_dir}", f"out={tmp_path / 'b'}", f"policy={run_dir / 'run.json'}x"], "policy: '"),
             ([f"run_dir={run_dir}", f"out={tmp_path / 'b'}", f"policy={run_dir / 'run.json'}"],
              "policy: " + str(run_dir / "run.json") + ": not a marquee-artwork-policy file"),
             ([f"run_dir={run_dir}", f"out={tmp_path / 'b'}",
               f"policy={write_policy(tmp_path / 'p.json', minimal_policy('linear') | {'epsilon': 0.0})}"],
              f"policy: {tmp_path / 'p.json'}: epsilon must be in (0, 1]"),
             ([f"run_dir={run_dir}"], "out: required"),
             ([f"run_dir={run_dir}", f"out={tmp_path / 'b'}", "seeds=1"], "seeds: unknown argument")]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as exit_info:
            export_main(argv)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith(f"error: {expected}"), argv
    assert not (tmp_path / "b").exists()


def test_a_single_model_exports_as_one_stage_and_ranks_the_whole_catalog(system, bundle, bundle_dir, tmp_path):
    stages, composition = system_stages(system.ranker)
    assert list(stages) == ["ranker"] and composition == {"kind": "single", "stage": "ranker"}
    # the cascade's bundle cut down to its ranker is the bundle of that ranker alone
    copy = _copy(bundle_dir, tmp_path)
    shutil.rmtree(copy / "retriever")
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["system"], manifest["stages"] = composition, {"ranker": manifest["stages"]["ranker"]}
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("retriever/")}
    (copy / MANIFEST).write_text(json.dumps(manifest))
    alone = load_bundle(copy, threads=1)
    inputs = {k: v.numpy() for k, v in _all_inputs(bundle, system.catalog, 5, 12, seed=3).items()}
    items, scores = alone.top_k(inputs, 10)
    expected_items, expected_scores = bundle.top_k(inputs, 10, stage="ranker")
    np.testing.assert_array_equal(items, expected_items)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)
    assert not (items[:, :, None] == inputs["items"][:, None, :]).any()  # a member's history is not shown again


def test_closed_form_baselines_are_refused_naming_what_exports(system):
    with pytest.raises(ConfigError, match="the ranker is EASE, which has no network to export; export serves SASRec"):
        system_stages(EASE(system.catalog))


def test_a_study_exports_its_frozen_winners_best_validation_seed(tmp_path):
    study = tmp_path / "study"
    (study / "study.json").parent.mkdir()
    (study / "study.json").write_text(json.dumps({"metric": "val/ndcg@10", "direction": "maximize"}))
    for seed, status, score in ((0, "finished", 0.10), (1, "finished", 0.12), (2, "failed", 0.50)):
        folder = study / "seeds" / f"seed_{seed}"
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "model.pt").write_bytes(b"")
        (folder / "run.json").write_text(json.dumps({"status": status}))
        (folder / "metrics.json").write_text(json.dumps({"val/ndcg@10": score, "test/ndcg@10": 1 - score}))
    chosen = resolve_run(study)
    assert chosen.path.name == "seed_1" and chosen.study["seed"] == 1
    assert resolve_run(study, seed=0).path.name == "seed_0"
    with pytest.raises(ConfigError, match="did not finish"):
        resolve_run(study, seed=2)
