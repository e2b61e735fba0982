"""Accuracy, speed, load time and memory of each language-identification backend, and of the default.

    python benchmarks/langid.py [--data DIR] [--per-language] [--limit N] [--backends a,b,...] [--articles N]

The data is one file per language, named by its ISO 639-1 code, one sentence per line (default:
../shared/data/langid-dev beside the repository). Each backend runs in its own fresh process, so its load
time and peak memory (RSS) are its own. Accuracy counts "und" as wrong and is reported on the languages
langdetect knows (its "no" counted as nb) and on all languages. Speed is texts per second of CPU time in one
process (so per core): the median of three timed runs over the same sample of texts (`--timing-limit` per
language), after the accuracy pass has warmed the detector up; "latin/s" times only the Latin-script ones (no
script shortcut: the slowest path), and "cold/s" is the accuracy pass itself, model loading included.
Load time is building the detector; Lingua loads each language's models lazily, so its cost shows in
"cold/s" and in the peak RSS, which is that of the whole run.
For the default a reliability table shows, per score bin, how often the answer was right.

Articles: besides single sentences, each language's sentences are grouped into `--articles` multi-paragraph articles
per language (1-6 paragraphs of 2-5 sentences, seeded, all from one cross-validation fold so that the fold's pair
models never saw them), as news reaches the detector; "acc art" is the accuracy on those, and "ms/art" the CPU per
article (median of the timed runs) over them and the real article bodies of ../shared/data/extraction-dev (mostly
English; no language labels, so timed only). `ensemble-always-py3langid` is the default without the agreement
shortcut (py3langid runs on every text): the speed-up and the unchanged accuracy in one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.training import read_sentences, train_pair_model  # noqa: E402
from transforms.classifier_file import save_model  # noqa: E402
from transforms.language import (  # noqa: E402
    LANGUAGE_SCRIPTS,
    LanguageDetector,
    LanguageSettings,
    load_pair_model,
    normalize_code,
)

DEFAULT_DATA = REPO / ".." / "shared" / "data" / "langid-dev"
BODIES = REPO / ".." / "shared" / "data" / "extraction-dev" / "ground-truth.json"
# Single detectors are measured raw (threshold 0: every best guess counts), since their own probabilities are not
# calibrated; the ensembles with their default threshold, so "und" answers count as wrong.
VARIANTS = {
    "langdetect": LanguageSettings(backend="langdetect", threshold=0.0),
    "py3langid": LanguageSettings(backend="py3langid", threshold=0.0),
    "pycld2": LanguageSettings(backend="pycld2", threshold=0.0),
    "fasttext": LanguageSettings(backend="fasttext", threshold=0.0),
    "lingua": LanguageSettings(backend="lingua", threshold=0.0),
    "ensemble-fast": LanguageSettings(ensemble=("py3langid", "pycld2", "fasttext")),
    "ensemble-lowmem": LanguageSettings(lingua_low_accuracy=True),
    "ensemble-always-py3langid": LanguageSettings(agreement=0.0),
    "ensemble": LanguageSettings(),
}
DEFAULT = "ensemble"
BINS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0001)


def load_data(directory: Path, limit: int) -> list[tuple[str, str]]:
    """(language, sentence) pairs, `limit` per language at most (0: all), read as the pair models' training reads
    them, so that a sentence's line number (its cross-validation fold) is the same for both."""
    codes = sorted(path.stem for path in directory.glob("??.txt"))  # not LICENSE.txt and the like
    texts, labels = read_sentences(directory, codes)
    return [(lang, text) for lang, text, i in zip(labels, texts, _line_numbers(labels)) if not limit or i < limit]


