"""Run gcp-storage-emulator with a byte-exact multipart upload parser and crash-safe writes.

The stock emulator parses gcsfs's `multipart/related` uploads with Python's email parser,
which treats a body's trailing `\\r` plus gcsfs's `\\n` separator as one line break and
drops the `\\r`: about one PNG in 256 ends in 0x0D and would arrive one byte short.
Here the body ends exactly where the separator the upload itself uses begins.

The stock emulator also rewrites its object index (`.meta`) and object files in place, so a SIGKILL
mid-write leaves a store it cannot start from again. A real bucket survives its server's crash; the
fault tests kill this one, so every write goes to a temporary file that replaces the old one whole.

Usage: python tests/gcs_emulator.py start --host 127.0.0.1 --port N [--in-memory]
"""

import json
import os
import re
import sys
import tempfile

from gcp_storage_emulator import server, storage
from gcp_storage_emulator.__main__ import main


def split_related(raw: bytes, content_type: str) -> dict:
    """The metadata and content parts of a `multipart/related` body, byte for byte."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type).group(1).encode()
    delimiter = b"--" + boundary
    first_line_end = raw.index(b"\n", raw.index(delimiter))
    newline = b"\r\n" if raw[first_line_end - 1:first_line_end] == b"\r" else b"\n"
    parts = raw.split(newline + delimiter)
    # parts: [--boundary + meta part, content part, "--" + epilogue]
    meta_part, content_part = parts[0][len(delimiter):], parts[1]
    blank = newline + newline
    meta_headers, meta = meta_part.split(blank, 1)
    content_headers, content = content_part.split(blank, 1)
    part_type = re.search(rb"content-type:\s*([^\r\n;]+)", content_headers, re.I)
    return {
        "meta": json.loads(meta),
        "content": content,
        "content-type": part_type.group(1).decode() if part_type else "application/octet-stream",
    }


def _patched_read_data(stock_read_data):
    def read_data(request_handler, query):
        content_type = request_handler.headers.get("Content-Type") or ""
        if not content_type.startswith("multipart/related"):
            return stock_read_data(request_handler, query)
        raw = server._decode_raw_data(server._read_raw_data(request_handler), request_handler)
        return split_related(raw, content_type) if raw else None

    return read_data


def _patched_write_bytes(stock_write_bytes):
    def write_bytes(self, rel: str, content: bytes) -> None:
        if self._use_memory:
            return stock_write_bytes(self, rel, content)
        path = self._disk_path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".partial-", delete=False) as partial:
            partial.write(content)
        os.replace(partial.name, path)

    return write_bytes


if __name__ == "__main__":
    server._read_data = _patched_read_data(server._read_data)
    storage._FileStore.write_bytes = _patched_write_bytes(storage._FileStore.write_bytes)
    sys.exit(main())
