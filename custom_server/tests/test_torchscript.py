"""TorchScript, when torch is installed (it is not in requirements-dev.txt: the CUDA wheels are ~3 GB)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serverproc import running

torch = pytest.importorskip("torch")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_model(tmp_path: Path) -> None:
    module = torch.nn.Linear(3, 2)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0]]))
        module.bias.zero_()
    torch.jit.script(module).save(str(tmp_path / "linear.pt"))
    env = {"MODEL_PATH": str(tmp_path / "linear.pt"), "MODEL_NAME": "linear", "DEVICE": "cpu"}
    with running(env, tmp_path / "server.log") as server, server.client() as client:
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
