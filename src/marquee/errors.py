"""Errors a user can act on (as opposed to bugs): each names the config key, file, line or column at fault."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot work, found before any training; the message starts with the key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def user_errors() -> tuple[type[BaseException], ...]:
    """Mistakes a user can fix: one line on the screen, exit code 2, the traceback only in the run's log."""
    from marquee.data.errors import DataError  # imported here: this module is imported by models and data alike
    from marquee.models.memory import InsufficientMemory

    return ConfigError, DataError, InsufficientMemory
