"""Real object-store servers on 127.0.0.1 for the tests, each a separate process speaking its protocol over HTTP:
moto's standalone server for S3, gcp-storage-emulator for GCS. A `Store` is one fresh bucket on one of them, with
what a newsbeam command needs to reach it (Beam options, environment) and an independent reader (pyarrow's own
filesystem for that store, not Beam's) to check what was written.

    with MotoServer() as server:
        store = server.bucket()
        main(["run", "--output", store.url("out"), *store.beam_args])
        ds.dataset(store.arrow_path("out/articles"), filesystem=store.arrow_fs)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """A server process started on a free port, stopped (and waited for) on exit."""

    def __init__(self, command: list[str], port: int, log: Path):
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self._command, self._log = command, log
        self._process: subprocess.Popen | None = None

    def __enter__(self):
        self._log.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2).close()
                return self
            except OSError as err:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"{self._command[2]} did not start: {self._log.read_text()[-2000:]}") from err
                time.sleep(0.1)

    def __exit__(self, *exc_info) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


class MotoServer(_Server):
    """moto's standalone S3 server (`moto_server`)."""

    def __init__(self, log: Path):
        port = free_port()
        super().__init__([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, log)

    def bucket(self) -> Store:
        import boto3

        name = f"news-{secrets.token_hex(4)}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
        beam_args = [
            f"--s3_endpoint_url={self.endpoint}",
            "--s3_access_key_id=test",
            "--s3_secret_access_key=test",
            "--s3_region_name=us-east-1",
        ]
        arrow_fs = pafs.S3FileSystem(
            access_key="test",
            secret_key="test",
            region="us-east-1",
            endpoint_override=f"127.0.0.1:{self.port}",
            scheme="http",
        )

        def keys(prefix: str) -> list[str]:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix)
            return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

        def put(key: str, data: bytes) -> None:
            client.put_object(Bucket=name, Key=key, Body=data)

        return Store("s3", name, beam_args, {}, arrow_fs, keys, put)


class GcsEmulator(_Server):
    """gcp-storage-emulator, in memory. Beam's GCS filesystem reaches it through STORAGE_EMULATOR_HOST (read by
    google-cloud-storage); Beam still looks for Google credentials first, so the environment names a credentials file
    holding an unexpired access token: nothing asks a token server, and no metadata server is probed."""

    def __init__(self, log: Path):
        port = free_port()
        command = [sys.executable, "-m", "gcp_storage_emulator", "start", "-H", "127.0.0.1", "--port", str(port), "-M"]
        super().__init__([*command, "-q"], port, log)
        self._credentials = log.parent / "gcs-credentials.json"

    def __enter__(self):
        super().__enter__()
        token = {"type": "authorized_user", "client_id": "test", "client_secret": "test", "refresh_token": "test"}
        self._credentials.write_text(json.dumps({**token, "token": "test", "expiry": "2099-01-01T00:00:00Z"}))
        return self

    @property
    def env(self) -> dict[str, str]:
        return {
            "STORAGE_EMULATOR_HOST": self.endpoint,
            "GOOGLE_APPLICATION_CREDENTIALS": str(self._credentials),
            "GOOGLE_CLOUD_PROJECT": "test",
            "NO_GCE_CHECK": "true",  # google-auth: this is no Compute Engine VM, do not probe its metadata server
        }

    def bucket(self) -> Store:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.endpoint}
        )
        name = f"news-{secrets.token_hex(4)}"
        bucket = client.create_bucket(name)
        arrow_fs = pafs.GcsFileSystem(
            anonymous=True, endpoint_override=f"127.0.0.1:{self.port}", scheme="http", project_id="test"
        )

        def keys(prefix: str) -> list[str]:
            return sorted(b.name for b in client.list_blobs(name, prefix=prefix))

        def put(key: str, data: bytes) -> None:
            bucket.blob(key).upload_from_string(data)

        return Store("gs", name, [], self.env, arrow_fs, keys, put)


class Store:
    """One bucket: `url(path)` for newsbeam, `beam_args` and `env` to reach it, `keys(prefix)` its object names,
    `arrow_fs` (pyarrow's filesystem for the store) and `arrow_path(path)` to read it independently of Beam."""

    def __init__(self, scheme, name, beam_args, env, arrow_fs, keys, put):
        self.scheme, self.name, self.beam_args, self.env = scheme, name, beam_args, env
        self.arrow_fs, self.keys, self.put = arrow_fs, keys, put

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.name}/{path}"

    def arrow_path(self, path: str) -> str:
        return f"{self.name}/{path}"

    def __repr__(self) -> str:
        return f"Store({self.url('')})"


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """`env` set in os.environ for the block (Beam's GCS client reads the emulator's address from it)."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
