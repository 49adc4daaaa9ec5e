"""TorchScript, when torch is installed (it is not in requirements-dev.txt: the CUDA wheels are ~3 GB).

On a machine with a GPU the same test runs with DEVICE=cuda, and nvidia-smi must
list the server process as a compute process: the model really ran on the GPU.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from serverproc import running

torch = pytest.importorskip("torch")


def gpu_processes() -> set[int]:
    nvidia_smi = shutil.which("nvidia-smi")
    assert nvidia_smi
    out = subprocess.run(
        [nvidia_smi, "--query-compute-apps=pid", "--format=csv,noheader"], capture_output=True, text=True, check=True
    ).stdout
    return {int(line) for line in out.split() if line.strip().isdigit()}


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(
                not torch.cuda.is_available() or not shutil.which("nvidia-smi"), reason="no CUDA GPU here"
            ),
        ),
    ],
)
def test_torchscript_model(tmp_path: Path, device: str) -> None:
    module = torch.nn.Linear(3, 2)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0]]))
        module.bias.zero_()
    torch.jit.script(module).save(str(tmp_path / "linear.pt"))
    env = {"MODEL_PATH": str(tmp_path / "linear.pt"), "MODEL_NAME": "linear", "DEVICE": device}
    with running(env, tmp_path / "server.log") as server, server.client() as client:
        assert server.process is not None
        if device == "cuda":
            assert server.process.pid in gpu_processes(), server.log_text()
        assert client.get("/v2/models/linear").json()["platform"] == "pytorch_torchscript"
        request = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}
        body = client.post("/v2/models/linear/infer", json=request).json()
        assert body["outputs"] == [
            {"name": "output-0", "datatype": "FP32", "shape": [2, 2], "data": [6.0, -1.0, 15.0, -1.0]}
        ]
        assert client.post("/predict", json={"instances": [[1.0, 0.0, 0.0]]}).json()["predictions"] == [[1.0, 1.0]]
        wrong = client.post(
            "/v2/models/linear/infer",
            json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]},
        )
        assert wrong.status_code == 400 and "rejected the input" in wrong.json()["error"]
