"""Every config composes and every ``_target_`` in it instantiates (data loading excluded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from marquee.config_dir import CONFIG_DIR


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


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


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiments_compose(experiment, tmp_path):
    cfg = _compose([f"experiment={experiment}", f"paths.output_dir={tmp_path}"])
    assert cfg.task_name == experiment


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MARQUEE_DATA_DIR", str(tmp_path))
    cfg = _compose([f"paths.output_dir={tmp_path}"])
    assert cfg.data.source.root == f"{tmp_path}/ml-100k"


@pytest.mark.parametrize("model", _options("model"))
def test_model_configs_build_recommenders(model, tmp_path):
    from marquee.models.base import Recommender

    cfg = _compose([f"model={model}", "datamodule=sequences", f"paths.output_dir={tmp_path}"])
    assert isinstance(instantiate(cfg.model, n_items=10), Recommender)


@pytest.mark.parametrize("datamodule", _options("datamodule"))
def test_datamodule_and_evaluation_configs_instantiate(datamodule, tmp_path):
    from marquee.evaluation.evaluator import Evaluator

    cfg = _compose([f"datamodule={datamodule}", f"paths.output_dir={tmp_path}"])
    assert callable(instantiate(cfg.datamodule))  # a partial, completed with the split at run time
    evaluator = instantiate(cfg.evaluation)
    assert isinstance(evaluator, Evaluator) and evaluator.seen == "mask" and evaluator.ks == [10, 20, 50]
