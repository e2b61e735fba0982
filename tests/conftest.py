"""Shared pytest fixtures and helpers: the feed server, an Article factory, the counter readers, the spool directory."""

import datetime as dt
import os
import tempfile

import pytest

from pipeline.summary import counter_values
from tests.feed_server import FeedServer
from transforms.article import Article
from transforms.clock import UTC
from transforms.model_cache import CACHE_ENV

# The day test articles are published on: a fixed date, so no test depends on the real clock.
T0 = dt.datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture(scope="session", autouse=True)
def model_cache_dir(tmp_path_factory):
    """The model cache (transforms/model_cache.py) of every test and of the runs they start: this session's own
    directory, not the user's (the tests load many models of their own)."""
    with pytest.MonkeyPatch.context() as patch:
        directory = tmp_path_factory.mktemp("model-cache")
        patch.setenv(CACHE_ENV, str(directory))
        yield directory


@pytest.fixture
def feed_server():
    """A started FeedServer on 127.0.0.1 (ephemeral port), stopped after the test."""
    with FeedServer() as server:
        yield server


def art(
    article_id: str = "a1",
    minutes: float | None = None,
    *,
    hours: float = 0,
    fetched_minutes: float | None = None,
    **fields,
) -> Article:
    """An Article from feed https://f.test/rss (source "f"), published `hours` and `minutes` after T0 when either is
    given (else unset), fetched `fetched_minutes` after T0 when given; any Article field in `fields` wins."""
    defaults = {"feed_url": "https://f.test/rss", "source": "f"}
    if minutes is not None or hours:
        defaults["published_at"] = T0 + dt.timedelta(hours=hours, minutes=minutes or 0)
    if fetched_minutes is not None:
        defaults["fetched_at"] = T0 + dt.timedelta(minutes=fetched_minutes)
    return Article(article_id=article_id, **{**defaults, **fields})


def counter(result, name: str) -> int:
    """The value of counter `namespace/name` in a finished pipeline's result (0 if it never counted)."""
    return counter_values(result.metrics()).get(name, 0)


def counters(result, namespace: str) -> dict[str, int]:
    """Every counter of `namespace` in a finished pipeline's result, by name."""
    prefix = namespace + "/"
    return {k[len(prefix) :]: v for k, v in counter_values(result.metrics()).items() if k.startswith(prefix)}


@pytest.fixture
def spool_dir(tmp_path, monkeypatch):
    """The directory big feed bodies are spooled to (transforms/spool.py) for this test, instead of the system's."""
    directory = tmp_path / "spool"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def open_files_under(directory) -> list[str]:
    """The files this process holds open under `directory`. A spool file has no name (O_TMPFILE), so listing the
    directory shows nothing either way; /proc/self/fd shows it while it is open, as '<directory>/#123 (deleted)'."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the fd listing itself, closed since
            continue
        if target.startswith(f"{directory}/"):
            found.append(target)
    return found
