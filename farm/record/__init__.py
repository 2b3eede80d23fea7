"""Record: a run's folder on disk, the history across runs, and sign-off records."""
