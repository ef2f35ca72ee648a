"""MLflow: runs, logged models and the registry, and the studies that read them (repeats, seeds,
cross-validation, comparison)."""
