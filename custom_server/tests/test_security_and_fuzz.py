"""API key, CORS, secrets kept out of logs, and schemathesis fuzzing of the OpenAPI document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import IRIS_ROWS
from serverproc import ServerProcess, running

API_KEY = "sk-test-4f9c2e7d1b"
HF_TOKEN = "hf_Zx81mQpLw3Ty6vK"  # noqa: S105 - a fake secret that must never be logged


def test_api_key_cors_and_secrets_never_logged(artifacts: Path, tmp_path: Path) -> None:
    env = {
        "MODEL_CLASS": f"{artifacts / 'leaky_model.py'}:Leaky",
        "MODEL_NAME": "leaky",
        "API_KEY": API_KEY,
        "HF_TOKEN": HF_TOKEN,
        "CORS_ALLOW_ORIGINS": "https://app.example.com, https://admin.example.com",
        "ACCESS_LOG": "true",
    }
    with running(env, tmp_path / "server.log") as server, server.client() as client:
        body = {"instances": [[1, 2]]}
        denied = client.post("/predict", json=body)
        assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
        assert list(denied.json()) == ["error"]
        assert client.post("/predict", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/predict", json=body, headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
        assert client.post("/predict", json=body, headers={"X-API-Key": API_KEY}).status_code == 200
        assert client.get("/v2/models/leaky", headers={"X-API-Key": "nope"}).status_code == 401
        for open_path in ("/health/live", "/health/ready", "/v2/health/ready", "/v2", "/metrics", "/openapi.json"):
            assert client.get(open_path).status_code == 200, open_path
        allowed = client.options(
            "/predict", headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
        )
        assert allowed.headers.get("access-control-allow-origin") == "https://app.example.com"
        other = client.get("/health/live", headers={"Origin": "https://evil.example.net"})
        assert "access-control-allow-origin" not in other.headers
        server.wait_for_log(lambda e: e.get("logger") == "user.model")
        server.wait_for_log(lambda e: e.get("path") == "/openapi.json")
    text = server.log_text()
    assert API_KEY not in text and HF_TOKEN not in text
    leaked = server.wait_for_log(lambda e: e.get("logger") == "user.model")
    assert leaked["message"] == "loaded with token **********"
    startup = server.wait_for_log(lambda e: "settings" in e)
    assert startup["settings"]["api_key"] == "**********"


def test_wildcard_cors_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "custom_server", "--model-class", "x:y", "--cors-allow-origins", "*"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "CORS_ALLOW_ORIGINS" in result.stderr and "'*' is not allowed" in result.stderr


def _schemathesis(url: str, report: Path, phases: str, examples: int) -> subprocess.CompletedProcess[str]:
    # One worker: on Python 3.11 hypothesis' lambda descriptions hit a CPython ast.parse bug in threads.
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance,negative_data_rejection",
        "--max-examples",
        str(examples),
        "--seed",
        "20251123",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--phases",
        phases,
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    # Run where hypothesis' example database and reports land in the test's temporary directory.
    return subprocess.run(command, capture_output=True, text=True, timeout=240, check=False, cwd=report.parent)


def test_schemathesis_finds_no_server_error(sklearn_server: ServerProcess, tmp_path: Path) -> None:
    result = _schemathesis(sklearn_server.url, tmp_path / "junit.xml", "examples,coverage,fuzzing,stateful", 25)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "ST101" not in result.stdout  # the server-error check
    with sklearn_server.client() as client:
        assert client.post("/predict", json={"instances": IRIS_ROWS}).status_code == 200


def test_schemathesis_python_model_echoing_any_json(artifacts: Path, tmp_path: Path) -> None:
    env = {"MODEL_CLASS": f"{artifacts / 'test_user_model.py'}:make_echo", "MODEL_NAME": "m"}
    with running(env, tmp_path / "server.log") as server:
        result = _schemathesis(server.url, tmp_path / "junit.xml", "coverage,fuzzing", 20)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
