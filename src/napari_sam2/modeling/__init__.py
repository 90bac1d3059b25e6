"""The SAM 2 network (PyTorch); imports nothing of the package but :mod:`napari_sam2.errors`."""
