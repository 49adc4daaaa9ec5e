"""Generate the Python code of the Open Inference Protocol's gRPC service from its .proto.

    python custom_server/scripts/gen_grpc.py            # write src/custom_server/grpc/*_pb2*.py(i)
    python custom_server/scripts/gen_grpc.py --out DIR  # write them under DIR instead (the test compares)

Needs grpcio-tools (in requirements-dev.txt). The generated modules import each other as
``custom_server.grpc.*``, because the .proto is compiled from ``src`` with its package path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PROTO = Path("custom_server/grpc/grpc_predict_v2.proto")


def generate(out: Path) -> list[Path]:
    """Compile the .proto into ``out`` (a tree like ``src``); the files written."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={SRC}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO),
        ]
    )
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    return sorted((out / PROTO.parent).glob("*_pb2*"))


def main(argv: list[str] | None = None) -> int:
    """Generate, and name the files written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SRC, help="root to write under (default: src)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
