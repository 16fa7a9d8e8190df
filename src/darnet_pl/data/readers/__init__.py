"""Path -> uint8 volume: slice folders, NIfTI files and DICOM series. No cache, no Lightning."""
