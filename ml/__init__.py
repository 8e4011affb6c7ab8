"""Research and training side: datasets, preprocessing, model, training and evaluation.

Its single-image preprocessing is what the inference service imports, so training and
serving cannot drift apart.
"""

import os

# TensorFlow's C++ start-up chatter (CPU features, oneDNN notes) is not for our users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
