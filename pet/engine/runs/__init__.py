"""From a config to a finished run: the runner, the command-line plumbing of tools/, the dry run, the lr finder,
the run's log and its memory setting."""
