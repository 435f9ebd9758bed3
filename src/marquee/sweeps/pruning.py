"""A Lightning callback that reports each validation score to an Optuna trial and stops hopeless trials.

Written by hand: optuna-integration's PyTorchLightningPruningCallback needs the ``lightning`` package,
which beside ``pytorch_lightning`` breaks Ray Train's strategy check; this is the same dozen lines.
"""

from __future__ import annotations

import math

import optuna
import pytorch_lightning as pl


class PrunedTrial(optuna.TrialPruned):
    """Optuna's TrialPruned, recorded in the run's ``run.json`` as status ``pruned`` rather than ``failed``."""

    run_status = "pruned"


class OptunaPruning(pl.Callback):
    """After every validation, report ``monitor`` at the epoch to the trial; raise :class:`PrunedTrial` if it should stop.

    The trial is found from ``storage`` (a JournalFileBackend path), ``study_name`` and ``trial_number``, and
    judged by a MedianPruner with ``pruner``'s settings, so the callback is built from a config like any other.
    """

    def __init__(self, storage: str, study_name: str, trial_number: int, monitor: str = "val/ndcg@10",
                 pruner: dict | None = None):
        self.storage, self.study_name, self.trial_number, self.monitor = storage, study_name, trial_number, monitor
        self.pruner = dict(pruner or {})
        self._trial: optuna.Trial | None = None

    def trial(self) -> optuna.Trial:
        if self._trial is None:
            from marquee.sweeps.study import open_study  # the study module imports this one

            study = open_study(self.storage, self.study_name, pruner=self.pruner)
            trial_id = next(t._trial_id for t in study.get_trials(deepcopy=False) if t.number == self.trial_number)
            self._trial = optuna.Trial(study, trial_id)
        return self._trial

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        epoch = trainer.current_epoch
        trial = self.trial()
        if not math.isfinite(value):
            raise PrunedTrial(f"{self.monitor} is {value} at epoch {epoch}")
        trial.report(value, step=epoch)
        if trial.should_prune():
            raise PrunedTrial(f"pruned at epoch {epoch}: {self.monitor} {value:.4f}")