def build_articles(
    data: list[tuple[str, str]], per_language: int, folds: int, seed: int = 0
) -> list[tuple[str, str, int]]:
    """(language, article, fold): `per_language` articles per language of 1-6 paragraphs of 2-5 sentences, each
    article's sentences drawn from one fold (a sentence's fold is its line number modulo `folds`)."""
    rng = random.Random(seed)
    pools: dict[tuple[str, int], list[str]] = {}
    for (lang, text), i in zip(data, _line_numbers([lang for lang, _ in data])):
        pools.setdefault((lang, i % folds), []).append(text)
    articles = []
    for lang in sorted({lang for lang, _ in data}):
        for n in range(per_language):
            pool = pools[(lang, n % folds)]
            paragraphs = [
                " ".join(rng.sample(pool, min(len(pool), rng.randint(2, 5)))) for _ in range(rng.randint(1, 6))
            ]
            articles.append((lang, "\n\n".join(paragraphs), n % folds))
    return articles


def _line_numbers(gold: list[str]) -> list[int]:
    """Each sentence's position among the sentences of its language."""
    seen: dict[str, int] = {}
    numbers = []
    for lang in gold:
        numbers.append(seen.get(lang, 0))
        seen[lang] = numbers[-1] + 1
    return numbers


def langdetect_languages() -> set[str]:
    """The languages langdetect has profiles for, as ISO 639-1 codes."""
    import os

    from langdetect import detector_factory

    return {code for name in os.listdir(detector_factory.PROFILES_DIRECTORY) for code in normalize_code(name)}


def _speed(detector: LanguageDetector, texts: list[str], runs: int) -> float:
    timings = []
    for _ in range(runs):
        # The detector remembers its answers; a timed run measures the detection, so it starts with none.
        detector.forget_answers()
        # CPU time of this process: texts per second per core, less disturbed by other work on the machine.
        start = time.process_time()
        for text in texts:
            detector.detect(text)
        timings.append(time.process_time() - start)
    return len(texts) / statistics.median(timings)


def train_fold_pair_models(directory: Path, settings: LanguageSettings, folds: int, out: Path) -> list[list[str]]:
    """For each fold k, the pair models of `settings` retrained without the sentences of fold k (a sentence's fold
    is its line number among its file's sentences modulo `folds`); returns the model files, one list per fold."""
    files: list[list[str]] = [[] for _ in range(folds)]
    for name in settings.pair_models:
        languages = load_pair_model(name).labels
        texts, labels = read_sentences(directory, languages)
        line_numbers = _line_numbers(labels)
        for k in range(folds):
            keep = [j for j, i in enumerate(line_numbers) if i % folds != k]
            model, _ = train_pair_model([texts[j] for j in keep], [labels[j] for j in keep])
            files[k].append(str(save_model(model, out / f"fold{k}-{Path(name).name}")))
    return files


def run_backend(
    settings: LanguageSettings,
    texts: list[str],
    timing_texts: list[str],
    latin_texts: list[str],
    runs: int,
    folds: list[int] | None = None,
    fold_models: list[list[str]] | None = None,
    articles: list[tuple[str, str, int]] = (),
    bodies: list[str] = (),
) -> dict:
    """Builds a detector in this (fresh) process; returns its answers, load time, speed and peak RSS.

    With `fold_models`, text i is judged with the pair models of fold `folds[i]`, which never saw it; the timed
    runs use the shipped models."""
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    # Threshold 0 keeps the best guess for the reliability table; the real threshold is applied afterwards.
    detector = LanguageDetector(dataclasses.replace(settings, threshold=0.0))
    load = time.perf_counter() - start
    # The first pass is cold: Lingua loads a language's models the first time it weighs that language.
    start = time.process_time()
    article_texts = [text for _, text, _ in articles]
    if fold_models:
        shipped = [load_pair_model(name) for name in settings.pair_models]
        answers: list = [None] * len(texts)
        article_answers: list = [None] * len(articles)
        for k, files in enumerate(fold_models):
            detector.use_pair_models([load_pair_model(f) for f in files])
            for i in (i for i, fold in enumerate(folds) if fold == k):
                answers[i] = detector.detect(texts[i])
            for i in (i for i, (_, _, fold) in enumerate(articles) if fold == k):
                article_answers[i] = detector.detect(article_texts[i])
        detector.use_pair_models(shipped)
    else:
        answers = [detector.detect(text) for text in texts]
        article_answers = [detector.detect(text) for text in article_texts]
    first_pass = len(texts) / max(time.process_time() - start, 1e-9)
    speed, latin_speed = _speed(detector, timing_texts, runs), _speed(detector, latin_texts, runs)
    timed_articles = article_texts + list(bodies)
    ms_per_article = 1000 / _speed(detector, timed_articles, runs) if timed_articles else float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "answers": answers,
        "article_answers": article_answers,
        "ms_per_article": ms_per_article,
        "load_s": load,
        "first_pass_per_s": first_pass,
        "texts_per_s": speed,
        "latin_texts_per_s": latin_speed,
        "rss_mb": rss / 1024,
        "rss_added_mb": (rss - rss0) / 1024,
    }


