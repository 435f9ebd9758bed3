"""A Hydra callback: when a ``marquee.train --multirun`` ends, compare its jobs and write the report beside them.

Without it a multirun ends on its last job's folder; with it, on the ranked table of every job
(``<sweep dir>/summary/report.md``, as ``python -m marquee.compare <sweep dir> --out ...`` writes it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class MultirunSummary(Callback):
    """Compare the finished jobs of a multirun on ``stage`` by ``metric`` and write the report into ``summary/``."""

    def __init__(self, stage: str = "test", metric: str = "ndcg@10", n_boot: int = 1000):
        self.stage, self.metric, self.n_boot = stage, metric, n_boot

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from marquee.reports.markdown import write_report
        from marquee.reports.report import build_report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = build_report([sweep_dir], self.stage, self.metric, n_boot=self.n_boot)
        except ValueError as error:  # jobs that cannot be compared (other data, a failed job named...): say why
            print(f"no summary of {sweep_dir}: {error}")
            return
        print(report.text())
        print(f"summary: {write_report(report, sweep_dir / 'summary')}")
