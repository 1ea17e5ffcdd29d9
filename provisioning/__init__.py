"""Field-tech tooling: keys, enrollment, config, self-test, card issuing."""
