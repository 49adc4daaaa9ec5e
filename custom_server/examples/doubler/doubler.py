"""An example Python model for custom_server: it doubles its input.

MODEL_FORMAT=python, MODEL_CLASS=/models/doubler.py:Doubler. The local
catalog's doubler-python-cpu bakes it into the image; its smoke inference
sends [1, 2, 3.5] and expects [2, 4, 7].
"""

import numpy as np


class Doubler:
    def load(self, model_path):
        """Nothing to read: the model is the code."""

    def predict(self, x):
        return np.asarray(x, dtype=np.float32) * 2
