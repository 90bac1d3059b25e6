"""Test-only stand-in for torchvision.

The reference sam2 package imports ``torchvision.transforms`` for its image
predictor. torchvision's wheels would replace the CPU torch build, so the
parity tests put this minimal implementation on ``sys.path`` instead.
"""
