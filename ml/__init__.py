"""Research and training side: datasets, preprocessing, model, training and evaluation.

The services import only the serving contract (`ml.contract`: decoding and the single-image
preprocessing, so training and serving cannot drift apart), the model card (`ml.card`),
model version folders (`ml.versions`), the assessment of an answer (`ml.assessment`), the
image quality checks (`ml.quality`) and the scores fitted in training (`ml.calibration`,
`ml.ood`); none of these needs TensorFlow or training code.
"""

import os

# TensorFlow's C++ start-up chatter (CPU features, oneDNN notes) is not for our users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
