"""Evaluation: segmentation and tracking metrics, simulated-annotator protocols
and synthetic data with ground truth."""
