"""The KServe peer: what a KServe user writes for a joblib model (KServe's sklearn server is not on PyPI)."""

from __future__ import annotations

import argparse
from typing import Any

import joblib
import kserve
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid


class Iris(kserve.Model):
    """``load`` calls joblib.load, ``predict`` calls the model (v1 ``instances`` and v2 tensors)."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.model: Any = None

    def load(self) -> bool:
        self.model = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            result = np.asarray(self.model.predict(payload.inputs[0].as_numpy()))
            output = InferOutput(name="predict", shape=list(result.shape), datatype="INT64", data=result.tolist())
            return InferResponse(
                model_name=self.name, infer_outputs=[output], response_id=payload.id or generate_uuid()
            )
        return {"predictions": self.model.predict(np.asarray(payload["instances"])).tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    model = Iris(args.model_name, args.model_path)
    model.load()
    kserve.ModelServer().start([model])
