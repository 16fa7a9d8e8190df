"""The run folder's contract: file names (``layout``), job folder names and experiment overrides (``naming``), the
predictions and metrics files, checkpoints (read with weights_only) and a sweep job's lock and failure record."""
