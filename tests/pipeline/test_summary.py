"""pipeline.summary: the one reconciliation formula, as the run record states it and the report shows it."""

import dataclasses
import datetime as dt
import json

from pipeline.report import build_report
from pipeline.summary import ACCOUNTED, RunSummary

COUNTS = {"articles_written": 7, "duplicates": 3, "already_written": 2, "entry_dead_letters": 1}


def summary(**counts) -> RunSummary:
    return RunSummary(run_id="r1", output="/out", started_at="2026-11-20T12:00:00+00:00", **counts)


def test_every_term_of_the_formula_is_a_count_of_the_summary():
    fields = {f.name: f.type for f in dataclasses.fields(RunSummary)}
    assert set(COUNTS) == set(ACCOUNTED) and all(fields[name] == "int" for name in ACCOUNTED)


def test_entries_read_reconcile_when_each_is_accounted_for_and_the_files_hold_the_articles():
    assert summary(entries_read=13, rows_in_files=7, **COUNTS).reconciled
    assert not summary(entries_read=14, rows_in_files=7, **COUNTS).reconciled  # one entry unaccounted for
    for name in ACCOUNTED:  # ... which any term of the formula may account for
        counts = {**COUNTS, name: COUNTS[name] + 1}
        assert summary(entries_read=14, rows_in_files=counts["articles_written"], **counts).reconciled
    assert not summary(entries_read=13, rows_in_files=6, **COUNTS).reconciled


def test_the_report_shows_the_same_terms(tmp_path):
    record = summary(entries_read=14, rows_in_files=7, **COUNTS).record()  # one entry unaccounted for
    (tmp_path / "_runs").mkdir()
    (tmp_path / "_runs" / "r1.json").write_text(json.dumps(record))
    page = build_report(str(tmp_path), now=dt.datetime(2026, 11, 20, 13, tzinfo=dt.timezone.utc))
    for name in ACCOUNTED:
        assert f"<td>= {name.replace('_', ' ')}</td>" in page
    assert "not accounted for by the counts above" in page and "NOT reconciled" in page
