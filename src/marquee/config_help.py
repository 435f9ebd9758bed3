"""The config-group list of an entry point's ``--help``: only the groups its own defaults list composes.

Hydra's default help lists every group under configs/ for every entry point (``marquee.train --help``
would offer the bandit's ``source``). The shared help template in ``configs/hydra/default.yaml`` calls
``${marquee.config_groups:${hydra:runtime.choices}}`` instead: the groups this command composed, with
the options on Hydra's search path, so the list follows the configs and cannot drift from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

IN_USE = "*"


def entry_groups(choices: Mapping[str, str | None]) -> list[str]:
    """The groups of ``hydra.runtime.choices`` that belong to the application (not Hydra's own), sorted."""
    return sorted(g for g in choices if g != "hydra" and not g.startswith("hydra/"))


def format_config_groups(choices: Mapping[str, str | None], options: Callable[[str], list[str]]) -> str:
    """One line per group, ``group: a, b*, c``, ``*`` marking the option in use; ``options(group)`` lists them."""
    lines = []
    for key in entry_groups(choices):
        group = key.split("@")[0]  # a group placed at another package (data/prep@data) is chosen as data/prep
        names = [f"{o}{IN_USE}" if o == choices[key] else o for o in sorted(options(group))]
        lines.append(f"{group}: {', '.join(names) if names else '(no options yet)'}")
    return "\n".join(lines)


def config_groups(choices: Mapping[str, str | None]) -> str:
    """The OmegaConf resolver behind ``${marquee.config_groups:...}``: options read from Hydra's search path."""
    loader = GlobalHydra.instance().config_loader()
    return format_config_groups(choices, loader.get_group_options)


OmegaConf.register_new_resolver("marquee.config_groups", config_groups, replace=True)
