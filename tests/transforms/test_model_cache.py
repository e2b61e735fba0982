"""The local model cache: what it writes it reads back exactly; anything damaged, cut short, stale or unwritable is a
miss, never an error or a wrong array. Through it, py3langid's model gives the same scores cold, warm, damaged or
unwritable as py3langid's own loader does, and the shipped classifiers (topic model, pair models) the same
probabilities as when they derive their tables at load."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import py3langid.modelio
import pytest
from py3langid.langid import MODEL_DIR, MODEL_FILE

from transforms import classifier_file, model_cache, text_classifier
from transforms.language import DEFAULT_LANGUAGES, MODELS_DIR
from transforms.language_backends import Py3LangidBackend, py3langid_model
from transforms.model_cache import CACHE_ENV, MAGIC, cache_dir, cache_file, read_arrays, write_arrays

DEV_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "langid-dev"

ARRAYS = {
    "weights": np.arange(12, dtype=np.float16).reshape(3, 4) / 7,
    "labels": np.array(["en", "de", "srl"]),
    "moves": np.array([0, 7, 2**32 - 1], dtype=np.uint32),
    "rows": np.array([3, 1], dtype=np.uint16),
    "empty": np.zeros((0, 5), dtype=np.int64),
    "wide": np.array([-(2**62), 5], dtype=np.int64),
}


def _assert_same(found: dict[str, np.ndarray] | None, expected: dict[str, np.ndarray]) -> None:
    assert found is not None
    assert list(found) == list(expected)
    for name, array in expected.items():
        assert found[name].dtype == array.dtype and found[name].shape == array.shape, name
        assert np.array_equal(found[name], array), name


def test_what_is_written_is_read_back_exactly(tmp_path):
    path = tmp_path / "sub" / "model.bin"  # the directory is made
    assert write_arrays(path, "key 1", ARRAYS)
    _assert_same(read_arrays(path, "key 1"), ARRAYS)
    assert [p.name for p in path.parent.iterdir()] == ["model.bin"]  # no temporary file left behind
    # A transposed (non-contiguous) array is written in its logical order.
    assert write_arrays(path, "key 2", {"t": ARRAYS["weights"].T})
    _assert_same(read_arrays(path, "key 2"), {"t": np.ascontiguousarray(ARRAYS["weights"].T)})


def test_a_missing_file_or_another_key_is_a_miss(tmp_path):
    path = tmp_path / "model.bin"
    assert read_arrays(path, "key") is None
    write_arrays(path, "py3langid 0.4.0 abc", ARRAYS)
    assert read_arrays(path, "py3langid 0.4.1 abc") is None


def test_every_cut_of_the_file_is_a_miss(tmp_path):
    path = tmp_path / "model.bin"
    write_arrays(path, "key", ARRAYS)
    whole = path.read_bytes()
    for length in range(len(whole)):  # in the magic, the header, each array and the checksum
        path.write_bytes(whole[:length])
        assert read_arrays(path, "key") is None, length
    path.write_bytes(whole + b"\0")
    assert read_arrays(path, "key") is None


def test_every_damaged_byte_is_a_miss(tmp_path):
    path = tmp_path / "model.bin"
    write_arrays(path, "key", ARRAYS)
    whole = path.read_bytes()
    for position in range(len(whole)):
        damaged = bytearray(whole)
        damaged[position] ^= 0x5A
        path.write_bytes(bytes(damaged))
        assert read_arrays(path, "key") is None, position


@pytest.mark.parametrize(
    "header",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"key": "key"}',
        b'{"key": "key", "arrays": [["a", "no such dtype", [2]]]}',
        b'{"key": "key", "arrays": [["a", "|O", [2]]]}',
        b'{"key": "key", "arrays": [["a", "<f8", [-2]]]}',
        b'{"key": "key", "arrays": [["a", "<f8", 3]]}',
        b'{"key": "key", "arrays": [["a", "<f8", [1000000000000, 1000000000000]]]}',
    ],
)
def test_a_header_that_is_not_ours_is_a_miss(tmp_path, header):
    # Well framed, with a matching checksum, so only the header itself can make the read refuse it.
    path = tmp_path / "model.bin"
    path.write_bytes(MAGIC + struct.pack("<I", len(header)) + header + struct.pack("<I", zlib.crc32(header)))
    assert read_arrays(path, "key") is None
    path.write_bytes(MAGIC + struct.pack("<I", 1 << 30) + header)  # a header length that is damage
    assert read_arrays(path, "key") is None


def test_a_directory_that_cannot_be_written_is_not_an_error(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a directory")
    assert not write_arrays(blocker / "model.bin", "key", ARRAYS)
    assert read_arrays(blocker / "model.bin", "key") is None
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "model.bin").mkdir()  # the file's name is taken by a directory: the rename fails
    assert not write_arrays(tmp_path / "dir" / "model.bin", "key", ARRAYS)
    assert [p.name for p in (tmp_path / "dir").iterdir()] == ["model.bin"]


def test_where_the_cache_lives(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "newsbeam"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "newsbeam"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_file("m.bin") == tmp_path / "mine" / "m.bin"
    monkeypatch.setenv(CACHE_ENV, "")  # turned off
    assert cache_dir() is None and cache_file("m.bin") is None


# py3langid's model through the cache


def _texts() -> list[str]:
    texts = [
        "The government announced new measures on Tuesday to support small businesses after the floods.",
        "Die Regierung hat am Dienstag neue Maßnahmen angekündigt.",
        "Η κυβέρνηση ανακοίνωσε σήμερα νέα μέτρα.",
        "Selamat pagi semua",
        "",
        "12345 !!!",
    ]
    if DEV_DATA.is_dir():  # two sentences of each of the 75 languages, when the development set is here
        for path in sorted(DEV_DATA.glob("??.txt")):
            texts.extend(path.read_text(encoding="utf-8").splitlines()[:2])
    return texts


@pytest.fixture(scope="module")
def reference() -> list[dict[str, float]]:
    """The scores of a backend built by py3langid's own loader (the cache turned off)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, "")
        backend = Py3LangidBackend(frozenset(DEFAULT_LANGUAGES))
    return [backend.scores(text) for text in _texts()]


