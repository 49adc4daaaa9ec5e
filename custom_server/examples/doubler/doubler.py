"""An example Python model for custom_server: it doubles its input.

MODEL_FORMAT=python, MODEL_CLASS=/models/doubler.py:Doubler. The local
catalog's doubler-python-cpu bakes it into the image; its smoke inference
sends [1, 2, 3.5] and expects [2, 4, 7].

A test aid, off unless set: DOUBLER_ERROR_SHARE (a number from 0 to 1, in the
pod's env) makes that share of the inferences fail with a server error (the
model raises RuntimeError, which custom_server answers with 500): 0.2 fails
the 5th, 10th, 15th... call. It is how the canary tests make a version that
answers 20% errors. With it set, requests are not batched, so one call is one
request and the share is exact.
"""

import itertools
import os
import threading

import numpy as np

ERROR_SHARE_ENV = "DOUBLER_ERROR_SHARE"


def error_share(environ=os.environ):
    """The share of inferences to fail, from DOUBLER_ERROR_SHARE (0 when unset)."""
    text = environ.get(ERROR_SHARE_ENV, "").strip()
    if not text:
        return 0.0
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{ERROR_SHARE_ENV}={text!r} is not a number from 0 to 1 (the share of inferences to fail)")
    return share


class Doubler:
    def __init__(self):
        self.error_share = 0.0
        self._calls = itertools.count(1)
        self._lock = threading.Lock()

    def load(self, model_path):
        """Nothing to read: the model is the code. Reads the fault knob (a bad value fails the load)."""
        self.error_share = error_share()
        if self.error_share:
            self.supports_batching = False

    def fails(self):
        """Whether this call is one of the share to fail: call n fails when n x share passes a whole number."""
        with self._lock:
            call = next(self._calls)
        return int(call * self.error_share) > int((call - 1) * self.error_share)

    def predict(self, x):
        if self.error_share and self.fails():
            raise RuntimeError(f"injected fault ({ERROR_SHARE_ENV}={self.error_share:g})")
        return np.asarray(x, dtype=np.float32) * 2
