"""Where marquee's Hydra configs are (inside the installed package, or the repo's configs/ in a checkout),
and the resolvers their run directories, ``--help`` and trainer precision use."""

import itertools
from pathlib import Path

from omegaconf import OmegaConf

import marquee.config_help  # noqa: F401  registers the resolver of every entry point's --help

_PACKAGE = Path(__file__).resolve().parent
# a wheel carries them as marquee/configs; an editable install reads the repository's top-level configs/
CONFIG_DIR = _PACKAGE / "configs" if (_PACKAGE / "configs").is_dir() else _PACKAGE.parents[1] / "configs"


def unique_dir(base: str) -> str:
    """``base``, else ``base_2``, ``base_3`` ...: the first that did not exist, created here.

    ``mkdir`` is atomic, so two runs started in the same second (or from two processes) never share
    a directory, whatever their clocks say.
    """
    for n in itertools.count(1):
        path = Path(base if n == 1 else f"{base}_{n}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        return str(path)
    raise AssertionError("unreachable")


def precision_for(accelerator: str, gpu_precision: str) -> str:
    """``gpu_precision`` when ``accelerator`` is a GPU (``auto``: when one is visible), else ``32-true``."""
    if accelerator == "auto":
        import torch

        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    return gpu_precision if accelerator in ("gpu", "cuda") else "32-true"


# cached per config, so a run creates its directory once however often Hydra reads hydra.run.dir
OmegaConf.register_new_resolver("marquee.unique_dir", unique_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("marquee.precision_for", precision_for, replace=True)
