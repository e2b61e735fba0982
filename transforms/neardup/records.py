"""Signature records: what banding and verification need of an article, and what the run state keeps."""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa

from transforms.article import Article
from transforms.clock import UTC
from transforms.neardup.hashing import minhash_from_shingles, shingle_hashes
from transforms.neardup.settings import NearDedupSettings

# Signature records: what banding and verification need of an article, and what the run state keeps.


@dataclasses.dataclass(frozen=True)
class SignatureRecord:
    """An article's signature and what verification and the canonical choice need of it.

    `prior` records come from earlier runs: they are matched but never written. `canonical_id` is the article a
    record's cluster kept (its own id when it was kept itself); a copy matched to a prior record points there.
    """

    article_id: str
    language: str
    signature: bytes  # num_perm little-endian uint32
    published_at: dt.datetime | None = None
    text_length: int = 0
    word_count: int = 0
    facts: bytes = b""  # sorted distinct uint32 hashes of the names (even) and numbers in context (odd) of the text
    outlet: str = ""
    prior: bool = False
    canonical_id: str = ""
    scheme: str = NearDedupSettings().scheme
    lead: bytes = b""  # little-endian uint16 hashes of the shingles of the text's first words, in order

    def values(self) -> np.ndarray:
        """The signature as a uint32 array."""
        return np.frombuffer(self.signature, dtype="<u4")

    def __reduce__(self):
        # A record is pickled for every candidate pair it is in (the joins of the batch composite): a tuple of the
        # values in field order pickles about twice as fast as the default dict of field names.
        return _record_from_values, (_RECORD_VALUES(self),)


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(SignatureRecord))
_RECORD_VALUES = operator.attrgetter(*_RECORD_FIELDS)


def _record_from_values(values: tuple) -> SignatureRecord:
    # Bypasses the frozen __init__: the values came from a valid record.
    record = object.__new__(SignatureRecord)
    record.__dict__.update(zip(_RECORD_FIELDS, values))
    return record


SIGNATURE_SCHEMA = pa.schema(
    [
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("language", pa.string()),
        pa.field("signature", pa.binary(), nullable=False),
        pa.field("published_at", pa.timestamp("us", tz="UTC")),
        pa.field("text_length", pa.int64()),
        pa.field("word_count", pa.int64()),
        pa.field("facts", pa.binary()),
        pa.field("outlet", pa.string()),
        pa.field("canonical_id", pa.string()),
        pa.field("scheme", pa.string()),
        pa.field("lead", pa.binary()),
    ]
)


def signature_row(record: SignatureRecord) -> dict:
    """The run-state row of a signature record (columns of SIGNATURE_SCHEMA)."""
    return {name: getattr(record, name) for name in SIGNATURE_SCHEMA.names}


def signature_from_row(row: dict) -> SignatureRecord:
    """A prior signature record from a run-state row (as `signature_row` wrote it)."""
    fields = {name: row.get(name) for name in SIGNATURE_SCHEMA.names}
    published = fields["published_at"]
    if published is not None and published.tzinfo is None:
        published = published.replace(tzinfo=UTC)
    return SignatureRecord(
        article_id=fields["article_id"],
        language=fields["language"] or "und",
        signature=bytes(fields["signature"]),
        published_at=published,
        text_length=int(fields["text_length"] or 0),
        word_count=int(fields["word_count"] or 0),
        facts=bytes(fields["facts"] or b""),
        outlet=fields["outlet"] or "",
        prior=True,
        canonical_id=fields["canonical_id"] or fields["article_id"],
        scheme=fields["scheme"] or "",
        lead=bytes(fields["lead"] or b""),  # absent from states written before it existed
    )


