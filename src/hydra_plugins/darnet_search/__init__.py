"""The sweeper of ``+experiment=search`` (a Hydra plugin: Hydra takes sweepers from the hydra_plugins namespace)."""
