"""What every Hydra entry point shares: a unique run directory, and user mistakes that end as one line with exit 2.

``MARQUEE_DEBUG=1`` shows the full traceback of a user mistake too. A bug (anything else) always
shows its traceback.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from marquee.config_dir import CONFIG_DIR
from marquee.errors import user_errors


def _chain(error: BaseException | None):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def _overrides() -> list[str]:
    return [a for a in sys.argv[1:] if not a.startswith("-")]


def _nearest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _keys_beside(config_name: str, full_key: str) -> list[str]:
    """The keys next to ``full_key`` in the config composed without the override that named it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    others = [o for o in _overrides() if not o.lstrip("+~").startswith(f"{full_key}=") and not o.startswith("hydra")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=others)
    except (HydraException, OmegaConfBaseException):  # another override is wrong too: no suggestion, the message still names the key
        return []
    parent = full_key.rpartition(".")[0]
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return [str(k) for k in node] if OmegaConf.is_dict(node) else []


def _composition_message(error: ConfigCompositionException, config_name: str) -> str:
    """One line for a Hydra composition error: the key or group, what is wrong, the nearest valid name."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, name = error.missing_cfg_file.rpartition("/")
        options = sorted(error.options)
        return (f"{group}={name}: no config '{name}' in group '{group}'{_nearest(name, options)} "
                f"(options: {', '.join(options)})")
    cause = str(error.__cause__ or "")
    match = re.search(r"full_key: (\S+)", cause)
    if match and "not in struct" in cause:
        key = match.group(1)
        leaf = key.rpartition(".")[2]
        return (f"{key}: no such key{_nearest(leaf, _keys_beside(config_name, key))} "
                f"(to add a new key, write +{key}=...)")
    return _one_line(f"{error} {cause}")


def user_message(error: BaseException, config_name: str) -> str | None:
    """The one line that tells a user what to fix, or None when ``error`` is a bug."""
    for link in _chain(error):
        if isinstance(link, user_errors()):
            return _one_line(link)
        if isinstance(link, MissingMandatoryValue):
            key = getattr(link, "full_key", "") or "a required value"
            return f"{key}: required, and not given (add {key}=...)"
        if isinstance(link, OverrideParseException):
            key = link.override.partition("=")[0]
            return _one_line(f"cannot read the override '{link.override}': {link.message.splitlines()[0]} "
                             f"(quote a value with special characters for Hydra, e.g. '{key}=\";\"')")
        if isinstance(link, ConfigCompositionException):
            return _composition_message(link, config_name)
    return None


def failure_reason(error: BaseException, config_name: str) -> str:
    """The one-line reason a failed run records: the user's mistake, or the bug's type and message."""
    return user_message(error, config_name) or _one_line(f"{type(error).__name__}: {error}")


def entry_point(config_name: str) -> Callable[[Callable[..., Any]], Callable[[], Any]]:
    """Like ``hydra.main`` on marquee's configs, and a user's mistake ends as ``error: <one line>``, exit code 2."""

    def wrap(task: Callable[..., Any]) -> Callable[[], Any]:
        @functools.wraps(task)
        def guarded(cfg: Any) -> Any:  # inside Hydra: a mistake in the run (bad data, a bad value)
            try:
                return task(cfg)
            except Exception as error:
                exit_if_user_error(error, config_name)
                raise

        hydra_task = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)(guarded)

        @functools.wraps(task)
        def main() -> Any:  # around Hydra: a mistake in composing the config (a key, a group option)
            os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises; this function decides what the screen shows
            try:
                return hydra_task()
            except Exception as error:
                exit_if_user_error(error, config_name)
                raise

        return main

    return wrap


def exit_if_user_error(error: Exception, config_name: str) -> None:
    """Print ``error: <one line>`` and exit 2 when ``error`` is a user's mistake (unless ``MARQUEE_DEBUG`` is set)."""
    message = user_message(error, config_name)
    if message is None or os.environ.get("MARQUEE_DEBUG", "") not in ("", "0"):
        return
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
