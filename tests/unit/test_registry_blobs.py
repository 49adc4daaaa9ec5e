"""cluster/registry_blobs.py: the blob store the pods' registry redirects blob GETs to (Ollama's pull needs it)."""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import threading
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import pytest

SPEC = importlib.util.spec_from_file_location(
    "registry_blobs", Path(__file__).resolve().parents[2] / "cluster" / "registry_blobs.py")
registry_blobs = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(registry_blobs)

DATA = bytes(range(256)) * 40  # 10240 bytes
HEX = hashlib.sha256(DATA).hexdigest()
# Where docker-registry's filesystem driver keeps the blob, as its redirect middleware names it.
BLOB = f"/docker/registry/v2/blobs/sha256/{HEX[:2]}/{HEX}/data"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, int]]:
    tmp_path = tmp_path_factory.mktemp("registry")
    blob = tmp_path / BLOB.lstrip("/")
    blob.parent.mkdir(parents=True)
    blob.write_bytes(DATA)
    (tmp_path / "docker/registry/v2/repositories").mkdir(parents=True)
    (tmp_path / "docker/registry/v2/repositories/secret").write_text("not a blob")
    server = registry_blobs.serve(str(tmp_path), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[:2]
    server.shutdown()
    server.server_close()


def request(store: Tuple[str, int], method: str, path: str,
            headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*store, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_a_blob_is_served_whole_with_its_length(store) -> None:
    status, headers, body = request(store, "GET", BLOB)
    assert status == 200 and body == DATA
    assert headers["content-length"] == str(len(DATA)) and headers["accept-ranges"] == "bytes"
    status, headers, body = request(store, "HEAD", BLOB)
    assert status == 200 and body == b"" and headers["content-length"] == str(len(DATA))


@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=0-99", 0, 99),
    ("bytes=5000-", 5000, len(DATA) - 1),
    ("bytes=10000-99999", 10000, len(DATA) - 1),  # the end is clipped to the file
    ("bytes=-240", len(DATA) - 240, len(DATA) - 1),
])
def test_a_byte_range_is_served_as_partial_content(store, header: str, first: int, last: int) -> None:
    # Ollama downloads a blob over 100 MB in parts, each part one Range request to the redirect's URL.
    status, headers, body = request(store, "GET", BLOB, {"Range": header})
    assert status == 206 and body == DATA[first:last + 1]
    assert headers["content-range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert headers["content-length"] == str(last - first + 1)


def test_a_range_past_the_end_is_not_satisfiable(store) -> None:
    status, headers = request(store, "GET", BLOB, {"Range": f"bytes={len(DATA)}-"})[:2]
    assert status == 416 and headers["content-range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize("header", ["items=0-5", "bytes=0-5,10-20", "bytes=-"])
def test_a_range_it_does_not_take_gets_the_whole_blob(store, header: str) -> None:
    answer = request(store, "GET", BLOB, {"Range": header})
    assert answer[0] == 200 and answer[2] == DATA


@pytest.mark.parametrize("path", [
    "/docker/registry/v2/repositories/secret",
    f"/docker/registry/v2/blobs/sha256/{HEX[:2]}/{HEX}/../../../../repositories/secret",
    f"/docker/registry/v2/blobs/sha256/{HEX[:2]}/{HEX}/%2e%2e/data",
    f"/docker/registry/v2/blobs/sha256/{HEX[:2]}/{'0' * 64}/data",
    "/v2/",
])
def test_only_blob_files_are_served(store, path: str) -> None:
    assert request(store, "GET", path)[0] == 404


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "PATCH"])
def test_it_is_read_only(store, method: str) -> None:
    assert request(store, method, BLOB)[0] == 405
    assert request(store, "GET", BLOB)[2] == DATA


def test_byte_range_reads_the_header_as_rfc_9110_says() -> None:
    assert registry_blobs.byte_range(None, 10) is None
    assert registry_blobs.byte_range("bytes=2-4", 10) == (2, 4)
    assert registry_blobs.byte_range("bytes=-100", 10) == (0, 9)
    for header in ("bytes=5-2", "bytes=10-", "bytes=-0"):
        with pytest.raises(registry_blobs.RangeNotSatisfiable):
            registry_blobs.byte_range(header, 10)
