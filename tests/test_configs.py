"""Every config composes and every ``_target_`` in it instantiates (data loading excluded)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from marquee.checkpoint import build, compose_system
from marquee.config_dir import CONFIG_DIR
from marquee.data.build import build_log
from marquee.data.catalog import Catalog
from marquee.data.splits import LeaveOneOut, Split
from marquee.models.base import Recommender
from tests.helpers import make_raw

# experiments that only load, split and summarize data: they configure no model
DATA_ONLY_EXPERIMENTS = {"ml100k_temporal", "video_games_data"}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


@pytest.fixture(scope="module")
def content_split() -> Split:
    """A small leave-one-out split whose log has what real ones have: genres, titles, years, user metadata, devices."""
    rows = [(u, i, 3600 * (10 * u + t)) for u in range(1, 7) for t, i in enumerate(range(u, u + 5))]
    raw = make_raw(rows, device=["tv" if k % 2 else "phone" for k in range(len(rows))])
    items = sorted({r[1] for r in rows})
    raw = dataclasses.replace(
        raw,
        item_meta=pd.DataFrame({"title": [f"Star Wars Part {i}" for i in items], "year": [1990 + i for i in items],
                                "genres": [["Action", "Drama"] if i % 2 else ["Comedy"] for i in items]}, index=items),
        user_meta=pd.DataFrame({"age": [20, 30, 40, 50, 60, 70], "gender": list("MFMFMF")}, index=range(1, 7)),
    )
    return LeaveOneOut()(build_log(raw))


@pytest.fixture(scope="module")
def catalog(content_split) -> Catalog:
    catalog = Catalog.from_split(content_split)
    assert catalog.n_genres and catalog.n_title_tokens and catalog.n_user_feature_values and catalog.context.devices
    return catalog


def test_config_dir_is_the_repository_configs_in_a_checkout():
    assert (Path(CONFIG_DIR) / "train.yaml").is_file()


@pytest.mark.parametrize("data", _options("data"))
def test_each_data_config_composes_with_each_split(data, tmp_path):
    for split in _options("data/split"):
        cfg = _compose([f"data={data}", f"data/split={split}", f"paths.output_dir={tmp_path}"])
        assert cfg.data.name and cfg.data.source._target_.startswith("marquee.data.loaders.")
        instantiate(cfg.data.split)
        instantiate(cfg.data.filters)
        instantiate(cfg.data.events)


@pytest.mark.parametrize("logger", _options("logger"))
def test_loggers_trainer_and_callbacks_instantiate(logger, tmp_path):
    cfg = _compose([f"logger={logger}", "trainer=cpu", f"paths.output_dir={tmp_path}"])
    OmegaConf.resolve(cfg.logger)
    loggers = [instantiate(c) for c in cfg.logger.values()]
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    assert len(trainer.loggers) == len(cfg.logger) >= 1
    assert any(type(c).__name__ == "ModelCheckpoint" for c in trainer.callbacks)
    if logger == "wandb":
        assert cfg.logger.wandb.offline is True


def _stage_models(cfg) -> dict[str, object]:
    """Each pipeline stage's model config: a stage's own, or the run's ``model`` for a stage without one."""
    return {name: stage.get("model") or cfg.get("model") for name, stage in cfg.pipeline.stages.items()}


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiments_compose_and_build_their_models(experiment, catalog, tmp_path):
    cfg = _compose([f"experiment={experiment}", f"paths.output_dir={tmp_path}"])
    assert cfg.task_name == experiment
    model_cfgs = _stage_models(cfg)
    if experiment in DATA_ONLY_EXPERIMENTS:
        assert cfg.get("model") is None and not any(model_cfgs.values())
        return
    models = {name: build(model_cfg, catalog=catalog) for name, model_cfg in model_cfgs.items()}
    assert all(isinstance(m, Recommender) and m.catalog is catalog for m in models.values())
    system = compose_system(models, cfg.pipeline.get("system"))
    assert isinstance(system, Recommender) and system.n_items == catalog.n_items
    for name, model_cfg in model_cfgs.items():  # each model owns how much history it reads (None: all of it)
        assert models[name].max_len == model_cfg.get("max_len")
    for key in ("max_len", "eval_batch_size", "eval_history"):
        assert key not in cfg.datamodule


