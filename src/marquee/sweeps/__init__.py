"""Hyperparameter studies: Optuna over marquee.train runs, chosen on validation, the winner re-run over seeds."""
