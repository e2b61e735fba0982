"""Config loading: typed values, durations, relative feed paths, and one-line errors naming the key."""

import pytest

from pipeline.config import ConfigError, load_config, parse_duration


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_config_loads_and_points_at_existing_samples():
    config = load_config()
    assert len(config.feeds) >= 6
    from pathlib import Path

    assert all(Path(f.url).is_file() for f in config.feeds)
    assert config.window.size_seconds == 3600


def test_values_durations_and_relative_paths(tmp_path):
    path = write(
        tmp_path,
        """
output: /tmp/out
feeds:
  - {name: a, url: feeds/a.xml, language: en, topic: World}
  - {name: b, url: "https://b.test/rss"}
window: {size: 30m}
parse: {max_future: 2d}
fetch: {read_timeout: 3, retries: 1}
classify:
  label_rules:
    - {label: climate, keywords: [climate, emissions]}
""",
    )
    config = load_config(path)
    assert config.feeds[0].url == str(tmp_path / "feeds" / "a.xml")
    assert config.feeds[1].url == "https://b.test/rss"
    assert config.window.size_seconds == 1800
    assert config.parse.max_future_seconds == 172800
    assert config.fetch.read_timeout == 3.0 and config.fetch.retries == 1
    assert config.classify.label_rules[0].keywords == ("climate", "emissions")


@pytest.mark.parametrize(
    "text, message",
    [
        ("feeds: [{name: a, url: x}]\nwindw: {size: 1h}\n", "unknown key 'windw'"),
        ("feeds: [{name: a, url: x, lang: en}]\n", "unknown key 'feeds[0].lang'"),
        ("feeds: [{name: a}]\n", "key 'feeds[0].url': required"),
        ("feeds: [{name: a, url: x}]\nwindow: {size: soon}\n", "key 'window.size'"),
        ("feeds: [{name: a, url: x}]\nfetch: {retries: many}\n", "key 'fetch.retries': expected int"),
        ("feeds: {name: a}\n", "key 'feeds': expected a list"),
        ("feeds: []\n", "at least one feed"),
        ("feeds: [\n", "invalid YAML"),
        ("feeds: [{name: a, url: x}]\nwindow: {size: 0}\n", "key 'window'"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("value, seconds", [(90, 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("1.5d", 129600)])
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds
