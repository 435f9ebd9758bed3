"""Contextual-bandit artwork selection: impression logs, a simulator on real titles, policies and off-policy evaluation."""

from marquee.bandits.logs import BanditLog, Candidates

__all__ = ["BanditLog", "Candidates"]
