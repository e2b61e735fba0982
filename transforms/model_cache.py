"""A local cache of decoded model arrays, so that only the first run on a machine pays for decoding a model.

py3langid ships its model LZMA-compressed (4.5 MB); decompressing it cost 0.41 s of CPU at every start of every run
(most of building a language detector). Its decoded arrays (68 MB) are kept in one file in the user's cache
directory and read back at disk speed (transforms/language_backends.py `py3langid_model`). So is the table a
`TextClassifier` derives from a model file at load (transforms/classifier_file.py), 0.2 s of CPU for the shipped
topic and pair models together.

    path = cache_file("py3langid-0.4.0-1a2b3c.bin")   # None when the cache is turned off
    arrays = read_arrays(path, key)                   # None when missing, stale, damaged or unreadable
    write_arrays(path, key, arrays)                   # atomic; False when it cannot be written

`key` names what the arrays were decoded from and how (for py3langid: its version and its model file's SHA-256); a
file holding another key is stale. A CRC-32 over the header and the data catches a damaged or partial file. Whatever a read does
not recognise is a miss, and the caller decodes the model as if there were no cache; a cache that cannot be written
only costs the decoding again next time. Writes go to a temporary file renamed over the cache file, so a reader (or
a run killed mid-write) never sees half a file.

The directory: $NEWSBEAM_CACHE_DIR, else $XDG_CACHE_HOME/newsbeam, else ~/.cache/newsbeam. NEWSBEAM_CACHE_DIR set to
the empty string turns the cache off. Deleting the directory at any time is safe.

File layout: MAGIC, the header's length (4 bytes, little-endian), the header (JSON: the key and each array's name,
dtype and shape), each array's bytes in C order, then the CRC-32 of the header and the arrays (4 bytes).
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

CACHE_ENV = "NEWSBEAM_CACHE_DIR"
MAGIC = b"NBCACHE1"
_LENGTH = struct.Struct("<I")
# A header is a few hundred bytes; a length beyond this is damage, not a header to allocate for.
_MAX_HEADER = 1 << 20

_LOG = logging.getLogger(__name__)


def cache_dir() -> Path | None:
    """The directory cache files live in (it may not exist yet), or None when the cache is turned off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return Path(chosen).expanduser() if chosen else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "newsbeam"


def cache_file(name: str) -> Path | None:
    """The path of cache file `name`, or None when the cache is turned off."""
    directory = cache_dir()
    return None if directory is None else directory / name


def read_arrays(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays `write_arrays(path, key, ...)` wrote, or None when the file is missing, holds another key, or is
    damaged, cut short or unreadable."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if handle.read(len(MAGIC)) != MAGIC:
                return None
            (length,) = _LENGTH.unpack(handle.read(_LENGTH.size))
            if length > _MAX_HEADER:
                return None
            header_bytes = handle.read(length)
            header = json.loads(header_bytes)
            if header["key"] != key:
                return None
            layout = [(name, np.dtype(dtype), tuple(shape)) for name, dtype, shape in header["arrays"]]
            if any(dtype.hasobject or not all(type(n) is int and n >= 0 for n in shape) for _, dtype, shape in layout):
                return None
            # Checked before anything is allocated: a damaged shape must not ask for terabytes.
            data_size = sum(dtype.itemsize * math.prod(shape) for _, dtype, shape in layout)
            if len(MAGIC) + _LENGTH.size + length + data_size + _LENGTH.size != size:
                return None
            crc = zlib.crc32(header_bytes)
            arrays = {}
            for name, dtype, shape in layout:
                raw = np.empty(dtype.itemsize * math.prod(shape), dtype=np.uint8)
                if handle.readinto(raw) != raw.size:
                    return None
                crc = zlib.crc32(raw, crc)
                arrays[name] = raw.view(dtype).reshape(shape)
            if _LENGTH.unpack(handle.read(_LENGTH.size))[0] != crc:
                return None
            return arrays
    except FileNotFoundError:
        return None
    # What a damaged file makes these steps raise (bad JSON or UTF-8, a wrong type where a list or a dtype string
    # was, a short read): all mean "no usable cache", as a missing file does.
    except (OSError, ValueError, TypeError, KeyError, struct.error) as err:
        _LOG.debug("model cache %s unusable, decoding the model instead: %s", path, err)
        return None


def write_arrays(path: Path, key: str, arrays: Mapping[str, np.ndarray]) -> bool:
    """Write `arrays` under `key` to `path` (atomically: renamed into place); False when it cannot be written."""
    contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    header = json.dumps(
        {"key": key, "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in contiguous.items()]}
    ).encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(MAGIC + _LENGTH.pack(len(header)) + header)
            crc = zlib.crc32(header)
            for array in contiguous.values():
                raw = array.reshape(-1).view(np.uint8)
                handle.write(raw)
                crc = zlib.crc32(raw, crc)
            handle.write(_LENGTH.pack(crc))
        os.replace(tmp, path)
        return True
    except OSError as err:  # a read-only home, a full disk: the model is decoded again next time, that is all
        _LOG.debug("cannot write the model cache %s: %s", path, err)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return False
