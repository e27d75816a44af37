"""Hyperparameter search for tools/tune.py: the search space over config keys, the pruning hook, and the study
that runs each trial as a normal run (Optuna does the searching)."""
