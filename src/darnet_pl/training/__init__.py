"""Training: the LightningModule, its callbacks and loggers, speed options, and ``train(cfg)`` (``training.run``)."""
