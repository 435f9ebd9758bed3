"""``python -m marquee.export run_dir=RUN out=BUNDLE [policy=PATH] [seed=S]``: write a finished run's serving bundle.

  run_dir=RUN    a run folder (single model or pipeline, e.g. a cascade) or a study folder: a study exports
                 its frozen winner's seed run with the best validation score on the study's metric
  out=BUNDLE     the bundle folder to create (it must not exist; written beside it under a hidden name,
                 then renamed, so a failed export leaves nothing at BUNDLE)
  policy=PATH    optional: the artwork policy (a marquee-artwork-policy JSON from `marquee.bandit save_policies=true`),
                 checked as the service checks it and copied into the bundle
  seed=S         optional, studies only: export seeds/seed_S instead

Exports SASRec, BERT4Rec, TwoTower and cascades of them; a closed-form baseline (EASE, pop, ...) is
refused, naming the stage. Prints the bundle's path on its last line. Serve it with
``marquee.export.bundle.load_bundle(BUNDLE)``, which needs neither torch nor Lightning.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import yaml

from marquee.cli import exit_if_user_error
from marquee.errors import ConfigError

KEYS = {"run_dir": str, "out": str, "policy": str, "seed": int}
REQUIRED = ("run_dir", "out")


def parse(argv: list[str]) -> dict[str, object]:
    """``key=value`` arguments, each key known and of its type, the required ones present."""
    settings: dict[str, object] = {}
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or key not in KEYS:
            raise ConfigError(key or arg, f"unknown argument '{arg}'; give {', '.join(f'{k}=...' for k in KEYS)}")
        parsed = yaml.safe_load(value) if KEYS[key] is int else value
        if not isinstance(parsed, KEYS[key]) or isinstance(parsed, bool):
            raise ConfigError(key, f"expected {KEYS[key].__name__}, got {value!r}")
        settings[key] = parsed
    for key in REQUIRED:
        if key not in settings:
            raise ConfigError(key, f"required, and not given (add {key}=...)")
    return settings


def run(argv: list[str]) -> Path:
    """Export the run ``argv`` names; returns the bundle folder."""
    from marquee.export.writer import export_run  # torch and onnx load only once the arguments are good

    return export_run(**parse(argv))


def main(argv: list[str] | None = None) -> Path | None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return None
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for chatty, level in (("onnxscript", logging.WARNING), ("onnx_ir", logging.WARNING),  # a line per graph rewrite
                          ("faiss.loader", logging.WARNING),
                          ("torch.onnx._internal.exporter._registration", logging.ERROR)):  # "no torchvision"
        logging.getLogger(chatty).setLevel(level)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # torch's own pytree, per trace
    try:
        out = run(argv)
    except Exception as error:
        exit_if_user_error(error, "train")  # one line and exit 2 for a user's mistake; a bug raises on
        raise
    print(out)
    return out


if __name__ == "__main__":
    main()
