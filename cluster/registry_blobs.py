#!/usr/bin/env python3
"""The blob store behind the pods' registry: the registry's blob files, read-only, at a second address.

    registry_blobs.py ROOT ADDRESS PORT

Registries that serve models do not send the blobs themselves: ollama.com answers a blob GET with a
redirect to its CDN, a docker registry on S3 or GCS storage with one to the bucket. The pods' registry
does the same here (docker-registry's `redirect` storage middleware, cluster/node.sh): it answers
GET /v2/<name>/blobs/<digest> with 307 to http://ADDRESS:PORT/docker/registry/v2/blobs/sha256/ab/<hex>/data,
which this serves from ROOT (the registry's storage). Ollama needs that redirect to another host: it reads
the blob's Location header even when a registry answers 200 with the blob (ollama/ollama#7244).

GET and HEAD of blob files only, with a byte range (Ollama fetches a large blob in parts); nothing else.
"""

from __future__ import annotations

import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, Tuple
from urllib.parse import unquote, urlsplit

# Where the registry's filesystem driver keeps a blob, as the redirect middleware names it.
BLOB_PATH = re.compile(r"^/docker/registry/v2/blobs/[a-z0-9]+/[0-9a-f]{2}/[0-9a-f]{32,}/data$")
CHUNK = 1 << 20


class RangeNotSatisfiable(ValueError):
    """A Range header no byte of the file satisfies (416)."""


def blob_file(root: Path, request_path: str) -> Optional[Path]:
    """The file a request asks for, or None when the path is not a blob's (only blob files are served)."""
    path = unquote(urlsplit(request_path).path)
    if not BLOB_PATH.match(path):
        return None
    return root / path.lstrip("/")


def byte_range(header: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """The first and last byte a Range header asks for (RFC 9110), or None for the whole file: no header,
    another unit or several ranges (a server may then send everything). Raises RangeNotSatisfiable."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(header)
    return start, end


class BlobHandler(BaseHTTPRequestHandler):
    """Serves blob files under the server's root; every other path is 404, every other method 405."""

    server_version = "ai-serving-registry-blobs"
    root = Path(".")

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.serve(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self.serve(body=False)

    def refuse(self) -> None:
        self.send_error(405, "read-only: GET and HEAD of blobs only")

    do_POST = do_PUT = do_PATCH = do_DELETE = refuse

    def serve(self, body: bool) -> None:
        path = blob_file(self.root, self.path)
        if path is None or not path.is_file():
            self.send_error(404, "no such blob")
            return
        size = path.stat().st_size
        try:
            wanted = byte_range(self.headers.get("Range"), size)
        except RangeNotSatisfiable:
            self.send_response(416)
            self.send_header("Content-Range", "bytes */%d" % size)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = wanted if wanted else (0, size - 1)
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if wanted:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        if not body:
            return
        with path.open("rb") as data:
            data.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = data.read(min(CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)


def serve(root: str, address: str, port: int) -> ThreadingHTTPServer:
    handler = type("Handler", (BlobHandler,), {"root": Path(root)})
    return ThreadingHTTPServer((address, port), handler)


def main(argv: list) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    server = serve(argv[1], argv[2], int(argv[3]))
    print("serving the blobs of %s on http://%s:%s" % (argv[1], argv[2], argv[3]), file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
