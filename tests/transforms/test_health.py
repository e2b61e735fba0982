"""Feed reports: the server hints a fetch reads (the rules that fold reports into health: tests/pipeline/test_schedule.py)."""

from transforms.feed_report import max_age_seconds


def test_max_age():
    assert max_age_seconds("public, max-age=600") == 600
    assert max_age_seconds("no-cache, max-age=600") is None
    assert max_age_seconds(None) is None
