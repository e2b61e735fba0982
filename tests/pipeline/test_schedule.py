"""Feed scheduling: validator trust, backoff with jitter, server hints, which feeds are due, the state file."""

import datetime as dt
import random

from pipeline.schedule import (
    FeedHealth,
    HealthSettings,
    load_feed_health,
    next_health,
    save_feed_health,
    schedule_feeds,
    use_validators,
)
from transforms.feed import FeedSource
from transforms.feed_report import FeedReport

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.timezone.utc)
S = HealthSettings()


def ok(**kw):
    return FeedReport(feed_url="u", fetched_at=NOW, ok=True, status=200, **kw)


def test_validators_used_only_while_trusted_and_recently_checked():
    h = next_health(None, ok(etag='"a"', body_hash="h1"), NOW, S)
    assert use_validators(h, NOW + dt.timedelta(hours=1), S)
    assert not use_validators(h, NOW + dt.timedelta(days=2), S)  # due for a full check
    assert not use_validators(FeedHealth("u"), NOW, S)  # nothing to send


def test_body_changed_under_same_validators_is_distrusted():
    h = next_health(None, ok(etag='"a"', body_hash="h1"), NOW, S)
    h = next_health(h, ok(etag='"a"', body_hash="h2"), NOW, S)  # a full GET (no validators sent)
    assert not h.validators_trusted and "unchanged validators" in h.validators_note
    assert not use_validators(h, NOW, S)


def test_same_body_to_conditional_request_is_distrusted():
    h = next_health(None, ok(etag='"a"', body_hash="h1"), NOW, S)
    h = next_health(h, ok(etag='"a"', body_hash="h1", sent_validators=True), NOW, S)
    assert not h.validators_trusted and "unchanged body" in h.validators_note


def test_not_modified_keeps_validators_and_hash():
    h = next_health(None, ok(etag='"a"', body_hash="h1", entries=7), NOW, S)
    h2 = next_health(h, FeedReport("u", NOW, ok=True, status=304, not_modified=True, sent_validators=True), NOW, S)
    assert (h2.etag, h2.body_hash, h2.entries_seen, h2.validators_trusted) == ('"a"', "h1", 7, True)


def test_failures_back_off_exponentially_with_jitter_capped_at_a_day():
    h, delays = None, []
    for _ in range(12):
        h = next_health(h, FeedReport("u", NOW, ok=False, status=500, error="http_error"), NOW, S, random.Random(0))
        delays.append((h.next_due_at - NOW).total_seconds())
    assert h.consecutive_failures == 12
    assert all(150 <= d for d in delays) and max(delays) <= 86400
    assert delays[5] > delays[1] > delays[0]
    h = next_health(h, ok(body_hash="x"), NOW, S)
    assert h.consecutive_failures == 0 and h.last_error == ""


def test_hints_push_next_due_back():
    h = next_health(None, ok(ttl_seconds=3600.0, max_age_seconds=600.0), NOW, S)
    assert (h.next_due_at - NOW).total_seconds() == 3600 and h.next_due_reason == "feed ttl"
    h = next_health(None, FeedReport("u", NOW, ok=False, status=429, retry_after_seconds=7200.0), NOW, S)
    assert (h.next_due_at - NOW).total_seconds() == 7200 and h.next_due_reason == "Retry-After"
    h = next_health(None, ok(ttl_seconds=3600.0), NOW, HealthSettings(respect_hints=False))
    assert h.next_due_at == NOW


def test_schedule_feeds_skips_feeds_not_due_and_sends_trusted_validators():
    due_later = next_health(
        None,
        FeedReport(feed_url="https://a.test/feed", fetched_at=NOW, ok=True, etag='"e"', body_hash="h"),
        NOW,
        HealthSettings(poll_seconds=3600),
    )
    feeds = [FeedSource("a", "https://a.test/feed"), FeedSource("b", "https://b.test/feed")]
    settings, health = HealthSettings(poll_seconds=3600), {"https://a.test/feed": due_later}
    due, skipped = schedule_feeds(feeds, settings, health, NOW + dt.timedelta(minutes=10), poll_all=False)
    assert ([f.url for f in due], [f.url for f in skipped]) == (["https://b.test/feed"], ["https://a.test/feed"])
    [first, second] = schedule_feeds(feeds, settings, health, NOW + dt.timedelta(minutes=10), poll_all=True)[0]
    assert (first.etag, second.etag) == ('"e"', "")


def test_feed_health_survives_a_save_and_load(tmp_path):
    assert load_feed_health(str(tmp_path)) == {}
    health = next_health(None, ok(etag='"a"', body_hash="h1", entries=3, new_entries=2), NOW, S)
    save_feed_health(str(tmp_path), [health])
    assert load_feed_health(str(tmp_path)) == {"u": health}
