"""Every endpoint of the real server over HTTP, with a scikit-learn model trained in the test.

v2 responses are checked against the Open Inference Protocol REST specification: datatype names,
shape, row-major flattened data, ``id`` echoed, ``model_name``/``model_version``, ``{"error": ...}``.
"""

from __future__ import annotations

import struct
from typing import Any

import httpx
import numpy as np

from conftest import IRIS_ROWS
from serverproc import ServerProcess, metric

V2_TYPES = {
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
}


def _v2_request(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    flat = [value for row in rows for value in row]
    return {"inputs": [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": flat}], **extra}


def _check_response_output(output: dict[str, Any]) -> None:
    assert set(output) >= {"name", "shape", "datatype", "data"}
    assert output["datatype"] in V2_TYPES
    assert all(isinstance(dim, int) and dim >= 0 for dim in output["shape"])
    assert len(output["data"]) == int(np.prod(output["shape"]))  # flattened, row-major


def test_seed_health(sklearn_server: ServerProcess) -> None:
    with sklearn_server.client() as client:
        live = client.get("/health/live")
        assert live.status_code == 200 and live.json() == {"status": "live"}
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "model": "iris", "model_version": "3"}


def test_seed_predict(sklearn_server: ServerProcess, iris_classifier: Any) -> None:
    with sklearn_server.client() as client:
        response = client.post("/predict", json={"instances": IRIS_ROWS})
    assert response.status_code == 200
    body = response.json()
    assert body["predictions"] == iris_classifier.predict(np.asarray(IRIS_ROWS)).tolist()
    assert body["model_name"] == "iris" and body["model_version"] == "3"
    assert response.headers["content-type"] == "application/json"


def test_v2_server_endpoints(sklearn_server: ServerProcess) -> None:
    with sklearn_server.client() as client:
        metadata = client.get("/v2")
        assert metadata.status_code == 200
        assert metadata.json() == {"name": "custom_server", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
        assert client.get("/v2/").json() == metadata.json()
        assert client.get("/v2/health/live").json() == {"live": True}
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_v2_model_metadata_and_ready(sklearn_server: ServerProcess) -> None:
    with sklearn_server.client() as client:
        metadata = client.get("/v2/models/iris")
        assert metadata.status_code == 200
        body = metadata.json()
        assert body["name"] == "iris" and body["versions"] == ["3"] and body["platform"] == "sklearn"
        assert body["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
        outputs = {item["name"]: item for item in body["outputs"]}
        assert outputs["predict"] == {"name": "predict", "datatype": "INT64", "shape": [-1]}
        assert outputs["predict_proba"]["shape"] == [-1, 3]
        assert client.get("/v2/models/iris/versions/3").json() == body
        assert client.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
        assert client.get("/v2/models/iris/versions/3/ready").json() == {"name": "iris", "ready": True}


def test_v2_infer(sklearn_server: ServerProcess, iris_classifier: Any) -> None:
    with sklearn_server.client() as client:
        response = client.post("/v2/models/iris/infer", json=_v2_request(IRIS_ROWS, id="req-42"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "iris" and body["model_version"] == "3" and body["id"] == "req-42"
    [output] = body["outputs"]
    _check_response_output(output)
    assert output["name"] == "predict" and output["datatype"] == "INT64" and output["shape"] == [3]
    assert output["data"] == iris_classifier.predict(np.asarray(IRIS_ROWS)).tolist()


def test_v2_infer_requested_outputs_nested_data_and_version(
    sklearn_server: ServerProcess, iris_classifier: Any
) -> None:
    request = {
        "inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": IRIS_ROWS}],  # nested is allowed
        "outputs": [{"name": "predict_proba"}, {"name": "predict"}],
    }
    with sklearn_server.client() as client:
        response = client.post("/v2/models/iris/versions/3/infer", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "id" not in body
    proba, labels = body["outputs"]
    assert [proba["name"], labels["name"]] == ["predict_proba", "predict"]
    _check_response_output(proba)
    assert proba["datatype"] == "FP64" and proba["shape"] == [3, 3]
    expected = iris_classifier.predict_proba(np.asarray(IRIS_ROWS, dtype=np.float32)).reshape(-1)
    np.testing.assert_allclose(proba["data"], expected, rtol=1e-6)


def test_v2_binary_tensor_extension(sklearn_server: ServerProcess, iris_classifier: Any) -> None:
    array = np.asarray(IRIS_ROWS, dtype="<f4")
    header = {
        "inputs": [
            {"name": "x", "shape": [3, 4], "datatype": "FP32", "parameters": {"binary_data_size": array.nbytes}}
        ],
        "outputs": [{"name": "predict", "parameters": {"binary_data": True}}, {"name": "predict_proba"}],
    }
    json_part = httpx.Request("POST", "http://x", json=header).content
    with sklearn_server.client() as client:
        response = client.post(
            "/v2/models/iris/infer",
            content=json_part + array.tobytes(),
            headers={
                "Inference-Header-Content-Length": str(len(json_part)),
                "Content-Type": "application/octet-stream",
            },
        )
    assert response.status_code == 200, response.text
    size = int(response.headers["inference-header-content-length"])
    head = httpx.Response(200, content=response.content[:size]).json()
    labels, proba = head["outputs"]
    assert labels["parameters"] == {"binary_data_size": 3 * 8} and "data" not in labels
    values = np.frombuffer(response.content[size:], dtype="<i8")
    assert values.tolist() == iris_classifier.predict(array).tolist()
    assert proba["shape"] == [3, 3] and len(proba["data"]) == 9  # not asked in binary: JSON


def test_v2_errors_name_the_field(sklearn_server: ServerProcess) -> None:
    cases: list[tuple[Any, int, str]] = [
        (
            {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]},
            400,
            "inputs[0].shape",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FLOAT", "data": [1, 2, 3, 4]}]},
            400,
            "inputs[0].datatype",
        ),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]}, 400, "inputs[0].data"),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ["a", "b", "c", "d"]}]},
            400,
            "inputs[0].data",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, -4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
            400,
            "inputs[0].shape[1]",
        ),
        ({"inputs": [{"shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, 400, "inputs[0].name"),
        ({"inputs": []}, 400, "inputs"),
        ({"id": "1"}, 400, "inputs"),
        (_v2_request(IRIS_ROWS[:1], outputs=[{"name": "nope"}]), 400, "outputs[0].name"),
        ([1, 2], 400, "body"),
    ]
    with sklearn_server.client() as client:
        for body, status, field in cases:
            response = client.post("/v2/models/iris/infer", json=body)
            assert response.status_code == status, (body, response.text)
            error = response.json()
            assert list(error) == ["error"], error
            assert field in error["error"], (field, error)
        broken = client.post(
            "/v2/models/iris/infer", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 400 and "JSON" in broken.json()["error"]


def test_v2_unknown_model_or_version_is_404(sklearn_server: ServerProcess) -> None:
    with sklearn_server.client() as client:
        for method, path in [
            ("GET", "/v2/models/other"),
            ("GET", "/v2/models/other/ready"),
            ("GET", "/v2/models/iris/versions/9"),
            ("GET", "/v2/models/iris/versions/9/ready"),
            ("POST", "/v2/models/other/infer"),
            ("POST", "/v2/models/iris/versions/9/infer"),
        ]:
            response = client.request(method, path, json=_v2_request(IRIS_ROWS[:1]))
            assert response.status_code == 404, (path, response.text)
            assert list(response.json()) == ["error"]
        assert client.get("/nowhere").json() == {"error": "Not Found"}
        assert client.delete("/predict").status_code == 405


def test_predict_validation_names_the_field(sklearn_server: ServerProcess) -> None:
    with sklearn_server.client() as client:
        missing = client.post("/predict", json={"rows": IRIS_ROWS})
        assert missing.status_code == 422
        assert "instances" in missing.json()["error"]
        assert missing.json()["detail"][0]["loc"] == ["body", "instances"]
        empty = client.post("/predict", json={"instances": []})
        assert empty.status_code == 422 and "instances" in empty.json()["error"]
        wrong_width = client.post("/predict", json={"instances": [[1.0, 2.0]]})
        assert wrong_width.status_code == 422
        assert "instances" in wrong_width.json()["error"] and "4" in wrong_width.json()["error"]
        not_numbers = client.post("/predict", json={"instances": [["a", "b", "c", "d"]]})
        assert not_numbers.status_code == 422
        assert not_numbers.json()["error"].startswith("instances: the model rejected the input")


def test_body_size_limit(sklearn_server: ServerProcess) -> None:
    big = b'{"instances": [' + b"[1.0, 2.0, 3.0, 4.0]," * 60_000 + b"[1.0, 2.0, 3.0, 4.0]]}"
    assert len(big) > 1024 * 1024
    with sklearn_server.client() as client:
        response = client.post("/predict", content=big, headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert "MAX_REQUEST_BYTES" in response.json()["error"]

        def chunks() -> Any:  # no Content-Length: the limit applies while reading
            for start in range(0, len(big), 65536):
                yield big[start : start + 65536]

        chunked = client.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413
        assert client.get("/health/ready").status_code == 200


def test_request_id_and_json_logs(sklearn_server: ServerProcess) -> None:
    with sklearn_server.client() as client:
        given = client.post("/predict", json={"instances": IRIS_ROWS[:1]}, headers={"X-Request-ID": "trace-abc.1"})
        assert given.headers["x-request-id"] == "trace-abc.1"
        generated = client.get("/health/live").headers["x-request-id"]
        assert generated and generated != "trace-abc.1"
    entry = sklearn_server.wait_for_log(lambda e: e.get("request_id") == "trace-abc.1")
    assert entry["logger"] == "custom_server.access"
    assert entry["model"] == "iris" and entry["model_version"] == "3"
    assert entry["method"] == "POST" and entry["path"] == "/predict" and entry["status"] == 200
    assert entry["duration_ms"] >= 0 and entry["level"] == "info" and entry["ts"].endswith("Z")
    startup = sklearn_server.wait_for_log(lambda e: "settings" in e)
    assert startup["settings"]["model_name"] == "iris"


def test_metrics(sklearn_server: ServerProcess) -> None:
    with sklearn_server.client() as client:
        client.post("/v2/models/iris/infer", json=_v2_request(IRIS_ROWS))
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "custom_server_requests_total", endpoint="/v2/models/{model_name}/infer", code="200") >= 1
    assert metric(text, "custom_server_request_duration_seconds_count", endpoint="/v2/models/{model_name}/infer") >= 1
    assert metric(text, "custom_server_batch_size_count", model="iris") >= 1
    assert metric(text, "custom_server_batch_size_sum", model="iris") >= 3
    assert "custom_server_queue_length" in text
    assert metric(text, "custom_server_model_load_duration_seconds", model="iris") > 0
    assert metric(text, "custom_server_model_ready", model="iris") == 1
    assert "custom_server_inference_duration_seconds_bucket" in text
    assert "custom_server_requests_in_flight" in text


def test_openapi_and_docs(sklearn_server: ServerProcess) -> None:
    with sklearn_server.client() as client:
        document = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = document["paths"]
    for path in (
        "/predict",
        "/health/live",
        "/health/ready",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
        "/metrics",
    ):
        assert path in paths, path
    schemas = document["components"]["schemas"]
    assert {"InferenceRequest", "InferenceResponse", "PredictRequest", "ErrorResponse"} <= set(schemas)
    infer = paths["/v2/models/{model_name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferenceRequest")


def test_binary_errors(sklearn_server: ServerProcess) -> None:
    header = b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}'
    with sklearn_server.client() as client:
        short = client.post(
            "/v2/models/iris/infer",
            content=header + b"\0" * 8,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        assert short.status_code == 400 and "binary_data_size" in short.json()["error"]
        bad_header = client.post(
            "/v2/models/iris/infer", content=header, headers={"Inference-Header-Content-Length": "999999"}
        )
        assert bad_header.status_code == 400 and "Inference-Header-Content-Length" in bad_header.json()["error"]
        extra = client.post(
            "/v2/models/iris/infer",
            content=header + struct.pack("<4f", 1, 2, 3, 4) + b"xx",
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        assert extra.status_code == 400 and "belong to no input" in extra.json()["error"]
