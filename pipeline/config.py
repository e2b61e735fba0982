"""The run's configuration: YAML mapped onto typed, validated classes.

Each section of the YAML file maps onto the settings dataclass of one stage (`fetch:` -> FetchSettings, ...), field
by field. A key the class does not have, a value of the wrong type or a missing file is a `ConfigError` whose one-line
message names the file and the key (`feeds[2].url`, `window.size`). Durations may be written as `90s`, `30m`, `1h`,
`1d` or a number of seconds. Relative feed paths are resolved against the config file's directory, so a config and
its feeds travel together.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import tempfile
import types
import typing
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from apache_beam.io.filesystems import FileSystems

from pipeline import storage
from pipeline.schedule import HealthSettings
from transforms.classify import ClassifySettings
from transforms.clean import CleanSettings
from transforms.dedup import DedupSettings
from transforms.extract import MODES as EXTRACT_MODES
from transforms.extract import ExtractSettings
from transforms.feed import FeedSource
from transforms.fetch import FetchSettings
from transforms.neardup import NearDedupSettings
from transforms.poll import StreamSettings
from transforms.readers.base import ParseSettings
from transforms.window import WindowSettings


def _default_config() -> Path:
    # Installed, configs/ is the package pipeline.configs; in a source checkout it is the top-level folder.
    installed = Path(__file__).resolve().parent / "configs" / "default.yaml"
    return installed if installed.exists() else Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


DEFAULT_CONFIG = _default_config()


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line naming the file and the key."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs besides the Beam options."""

    feeds: tuple[FeedSource, ...]
    output: str = "./output"
    fetch: FetchSettings = FetchSettings()
    parse: ParseSettings = ParseSettings()
    extract: ExtractSettings = ExtractSettings()
    clean: CleanSettings = CleanSettings()
    classify: ClassifySettings = ClassifySettings()
    dedup: DedupSettings = DedupSettings()
    neardup: NearDedupSettings = NearDedupSettings()
    window: WindowSettings = WindowSettings()
    schedule: HealthSettings = HealthSettings()
    streaming: StreamSettings = StreamSettings()


# YAML names that read better than the field names they set.
_ALIASES = {
    "window.size": "size_seconds",
    "parse.max_future": "max_future_seconds",
    "dedup.lookback": "neardup_lookback_seconds",
    "dedup.forget_after": "forget_after_seconds",
    "schedule.poll": "poll_seconds",
    "schedule.failure_backoff": "failure_backoff_seconds",
    "schedule.validator_check": "validator_check_seconds",
    "window.allowed_lateness": "allowed_lateness_seconds",
    "window.late_margin": "late_margin_seconds",
    "streaming.poll_interval": "poll_interval_seconds",
    "streaming.poll_overrides.interval": "interval_seconds",
    "streaming.dead_letter_window": "dead_letter_window_seconds",
    "streaming.stop_after": "stop_after_seconds",
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds in `value`: a number, or a string like '90s', '30m', '1h', '1d'."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration like 90s, 30m, 1h or 1d, got {value!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a config file (the bundled default when `path` is None)."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(err, 'problem', err)}") from None
    if raw is None:
        raw = {}
    _extract_off_as_string(raw)
    try:
        config = _build(Config, raw, "")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    if not config.feeds:
        raise ConfigError(f"{path}: key 'feeds': at least one feed is needed")
    for i, feed in enumerate(config.feeds):
        if feed.extract and feed.extract not in EXTRACT_MODES:
            raise ConfigError(
                f"{path}: key 'feeds[{i}].extract': expected one of {', '.join(EXTRACT_MODES)}, got {feed.extract!r}"
            )
    return dataclasses.replace(config, feeds=tuple(_resolve_feed(f, path.parent) for f in config.feeds))


def _extract_off_as_string(raw: Any) -> None:
    """YAML 1.1 reads a bare `off` as false: `extract: {mode: off}` and a feed's `extract: off` mean the mode."""
    if not isinstance(raw, dict):
        return
    if isinstance(raw.get("extract"), dict) and raw["extract"].get("mode") is False:
        raw["extract"]["mode"] = "off"
    for feed in raw.get("feeds") or ():
        if isinstance(feed, dict) and feed.get("extract") is False:
            feed["extract"] = "off"


def check_feeds(config: Config) -> None:
    """Every feed usable before anything is fetched: http(s) with a host and a valid port, or a readable local
    file (a path or file://). ConfigError naming the first feed that is not."""
    for index, feed in enumerate(config.feeds):
        problem = _feed_problem(feed.url)
        if problem:
            raise ConfigError(f"key 'feeds[{index}].url' ({feed.name}): {problem}")


