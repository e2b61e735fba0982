"""The classifier file: a portable, checksummed archive of a `TextClassifier`'s arrays.

The file is a zip archive (so `numpy.load` can read its arrays too) written byte for byte the same by the same
training run: `meta.json` (format, version, labels, languages, temperature, training facts and a sha256 of the
arrays) and `.npy` arrays: `unigrams` (the words, newline-joined UTF-8), `bigrams` (pairs of unigram ids, sorted),
`idf`, `coef` (classes x features) and `intercept`; version 2 adds `char_ngrams` (newline-joined UTF-8), `char_idf`
and `char_coef` (classes x n-grams). Version 1 files (words only) still load. The format's name,
"newsbeam-topic-model", dates from when topics were its only use; it is kept so that existing files load.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy

from transforms import model_cache, text_classifier
from transforms.text_classifier import ClassifierError, TextClassifier, one_line

FORMAT_NAME = "newsbeam-topic-model"
FORMAT_VERSION = 2  # what a model with a character view is written as; version 1 files (words only) still load
FEATURES_V1 = "tfidf-word-1-2gram-sublinear-l2"
FEATURES = "tfidf-word-1-2gram-sublinear-l2+tfidf-char-2-5gram-l1"
FEATURES_OF_VERSION = {1: FEATURES_V1, 2: FEATURES}

_ARRAYS_OF_VERSION = {
    1: ("unigrams", "bigrams", "idf", "coef", "intercept"),
    2: ("unigrams", "bigrams", "idf", "coef", "intercept", "char_ngrams", "char_idf", "char_coef"),
}
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

_CHECKED_META = ("version", "features", "max_chars", "labels", "languages", "temperature")


def _digest(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([meta.get(key) for key in _CHECKED_META]).encode())
    for name in _ARRAYS_OF_VERSION[meta["version"]]:
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _strings(strings: Sequence[str]) -> np.ndarray:
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8)


def _model_arrays(model: TextClassifier) -> dict[str, np.ndarray]:
    arrays = {
        "unigrams": _strings(model.unigrams),
        "bigrams": np.ascontiguousarray(model.bigrams, dtype=np.int32),
        "idf": np.ascontiguousarray(model.idf, dtype=np.float32),
        "coef": np.ascontiguousarray(model.coef, dtype=np.float32),
        "intercept": np.ascontiguousarray(model.intercept, dtype=np.float64),
    }
    if model.char_ngrams:
        arrays["char_ngrams"] = _strings(model.char_ngrams)
        arrays["char_idf"] = np.ascontiguousarray(model.char_idf, dtype=np.float32)
        arrays["char_coef"] = np.ascontiguousarray(model.char_coef, dtype=np.float32)
    return arrays


def save_model(model: TextClassifier, path: str | os.PathLike) -> Path:
    """Write `model` to `path` (atomically: a reader never sees half a file); returns the path.

    A model with a character view is written as format version 2, a words-only one as version 1.
    """
    path = Path(path)
    arrays = _model_arrays(model)
    version = 2 if model.char_ngrams else 1
    meta = {
        "format": FORMAT_NAME,
        "version": version,
        "features": FEATURES_OF_VERSION[version],
        "max_chars": model.max_chars,
        "labels": list(model.labels),
        "languages": list(model.languages),
        "temperature": model.temperature,
        "training": model.info,
    }
    meta["sha256"] = _digest(meta, arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp_name, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            # Fixed timestamps make the file a pure function of the model.
            archive.writestr(
                zipfile.ZipInfo("meta.json", _ZIP_DATE),
                json.dumps(meta, indent=1, sort_keys=True),
                zipfile.ZIP_DEFLATED,
            )
            for name in _ARRAYS_OF_VERSION[version]:
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, arrays[name], allow_pickle=False)
                archive.writestr(zipfile.ZipInfo(f"{name}.npy", _ZIP_DATE), buffer.getvalue(), zipfile.ZIP_DEFLATED)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


_LOADED: dict[tuple[str, int, int], TextClassifier] = {}


def load_model(path: str | os.PathLike, kind: str = "classifier") -> TextClassifier:
    """Read and validate a model file; raises ClassifierError (one line, naming the `kind` of model and the file)
    if unusable. The language detector's pair models are files of this format too."""
    path = Path(path)
    if not path.exists():
        raise ClassifierError(f"{kind} file not found: {path}")
    if not path.is_file():
        raise ClassifierError(f"{kind} {path} is not a file")
    # One read per file and process: the CLI's start-up check, the transform, RunInference and each language
    # detector all ask for the same files (a read with its checks costs about 0.3 s). A changed file is read again.
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    cached = _LOADED.get(key)
    if cached is not None:
        return cached
    try:
        model = _LOADED[key] = _read(path)
        return model
    except ClassifierError as err:
        raise ClassifierError(f"{kind} {path} is unusable: {err}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ClassifierError(f"{kind} {path} is unusable: damaged archive ({one_line(err)})") from None
    except (OSError, ValueError, KeyError) as err:
        raise ClassifierError(f"{kind} {path} is unusable: {one_line(err)}") from None


def _read(path: Path) -> TextClassifier:
    if not zipfile.is_zipfile(path):
        raise ClassifierError("not a zip archive (truncated, damaged, or not a newsbeam classifier file)")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if "meta.json" not in names:
            raise ClassifierError("not a newsbeam classifier file (missing meta.json)")
        meta = json.loads(archive.read("meta.json").decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise ClassifierError(
                f"not a newsbeam classifier file (format {meta.get('format')!r})"
                if isinstance(meta, dict)
                else "meta.json is not an object"
            )
        version = meta.get("version")
        known = type(version) is int and version in FEATURES_OF_VERSION
        if not known or meta.get("features") != FEATURES_OF_VERSION[version]:
            raise ClassifierError(
                f"unsupported model version {version!r} / features {meta.get('features')!r}; "
                f"this newsbeam reads versions {', '.join(map(str, FEATURES_OF_VERSION))}"
            )
        missing = [f"{name}.npy" for name in _ARRAYS_OF_VERSION[version] if f"{name}.npy" not in names]
        if missing:
            raise ClassifierError(f"not a newsbeam classifier file (missing {', '.join(missing)})")
        arrays = {}
        for name in _ARRAYS_OF_VERSION[version]:
            with archive.open(f"{name}.npy") as member:
                arrays[name] = np.lib.format.read_array(io.BytesIO(member.read()), allow_pickle=False)
    if _digest(meta, arrays) != meta.get("sha256"):
        raise ClassifierError("checksum mismatch (the file is damaged or was edited)")

    labels, languages = meta.get("labels"), meta.get("languages")
    if not (
        isinstance(labels, list)
        and len(labels) >= 2
        and all(isinstance(x, str) and x for x in labels)
        and len(set(labels)) == len(labels)
    ):
        raise ClassifierError("labels must be at least 2 distinct non-empty strings")
    if not (isinstance(languages, list) and all(isinstance(x, str) for x in languages)):
        raise ClassifierError("languages must be a list of strings")
    temperature, max_chars = meta.get("temperature"), meta.get("max_chars")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ClassifierError(f"bad temperature {temperature!r}")
    if not (isinstance(max_chars, int) and max_chars > 0):
        raise ClassifierError(f"bad max_chars {max_chars!r}")

    unigrams = _decode_strings(arrays["unigrams"])
    bigrams, idf, coef, intercept = arrays["bigrams"], arrays["idf"], arrays["coef"], arrays["intercept"]
    n_features = len(unigrams) + len(bigrams)
    ngrams = _decode_strings(arrays["char_ngrams"]) if version >= 2 else ()
    char_idf, char_coef = arrays.get("char_idf"), arrays.get("char_coef")
    expected = {
        "bigrams": (bigrams.dtype == np.int32 and bigrams.ndim == 2 and bigrams.shape[1] == 2),
        "idf": idf.dtype == np.float32 and idf.shape == (n_features,),
        "coef": coef.dtype == np.float32 and coef.shape == (len(labels), n_features),
        "intercept": intercept.dtype == np.float64 and intercept.shape == (len(labels),),
    }
    if version >= 2:
        expected["char_idf"] = char_idf.dtype == np.float32 and char_idf.shape == (len(ngrams),)
        expected["char_coef"] = char_coef.dtype == np.float32 and char_coef.shape == (len(labels), len(ngrams))
    bad = [name for name, ok in expected.items() if not ok]
    if bad:
        raise ClassifierError(f"arrays of the wrong type or shape: {', '.join(bad)}")
    if len(bigrams) and (bigrams.min() < 0 or bigrams.max() >= len(unigrams)):
        raise ClassifierError("bigrams refer to words outside the vocabulary")
    keys = bigrams[:, 0].astype(np.int64) * len(unigrams) + bigrams[:, 1]
    if len(keys) > 1 and not np.all(keys[1:] > keys[:-1]):
        raise ClassifierError("bigrams are not sorted")
    if version >= 2 and not ngrams:
        raise ClassifierError("no character n-grams")
    weights = [idf, coef, intercept] + ([char_idf, char_coef] if version >= 2 else [])
    if not all(np.isfinite(array).all() for array in weights):
        raise ClassifierError("non-finite weights")
    cache, key = _derived_cache(meta["sha256"]) if version >= 2 else (None, "")
    derived = model_cache.read_arrays(cache, key) if cache is not None else None
    model = TextClassifier(
        labels=tuple(labels),
        languages=tuple(languages),
        unigrams=unigrams,
        bigrams=bigrams,
        idf=idf,
        coef=coef,
        intercept=intercept,
        temperature=float(temperature),
        max_chars=max_chars,
        info=meta.get("training") or {},
        char_ngrams=ngrams,
        char_idf=char_idf,
        char_coef=char_coef,
        word_char=(derived or {}).get("word_char"),
    )
    if cache is not None and derived is None:
        model_cache.write_arrays(cache, key, {"word_char": model.word_char_rows()})
    return model


def _derived_cache(checksum: str) -> tuple[Path | None, str]:
    """Where the table a TextClassifier derives from a file's arrays at load is kept (the character rows of every known
    word: 0.2 s of CPU for the shipped models at each start), and its key: the file's checksum, and the code that
    derives it (text_classifier.py itself, numpy's and scipy's versions), so that a change to either derives it
    afresh. (None, "") when the cache is turned off or the code cannot be read."""
    path = model_cache.cache_file(f"classifier-{checksum[:16]}.bin")
    if path is None:
        return None, ""
    try:
        code = hashlib.sha256(Path(text_classifier.__file__).read_bytes()).hexdigest()
    except OSError:
        return None, ""
    return path, f"word_char {checksum} {code} numpy {np.__version__} scipy {scipy.__version__}"


def _decode_strings(array: np.ndarray) -> tuple[str, ...]:
    return tuple(array.tobytes().decode("utf-8").split("\n")) if array.size else ()
