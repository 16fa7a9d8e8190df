"""Benchmarks (``make bench`` / ``python -m darnet_pl.bench``): model speed, memory, ingest, loader.

Nothing imports bench/.
"""
