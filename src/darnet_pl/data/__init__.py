"""Data: scan records, sources (CC-CCII slice folders, NIfTI, DICOM, synthetic phantoms), cache, splits, loaders."""