def _in_child(args):
    return run_backend(*args)


def accuracy(gold: list[str], predicted: list[str], languages: set[str]) -> float:
    """Share of texts in `languages` whose prediction is right."""
    pairs = [(g, p) for g, p in zip(gold, predicted) if g in languages]
    return sum(g == p for g, p in pairs) / len(pairs) if pairs else float("nan")


def reliability(gold: list[str], answers: list[tuple[str, float]]) -> list[str]:
    """Rows of a score-bin vs accuracy table."""
    rows = [f"{'score bin':>13} {'texts':>6} {'mean score':>10} {'accuracy':>8}"]
    for low, high in zip(BINS, BINS[1:]):
        hits = [(g == code, score) for g, (code, score) in zip(gold, answers) if low <= score < high]
        if hits:
            rows.append(
                f"[{low:.2f}, {min(high, 1.0):.2f}{']' if high > 1 else ')'} {len(hits):6d} "
                f"{statistics.fmean(s for _, s in hits):10.3f} {statistics.fmean(ok for ok, _ in hits):8.3f}"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Runs every backend on the data and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory with one <code>.txt per language")
    parser.add_argument("--limit", type=int, default=0, help="sentences per language for accuracy (0: all)")
    parser.add_argument("--timing-limit", type=int, default=20, help="sentences per language for the timed runs")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (the median counts)")
    parser.add_argument("--per-language", action="store_true", help="print accuracy per language and backend")
    parser.add_argument("--articles", type=int, default=20, help="multi-paragraph articles per language (0: none)")
    parser.add_argument(
        "--pair-folds",
        type=int,
        default=5,
        help="cross-validate the ensemble's pair models with this many folds (1: judge with the shipped models, "
        "which were trained on this data)",
    )
    parser.add_argument(
        "--backends", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS)
    )
    parser.add_argument(
        "--pair-models",
        default=None,
        help="comma-separated pair model files (or shipped names) for the ensembles, instead of the default's",
    )
    args = parser.parse_args(argv)
    if args.pair_models is not None:
        models = tuple(name for name in args.pair_models.split(",") if name)
        for name, settings in VARIANTS.items():
            if settings.backend == "ensemble":
                VARIANTS[name] = dataclasses.replace(settings, pair_models=models)
    if not args.data.is_dir():
        parser.error(f"no data directory at {args.data}")
    data = load_data(args.data, args.limit)
    gold = [lang for lang, _ in data]
    texts = [text for _, text in data]
    timing = load_data(args.data, args.timing_limit)
    timing_texts = [text for _, text in timing]
    # Latin-script sentences never take the script shortcut: the slowest path, and most of the news.
    latin_texts = [text for lang, text in timing if LANGUAGE_SCRIPTS.get(lang) == ("Latin",)]
    all_languages = set(gold)
    ld_languages = all_languages & langdetect_languages()
    articles = build_articles(data, args.articles, max(args.pair_folds, 1))
    article_gold = [lang for lang, _, _ in articles]
    bodies = []
    if args.articles and BODIES.is_file():
        bodies = [e.get("articleBody") or "" for e in json.loads(BODIES.read_text(encoding="utf-8")).values()]
        bodies = [body for body in bodies if body.strip()]
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown backends: {', '.join(unknown)}")
    print(
        f"{len(texts)} sentences in {len(all_languages)} languages ({len(ld_languages)} known to langdetect); "
        f"timing on {len(timing_texts)} sentences ({len(latin_texts)} in Latin script for latin/s), "
        f"median of {args.runs} runs of CPU time; {len(articles)} articles of langid-dev sentences "
        f"(mean {statistics.fmean(len(t) for _, t, _ in articles) if articles else 0:.0f} characters) for acc art, "
        f"timed with {len(bodies)} extraction-dev bodies for ms/art"
    )

    # The pair models were trained on these very sentences: judging a sentence with a model that saw it would
    # flatter them, so each sentence is judged by models retrained without its fold.
    folds = [i % args.pair_folds if args.pair_folds > 1 else 0 for i in _line_numbers(gold)]
    workdir = tempfile.TemporaryDirectory(prefix="langid-folds-")
    fold_models = {}
    for name in names:
        settings = VARIANTS[name]
        if args.pair_folds > 1 and settings.backend == "ensemble" and settings.pair_models:
            key = settings.pair_models
            if key not in fold_models:
                start = time.perf_counter()
                fold_models[key] = train_fold_pair_models(args.data, settings, args.pair_folds, Path(workdir.name))
                print(
                    f"(pair models retrained for {args.pair_folds}-fold cross-validation in "
                    f"{time.perf_counter() - start:.0f} s)"
                )
    print()

    results = {}
    ctx = mp.get_context("spawn")
    for name in names:
        settings = VARIANTS[name]
        models = fold_models.get(settings.pair_models) if settings.backend == "ensemble" else None
        with ctx.Pool(1) as pool:  # a fresh process per backend: its own load time and memory
            results[name] = pool.apply(
                _in_child, ((settings, texts, timing_texts, latin_texts, args.runs, folds, models, articles, bodies),)
            )
        r = results[name]
        threshold = VARIANTS[name].threshold
        r["predicted"] = [code if score >= threshold else "und" for code, score in r["answers"]]
        r["article_predicted"] = [code if score >= threshold else "und" for code, score in r["article_answers"]]

    header = (
        f"{'backend':<26} {'acc langdetect langs':>20} {'acc all':>8} {'acc art':>8} {'texts/s':>8} {'latin/s':>8} "
        f"{'ms/art':>7} {'cold/s':>7} {'load s':>7} {'peak RSS MB':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        label = f"{name} (default)" if name == DEFAULT else name
        print(
            f"{label:<26} {accuracy(gold, r['predicted'], ld_languages):20.4f} "
            f"{accuracy(gold, r['predicted'], all_languages):8.4f} "
            f"{accuracy(article_gold, r['article_predicted'], all_languages):8.4f} {r['texts_per_s']:8.0f} "
            f"{r['latin_texts_per_s']:8.0f} {r['ms_per_article']:7.3f} "
            f"{r['first_pass_per_s']:7.0f} "
            f"{r['load_s']:7.2f} {r['rss_mb']:11.0f}"
        )

    for name, r in results.items():
        if name == DEFAULT:
            und = sum(p == "und" for p in r["predicted"])
            print(f"\nreliability of {name} (threshold {VARIANTS[name].threshold}: {und} texts -> und)")
            print("\n".join(reliability(gold, r["answers"])))

    if args.per_language:
        print(f"\n{'lang':<5} " + " ".join(f"{name.replace('ensemble-', 'ens-'):>10}" for name in results))
        for lang in sorted(all_languages):
            cells = [accuracy(gold, r["predicted"], {lang}) for r in results.values()]
            mark = "*" if lang in ld_languages else " "
            print(f"{lang:<4}{mark} " + " ".join(f"{cell:10.3f}" for cell in cells))
        print("(* = known to langdetect)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
