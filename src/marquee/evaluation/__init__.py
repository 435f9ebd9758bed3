"""Offline evaluation: full-catalog ranking, accuracy and beyond-accuracy metrics, statistics, off-policy estimators."""
