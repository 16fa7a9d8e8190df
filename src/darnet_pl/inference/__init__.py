"""Using a trained model: ``predict`` (checkpoint ensembles on new scans) and ``export`` (TorchScript, ONNX).

No Lightning, no Hydra.
"""
