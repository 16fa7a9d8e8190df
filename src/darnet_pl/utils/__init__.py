"""The bottom layer (imports nothing of ours): atomic files, user errors, exit codes, console helpers, slugs."""
