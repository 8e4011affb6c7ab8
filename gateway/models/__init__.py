"""Model versions: the inference service's registry, their cards and reports, activation."""
