"""One writer at a time: the output lock (`_state/lock`), held while a run, a compaction or a reindex changes the output.

The lock is a small JSON file naming its holder (pid, host, what it does), taken by an atomic create-if-absent:

- a local disk: `open(O_CREAT | O_EXCL)`;
- S3: `PutObject` with `If-None-Match: *` (AWS S3 since August 2024; other S3 servers may ignore it, see below);
- GCS: an upload with `ifGenerationMatch=0`.

A lock whose holder is a process on this host that no longer exists (a run killed with SIGKILL) is taken over, by a
conditional replace of exactly the stale content (S3 `If-Match: <etag>`, GCS `ifGenerationMatch=<generation>`), so
two runs that both find it stale cannot both win. A holder on another host cannot be checked from here: its lock
stays until it is released or deleted by hand (the refusal names the file).

Some servers accept the condition and ignore it (gcp-storage-emulator does; older S3-compatible servers may). Right
after taking the lock, a second conditional create of the same name checks that it is refused; when it is not, the
run goes on with a warning: the lock then still refuses a run that starts while another holds it, but two runs that
start in the same instant could both take it. One run at a time is then the scheduler's job (Airflow:
`max_active_runs=1`). Other filesystems (hdfs://, ...) have no lock here, with the same warning.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from typing import Protocol

from pipeline import storage
from pipeline.layout import OutputLayout

_LOG = logging.getLogger("newsbeam")


class LockHeld(RuntimeError):
    """Another live process is changing this output."""


class _LockFile(Protocol):
    """The conditional operations the lock needs from a store. A version names one content of the file (an S3 ETag,
    a GCS generation); `create` and `replace` return False when their condition failed."""

    def read(self) -> tuple[bytes | None, object]: ...

    def create(self, data: bytes) -> bool: ...

    def replace(self, data: bytes, version: object) -> bool: ...

    def delete(self) -> None: ...


class _LocalFile:
    def __init__(self, path: str):
        self._path = storage.local_path(path)

    def read(self) -> tuple[bytes | None, object]:
        try:
            return self._path.read_bytes(), None
        except FileNotFoundError:
            return None, None

    def create(self, data: bytes) -> bool:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True

    def replace(self, data: bytes, version: object) -> bool:
        # No compare-and-swap on a path: remove, then create exclusively (of two takers, one creates).
        self._path.unlink(missing_ok=True)
        return self.create(data)

    def delete(self) -> None:
        self._path.unlink(missing_ok=True)


class _S3Object:
    def __init__(self, url: str):
        from apache_beam.io.aws.clients.s3.boto3_client import Client

        self._client = Client(storage.options()).client  # the boto3 client Beam's S3 filesystem uses, same options
        self._bucket, self._key = url[len("s3://") :].split("/", 1)

    def read(self) -> tuple[bytes | None, object]:
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=self._key)
        except self._client.exceptions.NoSuchKey:
            return None, None
        return response["Body"].read(), response["ETag"]

    def _put(self, data: bytes, **condition: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=data, **condition)
        except ClientError as err:
            # 412: the condition failed; 409: another conditional write to the key was in flight and won.
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                return False
            raise
        return True

    def create(self, data: bytes) -> bool:
        return self._put(data, IfNoneMatch="*")

    def replace(self, data: bytes, version: object) -> bool:
        return self._put(data, IfMatch=str(version))

    def delete(self) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=self._key)


class _GcsObject:
    def __init__(self, url: str):
        from apache_beam.io.gcp.gcsio import create_storage_client

        bucket, name = url[len("gs://") :].split("/", 1)
        self._bucket = create_storage_client(storage.options()).bucket(bucket)  # as Beam's GCS filesystem builds it
        self._name = name

    def read(self) -> tuple[bytes | None, object]:
        from google.api_core.exceptions import NotFound

        blob = self._bucket.get_blob(self._name)
        if blob is None:
            return None, None
        generation = blob.generation  # before the download, which may reset it from the response's headers
        try:
            return blob.download_as_bytes(if_generation_match=generation), generation
        except NotFound:  # released between the two requests
            return None, None

    def _upload(self, data: bytes, generation: int) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        try:
            self._bucket.blob(self._name).upload_from_string(data, if_generation_match=generation)
        except PreconditionFailed:
            return False
        return True

    def create(self, data: bytes) -> bool:
        return self._upload(data, 0)

    def replace(self, data: bytes, version: object) -> bool:
        return self._upload(data, int(version))

    def delete(self) -> None:
        self._bucket.blob(self._name).delete()


_STORES = {"": _LocalFile, "file": _LocalFile, "s3": _S3Object, "gs": _GcsObject}


class OutputLock:
    """The exclusive lock on an output (see the module docstring). Raises LockHeld when another live process holds
    it. Object stores are reached with the options given to `pipeline.storage.use_options`."""

    def __init__(self, output: str, owner: str):
        self._path = OutputLayout(output).lock
        self._owner = owner
        self._file: _LockFile | None = None
        self._held = b""

    def __enter__(self) -> OutputLock:
        store = _STORES.get(storage.scheme(self._path))
        if store is None:
            _LOG.warning(
                "no lock on %s: newsbeam has no conditional create there; run one writer at a time",
                storage.scheme(self._path),
            )
            return self
        self._file = store(self._path)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "owner": self._owner, "since": time.time()}
        data = json.dumps({**holder, "token": secrets.token_hex(8)}).encode()
        for _ in range(3):
            current, version = self._file.read()
            if current is None:
                if self._file.create(data):
                    break
                continue  # another process created it in between: read who
            if not _stale(current):
                raise LockHeld(f"{self._path} is held by {current.decode(errors='replace').strip()}{self._hint()}")
            _LOG.warning("taking over stale lock %s (%s)", self._path, current.decode(errors="replace").strip())
            if self._file.replace(data, version):
                break
        else:
            raise LockHeld(f"cannot take {self._path}")
        self._held = data
        if not storage.is_local(self._path) and self._file.create(data):
            _LOG.warning(
                "the server of %s ignores conditional creates (If-None-Match / ifGenerationMatch): a run that starts "
                "while another holds the lock is refused, but two that start at once are not; run one at a time",
                self._path,
            )
        return self

    def _hint(self) -> str:
        if storage.is_local(self._path):
            return ""
        return "; if that run is dead (another host cannot be checked from here), delete the lock"

    def __exit__(self, *exc_info) -> None:
        if self._file is not None and self._held:
            current, _ = self._file.read()
            if current == self._held:  # never remove a lock that was taken over from us
                self._file.delete()
            self._held = b""


def _stale(content: bytes) -> bool:
    """Whether the lock's holder is a process of this host that no longer exists (or the lock is unreadable)."""
    try:
        holder = json.loads(content)
    except ValueError:
        return True  # a local writer died mid-write (an object is never half written)
    if not isinstance(holder, dict) or holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError):
        return False
    return False
