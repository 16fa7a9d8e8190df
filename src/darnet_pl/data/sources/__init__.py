"""Where scans come from: CC-CCII, a folder/CSV of the user's scans, and the synthetic phantoms.

Each source finds its scans (``ScanRecord`` lists), checks them and fills the volume cache; ``cached`` holds what
CC-CCII and the folder source share.
"""
