"""The output's storage, one door for every file operation of the driver and of `compact`, `reindex` and `report`.

Everything goes through Beam's `FileSystems`, configured once with the command's pipeline options (`use_options`),
so an s3:// or gs:// output is reached with the same endpoint and credentials as the workers use (they get the
options from the runner), and a local path the same way. Without the options Beam's S3 filesystem cannot even be
built ("Must provide one of client or options").

Beam's S3 filesystem builds a new boto3 session and client for every file operation, which costs 0.3 s of loading
botocore's service models each time (against ~10 ms for the request itself to a server on loopback; a run writing
the bundled samples to S3 took 4m41s instead of 19 s). `use_options` therefore has the boto3 that Beam's S3 client
module uses build one client per distinct set of arguments in this process (boto3 clients are thread-safe), for the
driver and the in-process workers. tests/pipeline/test_object_storage.py fails when Beam stops building its clients
through `boto3.session.Session().client(...)`; then drop `_share_s3_clients` or follow Beam.

Object stores have no rename: Beam's is a copy, then a delete. What the commit protocol needs from a store is only
that a file appears whole or not at all, which a finished upload (or a copy) gives; so `write_atomically` writes an
object in one upload, and a local file through a temporary name and a rename.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import types
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

_LOG = logging.getLogger("newsbeam")

_options: PipelineOptions | None = None


def use_options(options: PipelineOptions) -> None:
    """Reach every output path with `options` (endpoints, credentials, regions: Beam's --s3_*, --aws_*, GCP ones)."""
    global _options
    _options = options
    FileSystems.set_options(options)
    _share_s3_clients()


def _share_s3_clients() -> None:
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:  # Beam without its AWS part
        return
    if boto3_client.boto3 is not None and not isinstance(boto3_client.boto3, _SharedClients):
        boto3_client.boto3 = _SharedClients(boto3_client.boto3)


class _SharedClients:
    """The boto3 module as Beam's S3 client module sees it: the same, except that `session.Session(...).client(...)`
    gives one client per distinct set of arguments (endpoint, credentials, region...) in this process."""

    def __init__(self, boto3_module):
        self._boto3 = boto3_module
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.session = types.SimpleNamespace(Session=lambda *args, **kwargs: _SharedSession(self, args, kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._boto3, name)

    def client(self, session_args: tuple, session_kwargs: dict, args: tuple, kwargs: dict) -> Any:
        key = repr((session_args, sorted(session_kwargs.items()), args, sorted(kwargs.items())))
        with self._lock:
            if key not in self._clients:
                session = self._boto3.session.Session(*session_args, **session_kwargs)
                self._clients[key] = session.client(*args, **kwargs)
            return self._clients[key]


class _SharedSession:
    def __init__(self, shared: _SharedClients, args: tuple, kwargs: dict):
        self._shared, self._args, self._kwargs = shared, args, kwargs

    def client(self, *args: Any, **kwargs: Any) -> Any:
        return self._shared.client(self._args, self._kwargs, args, kwargs)


def options() -> PipelineOptions:
    """The options given to `use_options` (empty ones before)."""
    return _options if _options is not None else PipelineOptions([])


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def scheme(path: str) -> str:
    """'s3', 'gs', ... ('' for a local path)."""
    return "" if is_local(path) else path.split("://", 1)[0].lower()


def local_path(path: str) -> Path:
    return Path(path[len("file://") :] if path.startswith("file://") else path)


def match(pattern: str) -> list[str]:
    """The files matching `pattern` (Beam's glob: `*` within a directory, `**` across), sorted; [] when none."""
    return [m.path for m in _match_metadata(pattern)]


def has_files(prefix: str) -> bool:
    """Whether any file lies under `prefix` (a directory, or an object store's key prefix, which has no `exists`)."""
    try:
        return bool(FileSystems.match([FileSystems.join(prefix, "**")], limits=[1])[0].metadata_list)
    except Exception:
        return False


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def mkdirs(path: str) -> None:
    """Create a directory and its parents (object stores have none: nothing to do)."""
    try:
        FileSystems.mkdirs(path)
    except OSError:
        pass  # it exists


def delete(paths: list[str]) -> None:
    """Delete files, best effort: leftovers are ignored by readers and removed by a later run."""
    if paths:
        try:
            FileSystems.delete(paths)
        except Exception as err:
            _LOG.warning("could not delete %s: %s", paths, err)


def delete_tree(prefix: str) -> None:
    """Delete every file under `prefix` and, on a local disk, the directory itself."""
    if is_local(prefix):
        shutil.rmtree(local_path(prefix), ignore_errors=True)
    else:
        delete(match(FileSystems.join(prefix, "**")))


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read()


def write_atomically(path: str, data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a part. Locally: a temporary name, then a
    rename over the target (atomic on POSIX). On an object store an object appears when its upload completes, and
    replaces the old one whole; a temporary object would cost a copy and be left behind by a kill."""
    if not is_local(path):
        with FileSystems.create(path) as handle:
            handle.write(data)
        return
    mkdirs(path.rsplit("/", 1)[0])
    temporary = f"{path}.tmp-{os.getpid()}"
    with FileSystems.create(temporary) as handle:
        handle.write(data)
    FileSystems.rename([temporary], [path])


def write_json(path: str, document: Any) -> None:
    """Write a JSON document atomically."""
    write_atomically(path, json.dumps(document, indent=2, sort_keys=True, default=str).encode("utf-8"))


def read_parquet(path: str, **kwargs: Any) -> pa.Table:
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return pq.read_table(handle, **kwargs)


def write_parquet(path: str, table: pa.Table) -> None:
    """Write a Parquet file (zstd) atomically."""
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd")
    write_atomically(path, buffer.getvalue().to_pybytes())


def arrow_filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and path for reading `path` as a dataset (`pyarrow.dataset.dataset(path, filesystem=...)`):
    pyarrow's own for a local path, else one that reads through Beam's FileSystems with the command's options."""
    if is_local(path):
        return pafs.LocalFileSystem(), str(local_path(path))
    return pafs.PyFileSystem(_BeamReadHandler()), path


class _BeamReadHandler(pafs.FileSystemHandler):
    """Read-only pyarrow filesystem over Beam's FileSystems: listing and reading are all a dataset scan needs.
    Paths are full URLs (s3://bucket/key). Directories are implied by the keys: a listing yields files only."""

    def get_type_name(self) -> str:
        return "newsbeam-beam"

    def equals(self, other) -> bool:
        return isinstance(other, _BeamReadHandler)

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths):
        infos = []
        for path in paths:
            try:
                size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
                infos.append(pafs.FileInfo(path, pafs.FileType.File, size=size))
            except Exception:
                kind = pafs.FileType.Directory if has_files(path) else pafs.FileType.NotFound
                infos.append(pafs.FileInfo(path, kind))
        return infos

    def get_file_info_selector(self, selector):
        base = selector.base_dir.rstrip("/")
        pattern = FileSystems.join(base, "**" if selector.recursive else "*")
        found = [
            pafs.FileInfo(m.path, pafs.FileType.File, size=m.size_in_bytes)
            for m in _match_metadata(pattern)
            if selector.recursive or "/" not in m.path[len(base) + 1 :]
        ]
        if not found and not selector.allow_not_found:
            raise FileNotFoundError(selector.base_dir)
        return found

    def open_input_file(self, path: str):
        return pa.PythonFile(FileSystems.open(path, compression_type="uncompressed"), mode="r")

    def open_input_stream(self, path: str):
        return self.open_input_file(path)

    def _read_only(self, *args, **kwargs):
        raise NotImplementedError("newsbeam reads datasets through this filesystem, it never writes through it")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


def _match_metadata(pattern: str) -> list:
    try:  # Beam raises on an empty match (a prefix nothing was written under yet)
        return sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path)
    except Exception:
        return []
