"""Hydra entry point: ``python -m marquee.eval run_dir=...`` re-evaluates a finished run's saved model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from marquee.checkpoint import MODEL_FILE, load_system
from marquee.cli import entry_point
from marquee.data.atomic import write_json
from marquee.data.errors import DataError
from marquee.data.pipeline import prepare_split
from marquee.errors import ConfigError
from marquee.preflight import check_ks, check_stages

log = logging.getLogger(__name__)


def evaluation_config(trained: DictConfig) -> DictConfig:
    """The run's own evaluation settings, changed by the ``evaluation.*`` overrides of this command."""
    given = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    changes = [o.removeprefix("evaluation.") for o in given if o.startswith("evaluation.")]
    return OmegaConf.merge(trained.evaluation, OmegaConf.from_dotlist(changes))


def run(cfg: DictConfig) -> dict[str, float]:
    """Rebuild the run's data from its recorded config, check the data is unchanged, evaluate its saved system."""
    run_dir = Path(cfg.run_dir)
    stages = check_stages(list(cfg.stages))
    record_path = run_dir / "run.json"
    if not record_path.is_file():
        raise ConfigError("run_dir", f"'{run_dir}' is not a marquee run directory: no run.json in it")
    if not (run_dir / "checkpoints" / MODEL_FILE).is_file():
        raise ConfigError("run_dir", f"'{run_dir}' has no saved model (checkpoints/{MODEL_FILE}): "
                          f"its status is '{json.loads(record_path.read_text()).get('status', 'unknown')}'")
    trained = OmegaConf.create(json.loads(record_path.read_text())["config"])
    system, payload = load_system(run_dir / "checkpoints" / MODEL_FILE)
    split = prepare_split(trained.data)
    if split.log.fingerprint != payload["data_fingerprint"]:
        raise DataError(f"the data changed since '{run_dir}' was trained: fingerprint {split.log.fingerprint[:16]} "
                        f"!= {payload['data_fingerprint'][:16]}")
    output_dir = Path(cfg.paths.output_dir)
    evaluator = instantiate(evaluation_config(trained))
    check_ks(evaluator.ks, system.n_items)
    metrics = evaluator.evaluate_stages(system, evaluator.data(split, system.max_len), stages, output_dir)
    write_json({"evaluated_run": str(run_dir.resolve()), "stages": stages}, output_dir / "eval.json")
    print(output_dir.resolve())
    return metrics


@entry_point("eval")
def main(cfg: DictConfig) -> None:
    """Compose the eval config and run it."""
    run(cfg)


if __name__ == "__main__":
    main()
