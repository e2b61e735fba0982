"""How long a stateful stage remembers a key: until the watermark passes `forget_at` of the last copy seen.

The streaming exact-duplicate pass (transforms/dedup.py) and the streaming near-duplicate pass
(transforms/neardup/streaming.py) both keep keys in state and clear them on this event-time timer.
"""

from __future__ import annotations

from apache_beam.transforms import window as beam_window
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.article import Article

_END_OF_GLOBAL_WINDOW = beam_window.GlobalWindow().max_timestamp()


def forget_at(article: Article, after_seconds: float) -> Timestamp:
    """When a key last seen with this article may be forgotten: `max(published_at, fetched_at) + after_seconds`, in event
    time. Counted from the fetch too, so an old entry still in its feed is not re-admitted at every poll."""
    times = [t for t in (article.published_at, article.fetched_at) if t is not None]
    if not times:
        return _END_OF_GLOBAL_WINDOW
    return min(Timestamp.from_utc_datetime(max(times)) + Duration(seconds=after_seconds), _END_OF_GLOBAL_WINDOW)
