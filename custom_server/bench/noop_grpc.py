"""The gRPC ceiling: a no-op ModelInfer on grpc.aio (the stack our gRPC front end runs on).

The request is not parsed and the answer is a fixed message: what the gRPC stack alone costs.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc

from custom_server.grpc import grpc_predict_v2_pb2 as pb

_ANSWER = pb.ModelInferResponse(model_name="noop")
_ANSWER.outputs.add(name="predict", datatype="INT64", shape=[8]).contents.int64_contents.extend([0] * 8)


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:``port`` until killed."""

    async def infer(request: bytes, context: Any) -> pb.ModelInferResponse:
        return _ANSWER

    handler = grpc.unary_unary_rpc_method_handler(infer, response_serializer=pb.ModelInferResponse.SerializeToString)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {"ModelInfer": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))