def run_records(table: pa.Table, scheme: str) -> list[SignatureRecord]:
    """The records of this run's staged rows (a table with SIGNATURE_SCHEMA's columns but canonical_id and scheme):
    `signature_from_row` of each row with prior False, no canonical id yet and the run's `scheme`, made column by
    column. The batch plane makes one for each end of every candidate pair it verifies (646,792 on 100,000 AG News
    entries); a dict per row and a second record from `dataclasses.replace` were half their cost."""
    n = len(table)

    def column(name: str) -> list:
        return table.column(name).to_pylist() if name in table.column_names else [None] * n

    published = [p.replace(tzinfo=UTC) if p is not None and p.tzinfo is None else p for p in column("published_at")]
    return [
        _record_from_values(
            (
                article_id,
                language or "und",
                bytes(signature),
                when,
                int(length or 0),
                int(words or 0),
                bytes(facts or b""),
                outlet or "",
                False,
                "",
                scheme,
                bytes(lead or b""),
            )
        )
        for article_id, language, signature, when, length, words, facts, outlet, lead in zip(
            column("article_id"),
            column("language"),
            column("signature"),
            published,
            column("text_length"),
            column("word_count"),
            column("facts"),
            column("outlet"),
            column("lead"),
        )
    ]


# scheme://host[:port] followed by the path, query, fragment or the end, with a plain ASCII host: what nearly every
# article URL is, read without urlsplit (which cost a twentieth of the signing). Anything else goes to urlsplit.
_PLAIN_HOST = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([-A-Za-z0-9._~]*)(?::[0-9]*)?(?:[/?#]|\Z)")


def _host(url: str) -> str:
    url = url.strip()
    plain = _PLAIN_HOST.match(url)
    if plain:
        return plain.group(1).lower()
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def outlet_of(article: Article) -> str:
    """The host that published an article (its URL's, else its feed's, without `www.`) and the feed it came through.

    Revisions share both. The host alone is not enough: a wire story and its copy in another outlet's feed often
    link to the same host (the wire's, with tracking parameters), and feeds served from one host (an aggregator, a
    loopback test server) give every link that host; counted as one outlet, every such copy needed the stricter
    `same_outlet_threshold` and lost containment, which took near-copy recall of the whole pipeline from 0.98 to
    0.27 (benchmarks/neardup_pipeline.py --one-host).
    """
    for url in (article.url, article.feed_url):
        host = _host(url).rstrip(".")
        if host:
            host = host[4:] if host.startswith("www.") else host
            return f"{host} {article.feed_url.strip()}".rstrip()
    return ""


def signature_records(
    articles: Sequence[Article], settings: NearDedupSettings = NearDedupSettings()
) -> list[SignatureRecord | None]:
    """One record per article (None for an article without words), signed as one vectorised batch."""
    batch = shingle_hashes(
        [(a.title, a.text) for a in articles], settings.shingle_size, settings.max_chars, settings.lead_words
    )
    # Converted once per batch, then cut per record: a conversion per record cost a sixth of the signing.
    sigs = minhash_from_shingles(batch, settings.num_perm, settings.seed).astype("<u4", copy=False)
    facts, fact_bounds = batch.facts.astype("<u4", copy=False), batch.fact_bounds.tolist()
    lead, lead_bounds = batch.lead.astype("<u2", copy=False), batch.lead_bounds.tolist()
    out: list[SignatureRecord | None] = []
    for i, (article, count) in enumerate(zip(articles, batch.word_counts.tolist())):
        if count == 0:
            out.append(None)
            continue
        out.append(
            SignatureRecord(
                article_id=article.article_id,
                language=article.language or "und",
                signature=sigs[i].tobytes(),
                published_at=article.published_at,
                text_length=len(article.title) + len(article.text),
                word_count=count,
                facts=facts[fact_bounds[i] : fact_bounds[i + 1]].tobytes(),
                outlet=outlet_of(article),
                scheme=settings.scheme,
                lead=lead[lead_bounds[i] : lead_bounds[i + 1]].tobytes(),
            )
        )
    return out


# ---------------------------------------------------------------------------------------------------------------