def _scores() -> list[dict[str, float]]:
    backend = Py3LangidBackend(frozenset(DEFAULT_LANGUAGES))
    return [backend.scores(text) for text in _texts()]


def _cached_file(directory: Path) -> Path:
    (found,) = directory.glob("py3langid-*.bin")
    return found


def _decodes(monkeypatch) -> list[int]:
    """Counts the calls of py3langid's own loader (a decode: the cache was not used)."""
    calls = []
    loader = py3langid.modelio.load_model
    monkeypatch.setattr(py3langid.modelio, "load_model", lambda path: calls.append(1) or loader(path))
    return calls


def test_py3langid_cold_then_warm_cache_gives_the_same_scores(monkeypatch, tmp_path, reference):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    decodes = _decodes(monkeypatch)
    assert _scores() == reference  # cold: decoded, and the cache written
    assert len(decodes) == 1
    data = _cached_file(tmp_path / "cache").read_bytes()
    (length,) = struct.unpack("<I", data[len(MAGIC) : len(MAGIC) + 4])
    header = json.loads(data[len(MAGIC) + 4 : len(MAGIC) + 4 + length])
    assert header["key"].startswith(f"py3langid {py3langid.__version__} ")  # and the model file's hash
    assert _scores() == reference  # warm: read from the cache, not decoded
    assert len(decodes) == 1
    # What the cache gives is what py3langid's loader gives, item for item and type for type.
    for mine, theirs in zip(py3langid_model(), py3langid.modelio.load_model(MODEL_DIR / MODEL_FILE)):
        assert type(mine) is type(theirs)
        if isinstance(theirs, np.ndarray):
            assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)
        else:
            assert getattr(mine, "typecode", None) == getattr(theirs, "typecode", None) and mine == theirs


