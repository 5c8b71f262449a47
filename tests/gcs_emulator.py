"""Run gcp-storage-emulator with a byte-exact multipart upload parser and crash-safe writes.

The stock emulator parses gcsfs's `multipart/related` uploads with Python's email parser,
which treats a body's trailing `\\r` plus gcsfs's `\\n` separator as one line break and
drops the `\\r`: about one PNG in 256 ends in 0x0D and would arrive one byte short.
Here the body ends exactly where the separator the upload itself uses begins.

The stock emulator also rewrites its object index (`.meta`) and object files in place, so a SIGKILL
mid-write leaves a store it cannot start from again. A real bucket survives its server's crash; the
fault tests kill this one, so every write goes to a temporary file that replaces the old one whole.
It also rewrites the whole index after every upload, which makes a push quadratic (10,000 files took
18 minutes). With `--lazy-index` (benchmarks only) the index is written at most every 0.2 s, between
requests; a crash then loses uploads the server had already acknowledged, which no real bucket does,
so the fault tests run without it.

Usage: python tests/gcs_emulator.py [--lazy-index] [emulator arguments: start --host ... --port ...]
"""

import json
import os
import re
import sys
import tempfile
import threading
import time
from http.server import HTTPServer

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


def _coalesce_index_writes(interval: float = 0.2) -> None:
    """Requests and index writes take turns under one lock, so the index is never dumped mid-update."""
    lock, dirty, stores = threading.Lock(), threading.Event(), []
    write_index = storage.Storage._write_config_to_file
    process_request = HTTPServer.process_request

    def mark_dirty(self) -> None:
        if self not in stores:
            stores.append(self)
        dirty.set()

    def locked_process_request(self, request, client_address) -> None:
        with lock:
            process_request(self, request, client_address)

    def flush_forever() -> None:
        while True:
            time.sleep(interval)
            if dirty.is_set():
                with lock:
                    dirty.clear()
                    for store in stores:
                        write_index(store)

    storage.Storage._write_config_to_file = mark_dirty
    HTTPServer.process_request = locked_process_request
    threading.Thread(target=flush_forever, daemon=True).start()


if __name__ == "__main__":
    if "--lazy-index" in sys.argv:
        sys.argv.remove("--lazy-index")
        _coalesce_index_writes()
    server._read_data = _patched_read_data(server._read_data)
    storage._FileStore.write_bytes = _patched_write_bytes(storage._FileStore.write_bytes)
    sys.exit(main(sys.argv[1:]))  # its default argument was bound to sys.argv at import
