"""Checks of a composed config that can be made before any data is read or any model trained.

Each failure is a :class:`~marquee.errors.ConfigError` naming the key, so a run stops in seconds with
one line instead of after fitting (or inside Lightning's stack).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from marquee.config_dir import CONFIG_DIR
from marquee.data.splits import STAGES
from marquee.errors import ConfigError


def check_group_choices(cfg: DictConfig, prefix: str = "") -> None:
    """A key that is a config group (``data.split``, ``model``) must hold a config, not a bare name.

    ``data.split=temporal`` sets the string "temporal" where a config belongs; the group is chosen
    with ``data/split=temporal``.
    """
    for key in cfg:
        if str(key) == "hydra":
            continue
        full = f"{prefix}{key}"
        value = cfg._get_node(key)._value() if OmegaConf.is_dict(cfg) else None
        group = CONFIG_DIR / full.replace(".", "/")
        if isinstance(value, str) and group.is_dir():
            options = sorted(p.stem for p in group.glob("*.yaml"))
            raise ConfigError(full, f"'{value}' is not a config; {full} is chosen from the group "
                              f"{full.replace('.', '/')}: write {full.replace('.', '/')}=<one of {', '.join(options)}>")
        if OmegaConf.is_dict(cfg[key]):
            check_group_choices(cfg[key], f"{full}.")


def check_stages(stages: list[str]) -> list[str]:
    """The evaluated stages, each one of :data:`~marquee.data.splits.STAGES`."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError("stages", f"{unknown} unknown; evaluate any of {list(STAGES)}")
    return list(stages)


def check_ks(ks: list[int], n_items: int) -> None:
    """Every cut-off k ranks at most the catalog (``evaluation.ks=[5000]`` on 1,682 items is a mistake)."""
    too_big = [k for k in ks if k > n_items]
    if too_big:
        raise ConfigError("evaluation.ks", f"{too_big} exceed the catalog's {n_items} items")
