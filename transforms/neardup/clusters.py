"""Star clusters of verified pairs, the canonical article of each and the verdicts for its members."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from transforms.article import Article, stable_id
from transforms.clock import UTC
from transforms.neardup.records import SignatureRecord

# ---------------------------------------------------------------------------------------------------------------
# Clusters.


class Member(NamedTuple):
    """What the canonical choice needs of a cluster member."""

    article_id: str
    prior: bool
    published_at: dt.datetime | None
    text_length: int
    outlet: str
    canonical_id: str  # for a prior member: the article its own cluster kept


def member_of(record: SignatureRecord) -> Member:
    """The Member of a signature record."""
    return Member(
        record.article_id,
        record.prior,
        record.published_at,
        record.text_length,
        record.outlet,
        record.canonical_id or record.article_id,
    )


_FAR_FUTURE = dt.datetime.max.replace(tzinfo=UTC)


def canonical_order(member: Member) -> tuple:
    """Sort key of the member a cluster keeps: a prior (already written) one first, then earliest published, then
    the longer text, then the smaller id."""
    return (not member.prior, member.published_at or _FAR_FUTURE, -member.text_length, member.article_id)


class Verdict(NamedTuple):
    """What clustering decided for one article of this run that has at least one near copy."""

    cluster_id: str
    cluster_size: int
    canonical_id: str  # the article the cluster keeps (a prior one's own canonical, when the cluster has one)
    is_canonical: bool
    revision: bool  # a copy from the same outlet as the canonical: the same story under a new URL or GUID
    matched_prior: bool  # a copy of an article written in an earlier run


def orient(a: SignatureRecord, b: SignatureRecord) -> tuple[SignatureRecord, SignatureRecord]:
    """(earlier, later) of a candidate pair: the later one is the possible copy, the earlier its canonical (a prior
    record first, then the earliest published, then the longer text, then the smaller id)."""
    return (a, b) if canonical_order(member_of(a)) <= canonical_order(member_of(b)) else (b, a)


class Link(NamedTuple):
    """A verified pair: `copy` is a near copy of `canonical`, which holds `score` of it."""

    canonical: Member
    copy: Member
    score: float


def _link_rank(link: Link) -> tuple:
    return (-link.score, canonical_order(link.canonical))


def star_clusters(links: Iterable[Link], follow_copies: float = 1.0) -> list[list[Member]]:
    """Clusters of verified links, each sorted by id, sorted by their first id: stars around a canonical article.

    Articles are taken in canonical order; each joins the cluster of the article it copies best among the canonical
    ones (not copies themselves) and the copies it holds at least `follow_copies` of, else starts its own. So a
    regional copy that carries a paragraph of another story is no bridge: that story's original, published after
    it, is not made a copy of a copy and merged with the copy's story, as connected components did. A near-identical
    copy of a copy still joins (a story syndicated so widely that its buckets were capped is paired with a few
    neighbours only). A prior (earlier run) copy counts as a copy, and one that is joined leads to the article its
    run kept (its `canonical_id`); a prior canonical article counts as canonical.
    """
    by_copy: dict[str, list[Link]] = {}
    members: dict[str, Member] = {}
    for link in links:
        by_copy.setdefault(link.copy.article_id, []).append(link)
        members.setdefault(link.canonical.article_id, link.canonical)
        members.setdefault(link.copy.article_id, link.copy)
    root_of: dict[str, str] = {}
    canonical: set[str] = set()  # the articles a copy may join at any score: not copies themselves
    for m in sorted(members.values(), key=canonical_order):
        if m.prior:  # settled in its own run: heads its cluster here (its canonical_id names what that run kept)
            root_of[m.article_id] = m.article_id
            if m.canonical_id == m.article_id:
                canonical.add(m.article_id)
            continue
        eligible = [
            link
            for link in by_copy.get(m.article_id, ())
            if link.canonical.article_id in root_of
            and (link.canonical.article_id in canonical or link.score >= follow_copies)
        ]
        best = min(eligible, key=_link_rank, default=None)
        if best is None:
            root_of[m.article_id] = m.article_id
            canonical.add(m.article_id)
        else:
            root_of[m.article_id] = root_of[best.canonical.article_id]
    groups: dict[str, list[Member]] = {}
    for x, root in root_of.items():
        groups.setdefault(root, []).append(members[x])
    return sorted(
        (sorted(g, key=lambda m: m.article_id) for g in groups.values() if len(g) > 1), key=lambda g: g[0].article_id
    )


def cluster_verdicts(members: Sequence[Member]) -> dict[str, Verdict]:
    """Verdicts for the current (non-prior) members of one cluster."""
    canonical = min(members, key=canonical_order)
    root = canonical.canonical_id if canonical.prior else canonical.article_id
    cluster_id = stable_id("neardup", root)
    out = {}
    for m in members:
        if m.prior:
            continue
        is_canonical = m.article_id == canonical.article_id
        out[m.article_id] = Verdict(
            cluster_id=cluster_id,
            cluster_size=len(members),
            canonical_id=root,
            is_canonical=is_canonical,
            revision=not is_canonical and bool(m.outlet) and m.outlet == canonical.outlet,
            matched_prior=canonical.prior,
        )
    return out


def apply_verdict(article: Article, verdict: Verdict | None, mode: str) -> Article | None:
    """The article to write (None to drop it) under `mode`, given its verdict (None: it has no near copy)."""
    if verdict is None:
        return article
    if verdict.is_canonical:
        return dataclasses.replace(article, cluster_id=verdict.cluster_id, cluster_size=verdict.cluster_size)
    if mode == "drop":
        return None
    return dataclasses.replace(
        article, cluster_id=verdict.cluster_id, cluster_size=verdict.cluster_size, duplicate_of=verdict.canonical_id
    )


# ---------------------------------------------------------------------------------------------------------------
# The Beam composite.
