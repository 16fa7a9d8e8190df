"""Evaluating trained checkpoints on labelled scans (``darnet-evaluate``): predict as ``darnet_pl.inference`` does,
then the paper's metrics, patient-level bootstrap intervals and plots as ``darnet_pl.report`` computes them.

It sits above both (``inference/`` never imports ``report/`` and ``report/`` never imports ``inference/``); no
Lightning, no Hydra.
"""
