"""Write a finished run's serving bundle: networks, item vectors and index, vocabularies, spec, policy, manifest.

Layout (``<stage>`` is ``ranker`` for SASRec/BERT4Rec, ``retriever`` for a two-tower; a cascade has both)::

    manifest.json                 format, versions (and those the loader needs), source run, resolved config,
                                  data fingerprint, metrics, how the stages compose, sha256 of every other file
    features.json                 every network's inputs (name, dtype, axes, meaning), context ids, event names
    <stage>/encoder.onnx|.onnx.data|.pt2   history + request context -> (B, d) state
    <stage>/scorer.onnx|.onnx.data|.pt2    state, candidate ids (B, C) -> (B, C) scores
    <stage>/item_vectors.npy      (n_items + 1, d) float32 item table the scorer dots with (row 0 padding)
    retriever/index/              index.faiss, index_ids.npy, index.json: the run's FAISS index
    vocab/                        users, items, genres (Parquet: raw_id, id), events.json, item_meta.parquet
    policy/<file>                 the artwork policy's parameters, when ``policy=`` names them

Everything is written into a hidden folder beside ``out`` and renamed onto it at the end, so a failed
export leaves no bundle (and no half of one) behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from marquee.checkpoint import load_system
from marquee.data.atomic import write_json
from marquee.data.catalog import Catalog
from marquee.errors import ConfigError
from marquee.export.manifest import FORMAT, MANIFEST, ORT_FOR_OPSET, file_table
from marquee.export.networks import StageNetworks, example_inputs, system_stages
from marquee.export.source import RunSource, resolve_run
from marquee.export.trace import example_sizes, export_network
from marquee.retrieval.two_tower import TwoTower
from marquee.run_record import code_version
from marquee.serving.artwork import PolicyArtwork, PolicyFileError, read_policy

VOCAB_FILES = ("users.parquet", "items.parquet")  # required; genres, events and item metadata come when the run has them


@contextlib.contextmanager
def staging_directory(out: Path) -> Iterator[Path]:
    """A hidden empty folder beside ``out``, renamed onto ``out`` if the block succeeds and removed either way."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it owner-only
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def library_versions() -> dict[str, str]:
    """Versions of what wrote the bundle (the loader checks its own against ``requires``)."""
    import platform

    import faiss
    import onnx
    import onnxruntime
    import onnxscript
    import pandas
    import pyarrow

    return {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxscript": onnxscript.__version__, "onnxruntime": onnxruntime.__version__, "faiss": faiss.__version__,
            "numpy": np.__version__, "pandas": pandas.__version__, "pyarrow": pyarrow.__version__}


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def write_stage(directory: Path, stage: StageNetworks, catalog: Catalog) -> dict[str, Any]:
    """One stage's networks, item table and (for a retriever) index into ``directory``; its manifest entry."""
    directory.mkdir(parents=True)
    entry: dict[str, Any] = {"kind": type(stage.model).__name__, "max_len": stage.max_len,
                             "dim": int(stage.item_table.shape[1])}
    for name, module, inputs, output in (("encoder", stage.encoder, stage.encoder_inputs, "state"),
                                         ("scorer", stage.scorer, stage.scorer_inputs, "scores")):
        batch, length, candidates = example_sizes(stage.max_len, inputs)
        example = example_inputs(catalog, inputs, batch, length, candidates=candidates)
        smallest = example_inputs(catalog, inputs, 1, 1, seed=1, candidates=1)  # the sizes a trace may specialize
        written = export_network(module, inputs, example, stage.max_len, directory, name, output, (smallest,))
        entry[name] = {k: f"{directory.name}/{v}" if k in ("onnx", "onnx_data", "pt2") and v else v
                       for k, v in written.items()}
    np.save(directory / "item_vectors.npy", stage.item_table.cpu().numpy().astype(np.float32))
    entry["item_vectors"] = f"{directory.name}/item_vectors.npy"
    if isinstance(stage.model, TwoTower):
        index = stage.model.index or stage.model.build_index()
        index.save(directory / "index")
        entry["index"] = {"directory": f"{directory.name}/index", "kind": index.kind}
    return entry


