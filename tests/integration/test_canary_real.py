"""Issue 15's acceptance on the local cluster's real node: doubler-python-cpu (custom_python, its real /metrics) with a
canary of split replicas, under a bounded load through its Service the whole time.

- a good version is promoted through every step; each step's measured canary share is within TOLERANCE points of
  the share its pods give (25% of 4, then 50%, then 75%), and no request fails (the issue's "requests lost during
  a promoted rollout"); each step's duration against its 20 s pause is printed;
- a version whose every inference fails (``model_class: functools:singledispatch``: the model "class" is a
  dispatcher to a string, so each call raises TypeError) is aborted at the first step: custom_server answers it with
  400, and the analysis fails a canary that refuses (4xx) what the stable version accepts;
- a version that answers 20 % errors (the example model's test aid ``DOUBLER_ERROR_SHARE=0.2``: every 5th inference
  raises, custom_server answers 500) is aborted at the first step, the stable version keeps serving, and the errors
  the load saw are at most the first step's share of it (25 % of the pods x 20 %, with a margin);
- a slow version (custom_server batching with a fixed 900 ms wait for more requests) is aborted by its p99.

With ``analysis.metrics: prometheus`` and ``ai_serving_canary_prometheus_url`` pointing at a real Prometheus (Debian's,
a host process scraping the test's namespace every second: prometheus_tools.py), the same canary:

- a URL where nothing listens, and one where a Prometheus answers 404 (a wrong path), stop it before anything of it
  is applied, quoting the error;
- a good version is promoted through every step, every check line saying its figures come from the Prometheus;
  each step's shares as above, and the requests both versions served by the last check within PROM_TOLERANCE of what
  the load sent meanwhile;
- a version that answers 20 % errors is aborted at the first step, the errors Prometheus counted no more than the
  clients saw, and at most PROM_ERROR_LAG fewer (those of the Prometheus' lag and of the abort itself).

Skipped without the real node (AI_SERVING_REAL_NODE=0). Durations and counts are printed for the report.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from playbooks import run_playbook
from prometheus_tools import HostPrometheus, free_port, host_prometheus
from serving_tools import Load, catalog, proxy_for, wait_for
from test_deploy_safety import real_node_namespace

MODEL = "doubler-python-cpu"
#: Points of percentage a step's measured canary share may be off the share its pods give.
TOLERANCE = 15.0
#: Three steps, as the issue measures (the duration against the pauses).
STEPS = [{"weight": 25, "pause": "20s"}, {"weight": 50, "pause": "20s"}, {"weight": 75, "pause": "20s"}]
CANARY = {"steps": STEPS, "split": "replicas",
          "analysis": {"interval": "5s", "min_requests": 15, "error_ratio": {"max": 0.05},
                       "p99_latency": {"max": "500ms"}}}
STEP_LINE = re.compile(r"Canary \| Step (\d+): (\d+)% for \S+ \((\d+) canary, (\d+) stable pod\(s\)\) \[\w+\] "
                       r"([\d.]+)s: step \d+ \(\d+%\): canary (\d+) requests.*?\(share ([\d.]+)%\)")


def models(release: str, **custom_python: Any) -> Dict[str, Any]:
    entries = copy.deepcopy(catalog())
    entry = entries[MODEL]
    entry["replicas"] = 4
    entry["strategy"] = dict(entry.get("strategy") or {}, canary=CANARY)
    entry["env"] = dict(entry.get("env") or {}, RELEASE=release, **custom_python.pop("env", {}))
    entry["custom_python"].update(custom_python)
    return entries


@pytest.fixture(scope="module")
def real(kubeconfig: str, core_v1) -> Iterator[Dict[str, Any]]:
    with real_node_namespace(kubeconfig, core_v1, "t-canary-real", extra("", models("1"))) as found:
        yield found


def extra(namespace: str, entries: Dict[str, Any]) -> Dict[str, Any]:
    return {"model": MODEL, "ai_namespace_name": namespace, "ai_serving_models": entries}


def steps_of(output: str) -> List[Tuple[int, int, int, int, float, int, float]]:
    return [(int(m[1]), int(m[2]), int(m[3]), int(m[4]), float(m[5]), int(m[6]), float(m[7]))
            for m in STEP_LINE.finditer(output)]


def release(apps_v1, namespace: str) -> str:
    dep = apps_v1.read_namespaced_deployment(MODEL, namespace)
    return {e.name: e.value for e in dep.spec.template.spec.containers[0].env}["RELEASE"]


def deploy_under_load(real: Dict[str, Any], kubeconfig: str, api_client, entries: Dict[str, Any], **more: Any):
    with Load(proxy_for(api_client, real["namespace"], "custom_python"), "custom_python", catalog()[MODEL]["smoke"],
              rate=8) as load:
        started = time.monotonic()
        run = run_playbook("deploy_model.yml", kubeconfig, {**extra(real["namespace"], entries), **more},
                           env=real["env"], timeout=900)
        seconds = time.monotonic() - started
        time.sleep(2)
    return run, load, seconds


def test_a_good_canary_is_promoted_through_every_step(real: Dict[str, Any], kubeconfig: str, api_client,
                                                      apps_v1) -> None:
    run, load, seconds = deploy_under_load(real, kubeconfig, api_client, models("2"))
    line = load.report("a good canary, promoted")
    assert run.returncode == 0, run.explain()
    found = steps_of(run.output)
    assert [(s[0], s[1], s[2], s[3]) for s in found] == [(1, 25, 1, 3), (2, 50, 2, 2), (3, 75, 3, 1)], run.explain()
    for number, weight, canary_pods, stable_pods, step_s, requests, share in found:
        print(f"step {number}: {weight}% ({canary_pods}+{stable_pods} pods) took {step_s:.1f} s for a 20 s pause; "
              f"canary {requests} requests, share {share:.1f}%")
        assert abs(share - 100.0 * canary_pods / (canary_pods + stable_pods)) <= TOLERANCE, run.explain()
    promote = re.search(r"Canary \| Promote: .*? \[changed\] ([\d.]+)s", run.output)
    print(f"deploy {seconds:.1f} s; promotion {promote[1] if promote else '?'} s")
    assert release(apps_v1, real["namespace"]) == "2"
    assert apps_v1.list_namespaced_deployment(real["namespace"], label_selector="creativeflow.ai/track=canary").items == []
    assert load.sent >= 40, line
    assert load.failures == [], f"{line}: {load.failures[:10]}"


def test_a_failing_canary_is_aborted_at_the_first_step(real: Dict[str, Any], kubeconfig: str, api_client,
                                                       apps_v1) -> None:
    before = release(apps_v1, real["namespace"])
    run, load, _seconds = deploy_under_load(real, kubeconfig, api_client,
                                            models("3", model_class="functools:singledispatch"))
    line = load.report("a canary that fails every inference, aborted")
    assert run.returncode != 0, run.explain()
    # custom_server answers a model that raises with 400: the canary refuses what the stable version accepts.
    assert f"The canary of {MODEL} was aborted at step 1: refuses 1.000 of its requests" in run.output, run.explain()
    assert release(apps_v1, real["namespace"]) == before
    print(f"errors clients saw: {len(load.failures)} of {load.sent}")
    # The canary had 1 pod of 4 until the abort: at most its share failed (with a margin for the random endpoints).
    assert len(load.failures) <= 0.25 * load.sent + 5, f"{line}: {load.failures[:10]}"
    # And the stable version answers after it.
    with Load(proxy_for(api_client, real["namespace"], "custom_python"), "custom_python",
              catalog()[MODEL]["smoke"], rate=8) as after:
        time.sleep(5)
    assert after.sent >= 20 and after.failures == [], after.failures[:5]


#: The share of inferences the faulty version fails (the issue's "a version that answers 20% errors").
ERROR_SHARE = 0.2


def test_a_canary_answering_20_percent_errors_is_aborted_at_the_first_step(real: Dict[str, Any], kubeconfig: str,
                                                                          api_client, apps_v1) -> None:
    before = release(apps_v1, real["namespace"])
    run, load, seconds = deploy_under_load(real, kubeconfig, api_client,
                                           models("5", env={"DOUBLER_ERROR_SHARE": str(ERROR_SHARE)}))
    line = load.report("a canary answering 20% errors, aborted")
    assert run.returncode != 0, run.explain()
    assert re.search(rf"The canary of {MODEL} was aborted at step 1: error ratio [\d.]+ \(\d+ of \d+ requests\) is "
                     r"above the bound 0.05", run.output), run.explain()
    assert release(apps_v1, real["namespace"]) == before
    assert apps_v1.list_namespaced_deployment(real["namespace"], label_selector="creativeflow.ai/track=canary").items == []
    # What clients saw: only the canary's injected faults (500, "model ... failed: RuntimeError"), and no more than
    # its first step allows: 1 pod of 4 (25 %) failing 20 % of what it gets, over the whole load (the canary ran for
    # part of it only), plus a margin for the random choice of endpoints.
    allowed = STEPS[0]["weight"] / 100 * ERROR_SHARE * load.sent + 5
    print(f"errors clients saw: {len(load.failures)} of {load.sent} requests (allowed {allowed:.1f}); deploy "
          f"{seconds:.1f} s")
    assert all("HTTP 500" in failure and "failed: RuntimeError" in failure for failure in load.failures), load.failures[:10]
    assert len(load.failures) <= allowed, f"{line}: {load.failures[:10]}"
    with Load(proxy_for(api_client, real["namespace"], "custom_python"), "custom_python",
              catalog()[MODEL]["smoke"], rate=8) as after:
        time.sleep(5)
    assert after.sent >= 20 and after.failures == [], after.failures[:5]


def test_a_slow_canary_is_aborted_by_its_p99(real: Dict[str, Any], kubeconfig: str, api_client, apps_v1) -> None:
    before = release(apps_v1, real["namespace"])
    run, load, _seconds = deploy_under_load(
        real, kubeconfig, api_client, models("4", env={"BATCH_POLICY": "fixed", "MAX_BATCH_DELAY_MS": "900"}))
    load.report("a slow canary, aborted")
    assert run.returncode != 0, run.explain()
    assert re.search(rf"The canary of {MODEL} was aborted at step 1: p99 \S+ is above the bound 500ms", run.output), \
        run.explain()
    assert release(apps_v1, real["namespace"]) == before
    assert load.failures == [], load.failures[:10]


# ---- analysis.metrics: prometheus, against a real Prometheus ----

#: The Prometheus' scrape interval: the analysis' figures lag the pods by up to this.
SCRAPE_INTERVAL = "1s"
#: custom_server's metrics: /metrics on the container port named http (runtimes.CUSTOM_PYTHON.metrics).
METRICS_PORT, METRICS_PATH = "http", "/metrics"
#: How far (a share of the expected) the requests both versions served by a step's last check, as Prometheus counted
#: them, may be off the load's rate times the check's seconds into the step: each end of the window is a scrape of
#: each pod up to a scrape interval before the read, and a new canary pod counts from its start, a few seconds
#: before the step's first read (the rollout wait and the stable version's scale-down).
PROM_TOLERANCE = 0.25
#: How many fewer errors Prometheus may have counted than the clients saw: the canary still serves 20 % errors
#: between the scrape the failing check read and its removal from the Service's endpoints (a scrape interval, the
#: query, the deletion and kube-proxy's sync: about 3 s at the canary's ~2 requests/s, 1-2 errors), and before
#: the step's first read.
PROM_ERROR_LAG = 5
CHECK_LINE = re.compile(r"^\s+(\d+)s: step (\d+) \((\d+)%\): canary (\d+) requests, error ratio (\S+?)[,;].*?"
                        r"\(share ([\d.]+)%\); stable (\d+) requests.*$", re.MULTILINE)


def prometheus_models(release_name: str, **custom_python: Any) -> Dict[str, Any]:
    entries = models(release_name, **custom_python)
    canary = entries[MODEL]["strategy"]["canary"]
    entries[MODEL]["strategy"]["canary"] = dict(canary, analysis=dict(canary["analysis"], metrics="prometheus"))
    return entries


@pytest.fixture(scope="module")
def prom(real: Dict[str, Any], kubeconfig: str) -> Iterator[HostPrometheus]:
    with host_prometheus(kubeconfig, real["namespace"], METRICS_PORT, METRICS_PATH, SCRAPE_INTERVAL) as server:
        print(f"\n{server.version}: scraping the namespace's pods every {SCRAPE_INTERVAL} at {server.url}")
        yield server


def scraped(prom: HostPrometheus, core_v1, namespace: str) -> None:
    """Wait until the Prometheus scraped every running pod of the namespace (the stable version's): a step's first
    read must find them, or their whole count since they started would be taken as the step's."""

    def running() -> List[str]:
        return sorted(p.metadata.name for p in core_v1.list_namespaced_pod(namespace).items
                      if p.status.phase == "Running" and p.metadata.deletion_timestamp is None)

    wait_for(lambda: set(running()) <= set(prom.scraped_pods(namespace)), 60,
             f"Prometheus at {prom.url} scraping every pod of {namespace}")


def checks_of(output: str) -> List[Tuple[int, int, int, int, str, float, int]]:
    """Each check line: (seconds into the step, step, weight, canary requests, canary error ratio, share, stable
    requests)."""
    return [(int(m[1]), int(m[2]), int(m[3]), int(m[4]), m[5], float(m[6]), int(m[7]))
            for m in CHECK_LINE.finditer(output)]


@pytest.mark.parametrize("where", ["refused", "wrong-path"])
def test_a_canary_whose_prometheus_does_not_answer_is_not_started(real: Dict[str, Any], prom: HostPrometheus,
                                                                 kubeconfig: str, apps_v1, where: str) -> None:
    before = release(apps_v1, real["namespace"])
    # Nothing listens at a free port; the Prometheus answers 404 under a path it does not serve.
    url = f"http://127.0.0.1:{free_port()}" if where == "refused" else prom.url + "/nope"
    started = time.monotonic()
    run = run_playbook("deploy_model.yml", kubeconfig,
                       {**extra(real["namespace"], prometheus_models("9")), "ai_serving_canary_prometheus_url": url},
                       env=real["env"], timeout=600)
    print(f"\n{where}: failed in {time.monotonic() - started:.1f} s")
    assert run.returncode != 0, run.explain()
    said = {"refused": "Connection refused", "wrong-path": "HTTP 404: 404 page not found"}[where]
    assert (f"strategy.canary of {MODEL}: analysis.metrics prometheus: no Prometheus answers a query at {url} "
            f"(ai_serving_canary_prometheus_url): ") in run.output, run.explain()
    assert said in run.output and "The canary was not started: nothing of it was applied." in run.output, \
        run.explain()
    assert release(apps_v1, real["namespace"]) == before
    assert apps_v1.list_namespaced_deployment(real["namespace"], label_selector="creativeflow.ai/track=canary").items == []


def test_a_good_canary_analysed_by_prometheus_is_promoted(real: Dict[str, Any], prom: HostPrometheus, kubeconfig: str,
                                                          api_client, core_v1, apps_v1) -> None:
    scraped(prom, core_v1, real["namespace"])
    run, load, seconds = deploy_under_load(real, kubeconfig, api_client, prometheus_models("6"),
                                           ai_serving_canary_prometheus_url=prom.url)
    line = load.report("a good canary analysed by Prometheus, promoted")
    assert run.returncode == 0, run.explain()
    source = f"figures from the Prometheus at {prom.url}"
    assert re.search(rf"Canary \| Start \[\w+\] [\d.]+s: .*; {re.escape(source)}", run.output), run.explain()
    found = steps_of(run.output)
    assert [(s[0], s[1], s[2], s[3]) for s in found] == [(1, 25, 1, 3), (2, 50, 2, 2), (3, 75, 3, 1)], run.explain()
    checks = checks_of(run.stdout)
    assert checks and all(source in m[0] for m in CHECK_LINE.finditer(run.stdout)), run.explain()
    rate = load.rate
    print(f"load {rate:.2f} requests/s; scrape interval {SCRAPE_INTERVAL}")
    for number, weight, canary_pods, stable_pods, step_s, requests, share in found:
        last = [c for c in checks if c[1] == number][-1]
        served, expected = last[3] + last[6], rate * last[0]
        print(f"step {number}: {weight}% ({canary_pods}+{stable_pods} pods) took {step_s:.1f} s for a 20 s pause; "
              f"Prometheus: canary {requests} requests, share {share:.1f}%; both versions {served} requests by "
              f"{last[0]} s into the step, the load sent {expected:.0f} meanwhile")
        assert abs(share - 100.0 * canary_pods / (canary_pods + stable_pods)) <= TOLERANCE, run.explain()
        assert abs(served - expected) <= PROM_TOLERANCE * expected, (served, expected, run.explain())
        assert last[4] == "0.000", run.explain()
    print(f"deploy {seconds:.1f} s")
    assert release(apps_v1, real["namespace"]) == "6"
    assert load.failures == [], f"{line}: {load.failures[:10]}"


def test_a_canary_answering_20_percent_errors_is_aborted_by_prometheus(real: Dict[str, Any], prom: HostPrometheus,
                                                                       kubeconfig: str, api_client, core_v1,
                                                                       apps_v1) -> None:
    before = release(apps_v1, real["namespace"])
    scraped(prom, core_v1, real["namespace"])
    run, load, seconds = deploy_under_load(real, kubeconfig, api_client,
                                           prometheus_models("7", env={"DOUBLER_ERROR_SHARE": str(ERROR_SHARE)}),
                                           ai_serving_canary_prometheus_url=prom.url)
    line = load.report("a canary answering 20% errors analysed by Prometheus, aborted")
    assert run.returncode != 0, run.explain()
    verdict = re.search(rf"The canary of {MODEL} was aborted at step 1: error ratio ([\d.]+) \((\d+) of (\d+) "
                        r"requests\) is above the bound 0.05", run.output)
    assert verdict, run.explain()
    assert re.search(rf"Canary \| Step 1: .*? \[failed\] .*?figures from the Prometheus at {re.escape(prom.url)}",
                     run.output), run.explain()
    errors, requests = int(verdict[2]), int(verdict[3])
    checks = checks_of(run.stdout)
    print(f"Prometheus: canary {errors} errors of {requests} requests at the abort, {checks[-1][0] if checks else '?'} "
          f"s into the step; clients saw {len(load.failures)} errors of {load.sent} requests; deploy {seconds:.1f} s")
    assert all("HTTP 500" in failure and "failed: RuntimeError" in failure for failure in load.failures), load.failures[:10]
    # Every error Prometheus counted, a client of the load saw (nothing else sends inferences); the clients saw at
    # most PROM_ERROR_LAG more.
    assert 1 <= errors <= len(load.failures) <= errors + PROM_ERROR_LAG, (errors, load.failures, run.explain())
    assert release(apps_v1, real["namespace"]) == before
    assert apps_v1.list_namespaced_deployment(real["namespace"], label_selector="creativeflow.ai/track=canary").items == []
    with Load(proxy_for(api_client, real["namespace"], "custom_python"), "custom_python",
              catalog()[MODEL]["smoke"], rate=8) as after:
        time.sleep(5)
    assert after.sent >= 20 and after.failures == [], after.failures[:5]