@pytest.mark.parametrize("damage", ["flipped byte", "cut short", "empty"])
def test_py3langid_damaged_cache_gives_the_same_scores_and_is_rewritten(monkeypatch, tmp_path, reference, damage):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    py3langid_model()  # writes the cache
    cached = _cached_file(tmp_path)
    data = bytearray(cached.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0x01  # in the middle of the DFA table
    elif damage == "cut short":
        del data[len(data) * 2 // 3 :]  # what a copy interrupted mid-file leaves
    else:
        data.clear()
    cached.write_bytes(bytes(data))
    decodes = _decodes(monkeypatch)
    assert _scores() == reference
    assert len(decodes) == 1  # the damaged file was not used
    assert _scores() == reference  # and was rewritten whole: the next build reads it
    assert len(decodes) == 1


def test_py3langid_unwritable_cache_gives_the_same_scores(monkeypatch, tmp_path, reference):
    blocker = tmp_path / "a file"
    blocker.write_text("where the cache directory should be")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    decodes = _decodes(monkeypatch)
    assert _scores() == reference
    assert _scores() == reference
    assert len(decodes) == 2  # decoded each time: nothing could be kept
    assert model_cache.read_arrays(blocker / "cache" / "x.bin", "key") is None


# The classifiers' derived tables through the cache

SHIPPED = sorted(MODELS_DIR.glob("*.npz"))
TEXTS = [
    "The coach said the team will win the league championship this season",
    "Investors sold shares after the bank reported lower quarterly profit",
    "Regjeringen la i dag fram nye tiltak for små bedrifter etter flommen.",
    "Mmuso o tla thusa balemi ba mmidi ka dithoto tse dintsi",
    "Uhulumeni uzosiza abalimi ngemali eningi kulo nyaka",
    "Zyxqv unheard-of wordforms everywhere",
    "",
]


def _load(path: Path) -> text_classifier.TextClassifier:
    """The model in `path`, read from the file now (not the process's memory of models already read)."""
    return classifier_file._read(path)


@pytest.fixture(scope="module")
def derived_at_load() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each shipped model's derived table and probabilities on TEXTS, with the cache turned off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, "")
        models = {path.name: _load(path) for path in SHIPPED}
    return {name: (model.word_char_rows(), model.predict_proba(TEXTS)) for name, model in models.items()}


def _derivations(monkeypatch) -> list[int]:
    calls = []
    derive = text_classifier.TextClassifier._vocabulary_char_rows
    monkeypatch.setattr(
        text_classifier.TextClassifier,
        "_vocabulary_char_rows",
        lambda self, known: calls.append(1) or derive(self, known),
    )
    return calls


def _assert_as_derived(model: text_classifier.TextClassifier, expected: tuple[np.ndarray, np.ndarray]) -> None:
    table, probabilities = expected
    assert model.word_char_rows().dtype == table.dtype and np.array_equal(model.word_char_rows(), table)
    assert np.array_equal(model.predict_proba(TEXTS), probabilities)


def test_shipped_classifiers_cold_then_warm_cache_give_the_same_probabilities(monkeypatch, tmp_path, derived_at_load):
    assert len(SHIPPED) == 4
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    derivations = _derivations(monkeypatch)
    for path in SHIPPED:  # cold: derived, and the table kept
        _assert_as_derived(_load(path), derived_at_load[path.name])
    assert len(derivations) == len(SHIPPED) and len(list(tmp_path.glob("classifier-*.bin"))) == len(SHIPPED)
    for path in SHIPPED:  # warm: read back, not derived
        _assert_as_derived(_load(path), derived_at_load[path.name])
    assert len(derivations) == len(SHIPPED)


def test_a_table_kept_by_other_code_or_damaged_is_derived_again(monkeypatch, tmp_path, derived_at_load):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    path = MODELS_DIR / "langid-st-tn.npz"
    model = _load(path)
    (kept,) = tmp_path.glob("classifier-*.bin")
    key = classifier_file._derived_cache(json.loads(_meta(path))["sha256"])[1]
    # The key names the code that derives the table: text_classifier.py as it is now.
    assert hashlib.sha256(Path(text_classifier.__file__).read_bytes()).hexdigest() in key
    derivations = _derivations(monkeypatch)
    wrong = {"word_char": np.zeros_like(model.word_char_rows())}
    write_arrays(kept, key.replace("word_char", "word_char by other code"), wrong)  # stale: another key
    _assert_as_derived(_load(path), derived_at_load[path.name])
    data = bytearray(kept.read_bytes())
    data[len(data) // 2] ^= 0x01
    kept.write_bytes(bytes(data))  # damaged
    _assert_as_derived(_load(path), derived_at_load[path.name])
    assert len(derivations) == 2
    _assert_as_derived(_load(path), derived_at_load[path.name])  # rewritten whole the second time
    assert len(derivations) == 2


def test_a_table_of_another_shape_is_derived_again(derived_at_load):
    model = _load(MODELS_DIR / "langid-st-tn.npz")
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}
    for wrong in (model.word_char_rows()[:-1], model.word_char_rows().astype(np.float32)):
        rebuilt = text_classifier.TextClassifier(**fields, word_char=wrong)
        _assert_as_derived(rebuilt, derived_at_load["langid-st-tn.npz"])


def test_shipped_classifiers_with_an_unwritable_cache(monkeypatch, tmp_path, derived_at_load):
    blocker = tmp_path / "a file"
    blocker.write_text("where the cache directory should be")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    derivations = _derivations(monkeypatch)
    for _ in range(2):
        for path in SHIPPED:
            _assert_as_derived(_load(path), derived_at_load[path.name])
    assert len(derivations) == 2 * len(SHIPPED)


def _meta(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read("meta.json")
