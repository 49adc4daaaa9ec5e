"""Under load: dynamic batching, shedding instead of timing out, SIGTERM drains every in-flight request."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from serverproc import ServerProcess, metric, running


def _slow_env(artifacts: Path, delay: float, **settings: str) -> dict[str, str]:
    return {
        "MODEL_CLASS": f"{artifacts / 'test_user_model.py'}:RowSum",
        "MODEL_NAME": "rowsum",
        "TEST_MODEL_DELAY_S": str(delay),
        **settings,
    }


async def _fire(url: str, count: int, timeout: float = 30) -> list[tuple[int, Any, float]]:
    """``count`` concurrent /predict requests (row [i, i]); (status, body, seconds) each."""
    limits = httpx.Limits(max_connections=count + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def one(index: int) -> tuple[int, Any, float]:
            started = time.perf_counter()
            response = await client.post("/predict", json={"instances": [[index, index]]})
            return response.status_code, response.json(), time.perf_counter() - started

        return await asyncio.gather(*(one(index) for index in range(count)))


def _wait_in_flight(server: ServerProcess, count: int, timeout: float = 10) -> None:
    """Until ``count`` requests (besides the metrics scrape itself) are being served."""
    deadline = time.monotonic() + timeout
    with server.client() as client:
        while time.monotonic() < deadline:
            if metric(client.get("/metrics").text, "custom_server_requests_in_flight") >= count + 1:
                return
            time.sleep(0.02)
    raise AssertionError(f"{count} requests never got in flight")


def test_concurrent_requests_are_batched(artifacts: Path, tmp_path: Path) -> None:
    env = _slow_env(artifacts, 0.2, MAX_BATCH_SIZE="64")
    with running(env, tmp_path / "server.log") as server:
        results = asyncio.run(_fire(server.url, 24))
        assert [status for status, _, _ in results] == [200] * 24
        # every request got its own rows back out of the merged batch
        assert [body["predictions"] for _, body, _ in results] == [[2.0 * i] for i in range(24)]
        with server.client() as client:
            text = client.get("/metrics").text
    calls = metric(text, "custom_server_batch_requests_count", model="rowsum")
    assert metric(text, "custom_server_batch_requests_sum", model="rowsum") == 24
    assert metric(text, "custom_server_batch_size_sum", model="rowsum") == 24
    assert calls <= 6, f"24 concurrent requests took {calls} model calls: not batched"
    assert metric(text, "custom_server_batch_size_bucket", model="rowsum", le="1.0") < calls  # some batch > 1


def test_overload_is_shed_with_429_not_a_timeout(artifacts: Path, tmp_path: Path) -> None:
    env = _slow_env(artifacts, 0.5, MAX_BATCH_SIZE="1", MAX_QUEUE_SIZE="2", INFERENCE_THREADS="1")
    with running(env, tmp_path / "server.log") as server:
        results = asyncio.run(_fire(server.url, 12, timeout=20))
        statuses = [status for status, _, _ in results]
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(429) >= 6, statuses
        for status, body, seconds in results:
            if status == 429:
                assert "MAX_QUEUE_SIZE" in body["error"]
                assert seconds < 0.4, f"a shed request took {seconds:.2f} s"
        with server.client() as client:
            text = client.get("/metrics").text
            assert metric(
                text, "custom_server_requests_shed_total", model="rowsum", reason="queue_full"
            ) == statuses.count(429)
            # the server is healthy again once the burst is over
            assert client.post("/predict", json={"instances": [[1, 2]]}).json()["predictions"] == [3.0]


def test_shed_response_has_retry_after(artifacts: Path, tmp_path: Path) -> None:
    env = _slow_env(artifacts, 0.5, MAX_BATCH_SIZE="1", MAX_QUEUE_SIZE="1", INFERENCE_THREADS="1")
    with running(env, tmp_path / "server.log") as server:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
                return await asyncio.gather(
                    *(
                        client.post(
                            "/v2/models/rowsum/infer",
                            json={"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]}]},
                        )
                        for _ in range(6)
                    )
                )

        shed = [r for r in asyncio.run(burst()) if r.status_code == 429]
        assert shed and all(r.headers["retry-after"] == "1" and list(r.json()) == ["error"] for r in shed)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_under_load_loses_no_request(artifacts: Path, tmp_path: Path, workers: str) -> None:
    count = 16
    env = _slow_env(artifacts, 0.5, MAX_BATCH_SIZE="1", INFERENCE_THREADS="4", WORKERS=workers)
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:

        async def scenario() -> tuple[list[tuple[int, Any, float]], BaseException | None]:
            load = asyncio.ensure_future(_fire(server.url, count))
            await asyncio.to_thread(_wait_in_flight, server, count)
            server.signal(signal.SIGTERM)
            # Every worker closes its listener (at once on an idle machine, later on a loaded one): a
            # new connection is refused from then on, and one accepted before must still be answered.
            refused: BaseException | None = None
            dropped: list[str] = []
            deadline = time.monotonic() + 5
            while refused is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                try:
                    async with httpx.AsyncClient(base_url=server.url, timeout=10) as fresh:
                        await fresh.get("/health/live")
                except httpx.ConnectError as exc:
                    refused = exc
                except httpx.HTTPError as exc:
                    dropped.append(repr(exc))
            assert dropped == [], f"connections accepted after SIGTERM and dropped: {dropped}"
            return await load, refused

        results, refused = asyncio.run(scenario())
        assert refused is not None, "new connections were still accepted 5 s after SIGTERM"
        assert [status for status, _, _ in results] == [200] * count
        assert [body["predictions"] for _, body, _ in results] == [[2.0 * i] for i in range(count)]
        assert server.wait(timeout=30) == 0
    finally:
        server.stop()
    messages = [entry["message"] for entry in server.logs()]
    assert any("Shutting down" in message for message in messages)


def test_shutdown_delay_reports_not_ready_and_keeps_serving(artifacts: Path, tmp_path: Path) -> None:
    env = _slow_env(artifacts, 0.0, SHUTDOWN_DELAY_S="1.5")
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        with server.client() as client:
            server.signal(signal.SIGTERM)
            time.sleep(0.2)
            ready = client.get("/health/ready")
            assert ready.status_code == 503 and ready.json()["status"] == "draining"
            assert client.get("/v2/health/ready").status_code == 503
            assert client.post("/predict", json={"instances": [[1, 1]]}).status_code == 200
        started = time.monotonic()
        assert server.wait(timeout=20) == 0
        assert time.monotonic() - started < 10
    finally:
        server.stop()


@pytest.mark.parametrize("policy", ["fixed", "cost"])
def test_batch_size_follows_the_model_cost(artifacts: Path, tmp_path: Path, policy: str) -> None:
    """A model with a large fixed cost per call, 8-row requests: a fixed 32-row cap merges 4 requests
    per call; the cost policy measures the calls and merges what waits (issue 17)."""
    env = _slow_env(artifacts, 0.05, MAX_BATCH_SIZE="32", BATCH_POLICY=policy, MAX_LATENCY_MS="200")
    with running(env, tmp_path / "server.log") as server:

        async def wave() -> list[int]:
            limits = httpx.Limits(max_connections=52)
            async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
                rows = [[1.0, 2.0]] * 8
                responses = await asyncio.gather(
                    *(client.post("/predict", json={"instances": rows}) for _ in range(48))
                )
            assert all(r.json()["predictions"] == [3.0] * 8 for r in responses)
            return [r.status_code for r in responses]

        for _ in range(3):
            assert asyncio.run(wave()) == [200] * 48
        with server.client() as client:
            text = client.get("/metrics").text
    calls = metric(text, "custom_server_batch_requests_count", model="rowsum")
    at_most_4 = metric(text, "custom_server_batch_requests_bucket", model="rowsum", le="4.0")
    if policy == "fixed":
        assert at_most_4 == calls, "a 32-row cap merged more than four 8-row requests"
    else:
        assert at_most_4 < calls, "the cost policy never merged more than four 8-row requests"
        assert calls < 144 / 4, f"{calls} model calls for 144 requests"
