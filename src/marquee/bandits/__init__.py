"""Contextual-bandit artwork selection: impression logs, a simulator on real titles, policies and off-policy evaluation."""

from marquee.bandits.artwork_logs import read_artwork_log, write_artwork_log
from marquee.bandits.logs import BanditLog, Candidates

__all__ = ["BanditLog", "Candidates", "read_artwork_log", "write_artwork_log"]
