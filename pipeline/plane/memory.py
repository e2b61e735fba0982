"""Freed memory handed back to the system between the batch plane's large steps.

    release_memory()   # after a step that held hundreds of MB (stage B's shards of keys, stage C's shard of rows)

Neither allocator gives much back by itself: pyarrow's pool (mimalloc) keeps freed pages for reuse, and glibc's
malloc keeps numpy's freed arrays below its mmap threshold (which grows to 32 MB as large arrays are freed) in its
heap. A worker would then keep stage B's high-water mark through stage C, and the process tree's peak would be the
sum of each step's peak. Trimming costs milliseconds; it is called a few times per step, never per article.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import pyarrow as pa

try:
    _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
    _TRIM = None


def release_memory() -> None:
    """Return the memory pyarrow's pool and the C heap hold unused to the system."""
    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM(0)
