"""Hydra entry point: ``python -m marquee.eval run_dir=...`` re-evaluates a finished run's saved model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from marquee.checkpoint import MODEL_FILE, load_system
from marquee.config_dir import CONFIG_DIR
from marquee.data.atomic import write_json
from marquee.data.pipeline import prepare_split

log = logging.getLogger(__name__)


def evaluation_config(trained: DictConfig) -> DictConfig:
    """The run's own evaluation settings, changed by the ``evaluation.*`` overrides of this command."""
    given = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    changes = [o.removeprefix("evaluation.") for o in given if o.startswith("evaluation.")]
    return OmegaConf.merge(trained.evaluation, OmegaConf.from_dotlist(changes))


def run(cfg: DictConfig) -> dict[str, float]:
    """Rebuild the run's data from its recorded config, check the data is unchanged, evaluate its saved system."""
    run_dir = Path(cfg.run_dir)
    record_path = run_dir / "run.json"
    if not record_path.is_file():
        raise FileNotFoundError(f"'{run_dir}' is not a marquee run directory: no run.json in it")
    trained = OmegaConf.create(json.loads(record_path.read_text())["config"])
    system, payload = load_system(run_dir / "checkpoints" / MODEL_FILE)
    split = prepare_split(trained.data)
    if split.log.fingerprint != payload["data_fingerprint"]:
        raise ValueError(f"the data changed since '{run_dir}' was trained: fingerprint {split.log.fingerprint[:16]} "
                         f"!= {payload['data_fingerprint'][:16]}")
    output_dir = Path(cfg.paths.output_dir)
    evaluator = instantiate(evaluation_config(trained))
    metrics = evaluator.evaluate_stages(system, evaluator.data(split, system.max_len), list(cfg.stages), output_dir)
    write_json({"evaluated_run": str(run_dir.resolve()), "stages": list(cfg.stages)}, output_dir / "eval.json")
    print(output_dir.resolve())
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    """Compose the eval config and run it."""
    run(cfg)


if __name__ == "__main__":
    main()