def _feed_problem(url: str) -> str:
    path = Path(url)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url):
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port  # ValueError when out of range or not a number
        except ValueError as err:
            return f"invalid URL {url!r}: {err}"
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            return "" if parts.hostname else f"no host in {url!r}"
        if scheme != "file":
            return f"unsupported scheme {scheme}:// in {url!r} (http, https or file)"
        if parts.netloc not in ("", "localhost") or port:
            return f"file URL on another host: {url!r}"
        path = Path(urllib.request.url2pathname(parts.path))
    if not path.is_file():
        return f"no such file: {path}"
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        return f"cannot read {path}: {err.strerror or err}"
    return ""


def check_output(output: str) -> None:
    """Create the output directory, or prove it writable; ConfigError when it cannot be used.

    An object store (s3://, gs://, ...) is proven by writing and deleting a small object through Beam's filesystem
    with the options given to pipeline.storage.use_options: a filesystem package not installed, a wrong endpoint,
    missing credentials or a missing bucket fail here, before any feed is fetched.
    """
    if not storage.is_local(output):
        _check_object_store(output)
        return
    path = Path(urllib.request.url2pathname(output[len("file://") :]) if output.startswith("file://") else output)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output {output}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".newsbeam-write-check-"):
            pass
    except OSError as err:
        raise ConfigError(f"output {output}: cannot write there: {err.strerror or err}") from None


# The package each object store's Beam filesystem needs, and the extra of newsbeam that installs it.
_STORE_PACKAGES = {"s3": ("boto3", "aws"), "gs": ("google.cloud.storage", "gcp")}


def _check_object_store(output: str) -> None:
    scheme = storage.scheme(output)
    package, extra = _STORE_PACKAGES.get(scheme, ("", ""))
    if package and not _installed(package):
        raise ConfigError(
            f"output {output}: Beam's {scheme}:// filesystem is not installed: pip install 'newsbeam[{extra}]'"
        )
    probe = FileSystems.join(output, "_state", f".write-check-{os.getpid()}")
    try:
        storage.write_atomically(probe, b"newsbeam")  # not empty: Beam's S3 writer cannot write an empty object
        FileSystems.delete([probe])
    except Exception as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"output {output}: cannot write there: {detail[:400]}") from None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (google.cloud) is missing
        return False


def _resolve_feed(feed: FeedSource, base: Path) -> FeedSource:
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", feed.url):
        return feed
    return dataclasses.replace(feed, url=str((base / feed.url).resolve()))


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"key '{where or '<top>'}': expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        dotted = f"{where}.{key}" if where else str(key)
        name = _ALIASES.get(_strip_indexes(dotted), key)
        if name not in fields:
            renamed = {
                field: alias.rsplit(".", 1)[1]
                for alias, field in _ALIASES.items()
                if alias.rsplit(".", 1)[0] == _strip_indexes(where)
            }
            known = ", ".join(sorted(renamed.get(f, f) for f in fields))
            raise ConfigError(f"unknown key '{dotted}' (known here: {known})")
        values[name] = _convert(hints[name], value, dotted, fields[name].metadata)
    try:
        return cls(**values)
    except TypeError as err:
        missing = re.findall(r"'(\w+)'", str(err))
        key = f"{where}.{missing[0]}" if where and missing else (missing[0] if missing else where)
        raise ConfigError(f"key '{key}': required") from None
    except ValueError as err:
        raise ConfigError(f"key '{where}': {err}") from None


def _strip_indexes(dotted: str) -> str:
    return re.sub(r"\[\d+\]", "", dotted)


def _convert(hint: Any, value: Any, where: str, metadata: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, where, metadata)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"key '{where}': expected a list, got {type(value).__name__}")
        item_type = typing.get_args(hint)[0]
        return tuple(_convert(item_type, item, f"{where}[{i}]", metadata) for i, item in enumerate(value))
    if metadata.get("unit") == "seconds":
        try:
            seconds = parse_duration(value)
        except ValueError as err:
            raise ConfigError(f"key '{where}': {err}") from None
        return int(seconds) if hint is int else seconds
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, bool) and type(value) is hint:
        return value
    raise ConfigError(
        f"key '{where}': expected {getattr(hint, '__name__', hint)}, got {type(value).__name__} {value!r}"
    )
