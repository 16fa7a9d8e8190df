"""Shortcut audit: how well signals that are not the disease (slice count, file type, border...) predict the label.

``darnet-audit`` (``darnet_pl.cli.audit``) is the command, ``signals`` reads the per-scan signals,
``probes`` cross-validates one simple classifier per signal group, grouped by patient.
"""