def test_cascade_experiment_builds_a_two_tower_retriever_and_a_sasrec_ranker(catalog, tmp_path):
    from marquee.models.sasrec import SASRec
    from marquee.retrieval.cascade import CascadeRecommender
    from marquee.retrieval.two_tower import TwoTower

    cfg = _compose(["experiment=cascade_ml100k", f"paths.output_dir={tmp_path}"])
    assert list(cfg.pipeline.stages) == ["retriever", "ranker"]
    ranker = build(cfg.model, catalog=catalog)
    retriever = build(cfg.pipeline.stages.retriever.model, catalog=catalog)
    assert type(ranker) is SASRec and ranker.max_len == 50
    assert type(retriever) is TwoTower and retriever.max_len == cfg.pipeline.stages.retriever.model.max_len
    system = compose_system({"retriever": retriever, "ranker": ranker}, cfg.pipeline.system)
    assert type(system) is CascadeRecommender and system.n_candidates == 200
    assert system.retriever is retriever and system.ranker is ranker
    assert set(system.evaluated_parts()) == {"retriever", "ranker"}
    # the retriever trains as experiment=two_tower_ml100k does (the shared recipe), on its own sequence windows
    retriever_stage = cfg.pipeline.stages.retriever
    assert retriever_stage.datamodule._target_.endswith("SequenceDataModule")
    assert retriever_stage.datamodule.windows == "all" and retriever_stage.datamodule.batch_size == 128
    assert retriever_stage.optim.optimizer.lr == 0.003 and retriever_stage.trainer.max_epochs == 200
    two_tower = _compose(["experiment=two_tower_ml100k", f"paths.output_dir={tmp_path}"])
    assert two_tower.datamodule.windows == "all" and two_tower.datamodule.batch_size == 128
    assert two_tower.optim.optimizer.lr == 0.003 and two_tower.trainer.max_epochs == 200
    assert 200 in cfg.evaluation.ks


@pytest.mark.parametrize("pipeline", _options("pipeline"))
def test_pipeline_configs_compose(pipeline, tmp_path):
    cfg = _compose([f"pipeline={pipeline}", "model=sasrec", "datamodule=sequences", f"paths.output_dir={tmp_path}"])
    assert len(cfg.pipeline.stages) >= 1
    if pipeline == "single":
        assert list(cfg.pipeline.stages) == ["model"] and cfg.pipeline.system is None
    else:
        assert cfg.pipeline.system._target_


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MARQUEE_DATA_DIR", str(tmp_path))
    cfg = _compose([f"paths.output_dir={tmp_path}"])
    assert cfg.data.source.root == f"{tmp_path}/ml-100k"


@pytest.mark.parametrize("bare", [False, True], ids=["content_catalog", "bare_catalog"])
@pytest.mark.parametrize("model", _options("model"))
def test_model_configs_build_recommenders(model, bare, catalog, tmp_path):
    cfg = _compose([f"model={model}", "datamodule=sequences", f"paths.output_dir={tmp_path}"])
    given = Catalog(n_items=10) if bare else catalog
    built = build(cfg.model, catalog=given)
    assert isinstance(built, Recommender) and built.catalog is given and built.n_items == given.n_items
    assert built.max_len == cfg.model.get("max_len")  # the model owns its history length (None: all of it)


@pytest.mark.parametrize("datamodule", _options("datamodule"))
def test_dmand_evaluation_configs_instantiate(datamodule, content_split, tmp_path):
    from marquee.evaluation.evaluator import Evaluator

    cfg = _compose([f"datamodule={datamodule}", f"paths.output_dir={tmp_path}"])
    for key in ("max_len", "eval_batch_size", "eval_history"):  # the model's and the evaluation's now
        assert key not in cfg.datamodule
    partial = instantiate(cfg.datamodule)
    assert callable(partial)  # a partial, completed with the split, max_len and evaluation data at run time
    evaluator = instantiate(cfg.evaluation)
    assert isinstance(evaluator, Evaluator) and evaluator.seen == "mask" and evaluator.ks == [10, 20, 50]
    assert evaluator.history == "visible" and evaluator.batch_size == 1024 and evaluator.device == "auto"
    data = evaluator.data(content_split, 3)
    dm = partial(split=content_split, max_len=3, evaluation=data)
    assert dm.max_len == 3 and dm.evaluation is data
    assert dm.batch_size == cfg.datamodule.batch_size
    rows = next(iter(dm.val_dataloader()))
    assert rows["items"].shape[1] <= 3 and len(rows["user"]) == content_split.val["user_id"].nunique()
