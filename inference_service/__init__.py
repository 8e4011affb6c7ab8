"""Inference service: model registry, loading, prediction and Grad-CAM; database `inference`."""
