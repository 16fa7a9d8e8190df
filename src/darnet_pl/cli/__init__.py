"""Thin command-line entry points: parse, call, map errors to exit codes. Nothing imports cli/."""
