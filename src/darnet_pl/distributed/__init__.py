"""Multi-GPU training: the Hydra-aware DDP strategy, BatchNorm synchronisation, GPU pinning for parallel sweeps."""
