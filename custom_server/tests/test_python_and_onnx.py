"""ONNX (the iris classifier exported with skl2onnx), the user's own Python models, failed loads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import IRIS_ROWS
from serverproc import metric, running


def test_onnx_model(artifacts: Path, tmp_path: Path, iris_classifier: Any) -> None:
    env = {"MODEL_PATH": str(artifacts / "iris.onnx"), "MODEL_NAME": "iris-onnx"}  # format from the suffix
    with running(env, tmp_path / "server.log") as server, server.client() as client:
        metadata = client.get("/v2/models/iris-onnx").json()
        assert metadata["platform"] == "onnxruntime_onnx"
        assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
        assert [output["name"] for output in metadata["outputs"]] == ["label", "probabilities"]
        request = {
            "id": "onnx-1",
            "inputs": [
                {
                    "name": "X",
                    "shape": [3, 4],
                    "datatype": "FP64",
                    "data": [value for row in IRIS_ROWS for value in row],
                }
            ],
        }
        response = client.post("/v2/models/iris-onnx/infer", json=request)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == "onnx-1" and body["model_name"] == "iris-onnx" and body["model_version"] == "1"
        label, probabilities = body["outputs"]
        assert label == {
            "name": "label",
            "datatype": "INT64",
            "shape": [3],
            "data": iris_classifier.predict(np.asarray(IRIS_ROWS)).tolist(),
        }
        assert probabilities["datatype"] == "FP32" and probabilities["shape"] == [3, 3]
        expected = iris_classifier.predict_proba(np.asarray(IRIS_ROWS)).reshape(-1)
        np.testing.assert_allclose(probabilities["data"], expected, atol=1e-5)
        predicted = client.post("/predict", json={"instances": IRIS_ROWS}).json()
        assert predicted["predictions"]["label"] == label["data"]
        wrong = client.post(
            "/v2/models/iris-onnx/infer",
            json={"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
        )
        assert wrong.status_code == 400 and "inputs[0].shape" in wrong.json()["error"]


def test_python_class_from_module(artifacts: Path, tmp_path: Path) -> None:
    env = {
        "MODEL_CLASS": "test_user_model:RowSum",  # module:attr, importable through PYTHONPATH
        "MODEL_PATH": str(artifacts),
        "MODEL_NAME": "rowsum",
        # Kept after the artifacts: the tests may run the server from its source tree.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(artifacts), os.environ.get("PYTHONPATH")])),
    }
    with running(env, tmp_path / "server.log") as server, server.client() as client:
        assert client.get("/v2/models/rowsum").json()["platform"] == "python"
        response = client.post("/predict", json={"instances": [[1, 2, 3], [4, 5, 6]]})
        assert response.status_code == 200
        assert response.json()["predictions"] == [6.0, 15.0]
        infer = client.post(
            "/v2/models/rowsum/infer",
            json={"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [1, 1, 2, 2]}]},
        ).json()
        assert infer["outputs"] == [{"name": "output-0", "datatype": "FP64", "shape": [2], "data": [2.0, 4.0]}]


def test_python_factory_from_file_with_any_json(artifacts: Path, tmp_path: Path) -> None:
    env = {"MODEL_CLASS": f"{artifacts / 'test_user_model.py'}:make_echo", "MODEL_NAME": "echo"}
    with running(env, tmp_path / "server.log") as server, server.client() as client:
        instances = [{"prompt": "hello"}, {"prompt": "world", "max_tokens": 3}]
        response = client.post("/predict", json={"instances": instances})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == instances
        strings = client.post(
            "/v2/models/echo/infer",
            json={"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "bc"]}]},
        ).json()
        assert strings["outputs"] == [{"name": "output-0", "datatype": "BYTES", "shape": [2], "data": ["a", "bc"]}]


def test_python_unbatched_named_outputs(artifacts: Path, tmp_path: Path) -> None:
    env = {
        "MODEL_CLASS": f"{artifacts / 'test_user_model.py'}:Tagger",
        "MODEL_NAME": "tagger",
        "MODEL_FORMAT": "python",
    }
    with running(env, tmp_path / "server.log") as server, server.client() as client:
        metadata = client.get("/v2/models/tagger").json()
        assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        request = {
            "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["ab", "cde"]}],
            "outputs": [{"name": "length"}],
        }
        body = client.post("/v2/models/tagger/infer", json=request).json()
        assert body["outputs"] == [{"name": "length", "datatype": "INT64", "shape": [2], "data": [2, 3]}]
        both = client.post("/v2/models/tagger/infer", json={"inputs": request["inputs"]}).json()
        assert [o["name"] for o in both["outputs"]] == ["length", "upper"]
        assert both["outputs"][1]["data"] == ["AB", "CDE"]
        too_many = client.post(
            "/v2/models/tagger/infer",
            json={"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]},
        )
        assert too_many.status_code == 400 and "inputs[0].shape" in too_many.json()["error"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MODEL_PATH": "{artifacts}/broken.joblib"}, "broken.joblib"),
        ({"MODEL_CLASS": "no_such_module_here:Model"}, "ModuleNotFoundError"),
        ({"MODEL_PATH": "{artifacts}/missing.onnx"}, "missing.onnx"),
    ],
)
def test_failed_load_is_live_not_ready(artifacts: Path, tmp_path: Path, env: dict[str, str], expected: str) -> None:
    settings = {key: value.format(artifacts=artifacts) for key, value in env.items()}
    settings["MODEL_NAME"] = "broken"
    with running(settings, tmp_path / "server.log", ready=False) as server, server.client() as client:
        entry = server.wait_for_log(lambda e: e.get("level") == "error")
        assert "failed to load" in entry["message"] and expected in entry["error"]
        assert "exception" in entry  # the traceback
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "failed" and expected in ready.json()["error"]
        v2_ready = client.get("/v2/health/ready")
        assert v2_ready.status_code == 503 and v2_ready.json()["ready"] is False
        assert expected in v2_ready.json()["error"]
        model_ready = client.get("/v2/models/broken/ready")
        assert model_ready.status_code == 503 and model_ready.json()["ready"] is False
        infer = client.post(
            "/v2/models/broken/infer", json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}
        )
        assert infer.status_code == 503 and expected in infer.json()["error"]
        assert client.post("/predict", json={"instances": [[1]]}).status_code == 503
        assert "custom_server_model_ready" in client.get("/metrics").text


EXAMPLE_DOUBLER = Path(__file__).resolve().parents[1] / "examples" / "doubler" / "doubler.py"


def _double(client: Any) -> int:
    request = {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, 3.5]}]}
    response = client.post("/v2/models/doubler/infer", json=request)
    if response.status_code == 200:
        assert response.json()["outputs"][0]["data"] == [2, 4, 7]
    return response.status_code


def test_example_doubler_fault_knob_fails_its_share_with_500(tmp_path: Path) -> None:
    """The canary tests' faulty version: DOUBLER_ERROR_SHARE=0.2 fails every 5th inference with a 500 (a server
    fault, which the canary analysis counts as an error), unset it fails none."""
    env = {"MODEL_CLASS": f"{EXAMPLE_DOUBLER}:Doubler", "MODEL_NAME": "doubler", "DOUBLER_ERROR_SHARE": "0.2"}
    with running(env, tmp_path / "server.log") as server, server.client() as client:
        codes = [_double(client) for _ in range(20)]
        assert [i for i, code in enumerate(codes, 1) if code != 200] == [5, 10, 15, 20], codes
        assert set(codes) == {200, 500}
        text = client.get("/metrics").text
        assert metric(text, "custom_server_requests_total", endpoint="/v2/models/{model_name}/infer", code="500") == 4
    plain = {key: value for key, value in env.items() if key != "DOUBLER_ERROR_SHARE"}
    with running(plain, tmp_path / "plain.log") as server, server.client() as client:
        assert [_double(client) for _ in range(10)] == [200] * 10


def test_example_doubler_fault_knob_out_of_range_fails_the_load(tmp_path: Path) -> None:
    env = {"MODEL_CLASS": f"{EXAMPLE_DOUBLER}:Doubler", "MODEL_NAME": "doubler", "DOUBLER_ERROR_SHARE": "20%"}
    with running(env, tmp_path / "server.log", ready=False) as server:
        entry = server.wait_for_log(lambda e: e.get("level") == "error")
        assert "DOUBLER_ERROR_SHARE='20%' is not a number from 0 to 1" in entry["error"]
