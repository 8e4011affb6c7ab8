"""Research and training side: datasets, preprocessing, model, training and evaluation.

Its single-image preprocessing is what the inference service imports, so training and
serving cannot drift apart.
"""
