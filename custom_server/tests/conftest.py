"""Models made in the tests (nothing is downloaded) and servers running them."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serverproc import ServerProcess, running

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]

#: A python model for the tests: per-row sums, optionally slow, counting its calls.
SLOW_MODEL = textwrap.dedent(
    '''
    """Test model: returns each row's sum; sleeps TEST_MODEL_DELAY_S per call."""
    import os
    import time

    import numpy as np


    class RowSum:
        def __init__(self):
            self.delay = float(os.environ.get("TEST_MODEL_DELAY_S", "0"))
            self.loaded_from = None

        def load(self, model_path):
            self.loaded_from = model_path

        def predict(self, x):
            if self.delay:
                time.sleep(self.delay)
            return np.asarray(x, dtype=np.float64).reshape(len(x), -1).sum(axis=1)


    def make_echo(model_path):
        """A factory: the model echoes its input (any JSON) back."""
        return lambda x: x


    class Tagger:
        """Not batchable; two named outputs; declares its input for metadata."""

        supports_batching = False
        inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        outputs = [{"name": "length", "datatype": "INT64", "shape": [-1]}]

        def predict(self, x):
            texts = [t.decode() if isinstance(t, bytes) else str(t) for t in x.tolist()]
            return {"length": np.asarray([len(t) for t in texts]), "upper": [t.upper() for t in texts]}
    '''
)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sklearn (joblib), the same exported to ONNX, a python model module and a broken file."""
    import joblib
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    directory = tmp_path_factory.mktemp("models")
    features, target = load_iris(return_X_y=True)
    classifier = LogisticRegression(max_iter=1000).fit(features, target)
    joblib.dump(classifier, directory / "iris.joblib")
    onnx_model = to_onnx(
        classifier, features[:1].astype(np.float32), options={id(classifier): {"zipmap": False}}, target_opset=17
    )
    (directory / "iris.onnx").write_bytes(onnx_model.SerializeToString())
    (directory / "test_user_model.py").write_text(SLOW_MODEL)
    (directory / "leaky_model.py").write_text(LOGGING_MODEL)
    (directory / "broken.joblib").write_bytes(b"this is not a pickle")
    return directory


@pytest.fixture(scope="session")
def iris_classifier(artifacts: Path) -> object:
    """The trained classifier, to compare the server's answers with."""
    import joblib

    return joblib.load(artifacts / "iris.joblib")


@pytest.fixture(scope="module")
def sklearn_server(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The iris classifier from joblib, with the access log on and a 1 MiB body limit."""
    env = {
        "MODEL_PATH": str(artifacts / "iris.joblib"),
        "MODEL_NAME": "iris",
        "MODEL_VERSION": "3",
        "ACCESS_LOG": "true",
        "MAX_REQUEST_BYTES": str(1024 * 1024),
    }
    with running(env, tmp_path_factory.mktemp("sklearn") / "server.log") as server:
        yield server


LOGGING_MODEL = textwrap.dedent(
    '''
    """Test model that (wrongly) logs a secret from its environment while loading."""
    import logging
    import os


    class Leaky:
        def load(self):
            logging.getLogger("user.model").warning("loaded with token %s", os.environ.get("HF_TOKEN"))

        def predict(self, x):
            return x
    '''
)
