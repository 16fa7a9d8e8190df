"""Shortcut audit: how well signals that are not the disease (slice count, file type, border...) predict each class.

``darnet-audit`` (``darnet_pl.cli.audit``) is the command, ``signals`` reads the per-scan signals, ``probes``
cross-validates one simple classifier per signal group, grouped by patient, per class and for partial shortcuts,
``subsets`` shows a flagged signal in every row of the split, ``checkpoints`` and ``model_checks`` ask whether a
trained model uses it, ``tables`` turns the findings into rows and text.
"""