def copy_vocabularies(run: RunSource, directory: Path, catalog: Catalog) -> list[str]:
    """The run's vocabularies and item metadata, checked against the model's catalog; the names copied."""
    vocab = run.path / "vocab"
    missing = [f for f in VOCAB_FILES if not (vocab / f).is_file()]
    if missing:
        raise ConfigError("run_dir", f"'{run.path}' has no vocabularies ({', '.join(f'vocab/{m}' for m in missing)}); "
                          "a service could not map raw ids")
    items = pq.read_metadata(vocab / "items.parquet").num_rows
    if items != catalog.n_items:
        raise ConfigError("run_dir", f"'{vocab / 'items.parquet'}' has {items} items and the model {catalog.n_items}")
    directory.mkdir()
    copied = sorted(p.name for p in vocab.iterdir() if p.is_file() and not p.name.startswith("."))
    for name in copied:
        shutil.copyfile(vocab / name, directory / name)
    return copied


def check_policy(policy: str | Path | None) -> Path | None:
    """The artwork policy file (``marquee-artwork-policy`` JSON, as ``marquee.bandit save_policies=true`` writes
    it), checked as the service will check it; None without one."""
    if policy is None:
        return None
    path = Path(policy).expanduser().resolve()
    if not path.is_file():
        raise ConfigError("policy", f"'{path}' is not a file (give a policy from <bandit run>/policies/<name>.json)")
    try:
        PolicyArtwork(read_policy(path), where=str(path))
    except PolicyFileError as err:
        raise ConfigError("policy", str(err)) from err
    return path


def copy_policy(path: Path | None, directory: Path) -> dict[str, Any]:
    """Copy the checked policy file into ``directory``; the manifest's entry (which says so when there is none)."""
    if path is None:
        return {"file": None, "note": "no artwork policy was given (policy=PATH): the service shows synthetic "
                                      "artwork variants, chosen uniformly"}
    directory.mkdir()
    shutil.copyfile(path, directory / path.name)
    return {"file": f"{directory.name}/{path.name}", "source": str(path)}


def feature_spec(catalog: Catalog, stages: dict[str, StageNetworks]) -> dict[str, Any]:
    """What a service must feed each network, and how raw context becomes ids."""
    return {"padding_id": 0, "event_names": list(catalog.event_names), "devices": list(catalog.context.devices),
            "context": {"time": catalog.context.time, "features": list(catalog.context.features)},
            "stages": {name: stage.spec() for name, stage in stages.items()}}


def export_run(run_dir: str | Path, out: str | Path, policy: str | Path | None = None, seed: int | None = None) -> Path:
    """Write the bundle of ``run_dir`` (a run, a pipeline run or a study) to the new folder ``out``; return it."""
    out = Path(out).expanduser().resolve()
    if out.exists():
        raise ConfigError("out", f"'{out}' exists; a bundle is never written over: choose a new folder")
    policy_file = check_policy(policy)
    run = resolve_run(run_dir, seed)
    system, payload = load_system(run.checkpoint)
    recorded = run.record.get("data", {}).get("fingerprint")
    if recorded != payload.get("data_fingerprint"):
        raise ConfigError("run_dir", f"'{run.path}': run.json's data fingerprint does not match the saved model's")
    stages, composition = system_stages(system)
    versions = library_versions()
    with staging_directory(out) as tmp:
        entries = {name: write_stage(tmp / name, stage, system.catalog) for name, stage in stages.items()}
        copy_vocabularies(run, tmp / "vocab", system.catalog)
        policy_entry = copy_policy(policy_file, tmp / "policy")
        write_json(feature_spec(system.catalog, stages), tmp / "features.json", sort_keys=False)
        opset = max(e[n]["opset"] for e in entries.values() for n in ("encoder", "scorer"))
        requires = {"onnxruntime": ORT_FOR_OPSET.get(opset, _major_minor(versions["onnxruntime"]))}
        if any("index" in e for e in entries.values()):
            requires["faiss"] = _major_minor(versions["faiss"])  # index files read by this FAISS or newer
        manifest = {
            "format": FORMAT, "created": datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
            "marquee": code_version(), "versions": versions, "requires": requires, "onnx_opset": opset,
            "source": {"run_dir": str(run.path), "study": run.study, "command": run.record.get("command"),
                       "trained_code": run.record.get("code")},
            "config": run.record.get("config"), "data": run.record.get("data"), "metrics": run.metrics,
            "system": composition, "stages": entries, "features": "features.json", "vocab": "vocab",
            "policy": policy_entry, "files": file_table(tmp),
        }
        write_json(manifest, tmp / MANIFEST, sort_keys=False)
    return out
