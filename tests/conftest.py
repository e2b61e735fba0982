"""Shared pytest fixtures."""

import pytest

from tests.feed_server import FeedServer


@pytest.fixture
def feed_server():
    """A started FeedServer on 127.0.0.1 (ephemeral port), stopped after the test."""
    with FeedServer() as server:
        yield server
