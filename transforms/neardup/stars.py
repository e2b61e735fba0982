"""Star clusters and verdicts on arrays: what `star_clusters` and `cluster_verdicts` decide, for links held as
arrays of member numbers and scores rather than as Link objects.

The batch plane verifies hundreds of thousands of pairs on a feed of repeated rows (551,614 links on 100,000 AG News
entries): as Links, two Members each, they held 121 MiB until the clusters were made; as three arrays, 13 MiB. The
members' fields are columns (`MemberColumns`), one entry per member, so a member met in many links is held once.
tests/transforms/test_neardup_arrays.py checks these verdicts against `verdicts_of_links` on the same links.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import numpy as np

from transforms.article import stable_id
from transforms.clock import UTC
from transforms.neardup.clusters import Member, Verdict

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
# canonical_order puts an article without a date at datetime.max: the same instant as a number.
NO_DATE = (dt.datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MICROSECOND


def date_number(published: dt.datetime | None) -> int:
    """Microseconds since the epoch (NO_DATE for none): ordered as canonical_order orders the dates."""
    return NO_DATE if published is None else (published - _EPOCH) // _MICROSECOND


class MemberColumns:
    """The Member fields of the articles met in links, by a number below `size` (the plane's id ranks: numbers in
    id order, so that ordering by number is ordering by id), filled as they are met. No field keeps a Python object
    of the member's record (its outlet is a number, its id is asked for at the end): a record's strings held past
    its block would keep the freed records' memory from being reused."""

    def __init__(self, size: int):
        self.known = np.zeros(size, dtype=bool)
        self.prior = np.zeros(size, dtype=bool)
        self.published = np.zeros(size, dtype=np.int64)
        self.text_length = np.zeros(size, dtype=np.int64)
        self.outlet = np.zeros(size, dtype=np.int32)  # a number in `outlets`; 0: none
        self.outlets: list[str] = [""]
        self._outlet_numbers: dict[str, int] = {"": 0}
        self.canonical_id: dict[int, str] = {}  # a prior member whose run kept another article: that article

    def add(self, number: int, member: Member) -> None:
        """Member `number`'s fields, unless it was added before."""
        if self.known[number]:
            return
        self.known[number] = True
        self.prior[number] = member.prior
        self.published[number] = date_number(member.published_at)
        self.text_length[number] = member.text_length
        outlet = self._outlet_numbers.get(member.outlet)
        if outlet is None:
            outlet = self._outlet_numbers[member.outlet] = len(self.outlets)
            self.outlets.append(member.outlet)
        self.outlet[number] = outlet
        if member.canonical_id != member.article_id:
            self.canonical_id[number] = member.canonical_id


@dataclasses.dataclass
class LinkArrays:
    """Verified links: `copy[i]` is a near copy of `canonical[i]` (member numbers), which holds `score[i]` of it."""

    canonical: np.ndarray
    copy: np.ndarray
    score: np.ndarray

    @classmethod
    def concatenate(cls, parts: list[LinkArrays]) -> LinkArrays:
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("canonical", "copy", "score")))


def _canonical_positions(nodes: np.ndarray, members: MemberColumns) -> np.ndarray:
    """Each node's place in canonical_order: a prior first, then the earliest published, the longer text, the
    smaller id (number)."""
    order = np.lexsort((nodes, -members.text_length[nodes], members.published[nodes], ~members.prior[nodes]))
    position = np.empty(len(nodes), dtype=np.int64)
    position[order] = np.arange(len(nodes))
    return position


def star_roots(links: LinkArrays, members: MemberColumns, follow_copies: float) -> tuple[np.ndarray, np.ndarray]:
    """(the linked members, sorted; the position in it of the member whose cluster each joins), as `star_clusters`
    joins them: in canonical order, each member joins the root of the first of its links, best first (highest
    score, then the canonical first in canonical order), whose canonical has joined and is not a copy itself or is
    held at least `follow_copies`, else heads its own; a prior member heads its own."""
    nodes = np.union1d(links.canonical, links.copy)
    position = _canonical_positions(nodes, members)
    canonical, copy = np.searchsorted(nodes, links.canonical), np.searchsorted(nodes, links.copy)
    by_copy = np.lexsort((position[canonical], -links.score, copy))
    canonical, score = canonical[by_copy], links.score[by_copy]
    bounds = np.searchsorted(copy[by_copy], np.arange(len(nodes) + 1)).tolist()
    del copy, by_copy
    prior = members.prior[nodes].tolist()
    own = [x not in members.canonical_id for x in nodes.tolist()]
    root = [-1] * len(nodes)
    head = [False] * len(nodes)  # members a copy may join at any score: not copies themselves
    for x in np.argsort(position).tolist():
        if prior[x]:  # settled in its own run: heads its cluster here, canonical unless its run kept another
            root[x], head[x] = x, own[x]
            continue
        for j in range(bounds[x], bounds[x + 1]):
            c = int(canonical[j])
            if root[c] >= 0 and (head[c] or score[j] >= follow_copies):
                root[x] = root[c]
                break
        else:
            root[x], head[x] = x, True
    return nodes, np.array(root, dtype=np.int64)


def verdicts_of_link_arrays(
    links: LinkArrays, members: MemberColumns, id_of: Callable[[int], str], follow_copies: float, counts: dict
) -> tuple[np.ndarray, list[Verdict]]:
    """(member numbers, their verdicts): what `verdicts_of_links` gives for the same links, for the current members
    of every star cluster of two or more (`id_of` gives a member's article id); counts["clusters"] counts the
    clusters."""
    nodes, roots = star_roots(links, members, follow_copies)
    position = _canonical_positions(nodes, members)
    by_root = np.argsort(roots, kind="stable")
    nodes, roots, position = nodes[by_root], roots[by_root], position[by_root]
    starts = np.flatnonzero(np.concatenate(([True], roots[1:] != roots[:-1]))) if len(roots) else roots
    numbers, verdicts = [], []
    for lo, hi in zip(starts.tolist(), np.append(starts[1:], len(roots)).tolist()):
        if hi - lo < 2:
            continue
        counts["clusters"] += 1
        canonical = int(nodes[lo + int(np.argmin(position[lo:hi]))])
        canonical_prior = bool(members.prior[canonical])
        root = id_of(canonical)
        if canonical_prior:
            root = members.canonical_id.get(canonical, root)
        cluster_id = stable_id("neardup", root)
        outlet = int(members.outlet[canonical])
        for m, own_outlet, prior in zip(
            nodes[lo:hi].tolist(), members.outlet[nodes[lo:hi]].tolist(), members.prior[nodes[lo:hi]].tolist()
        ):
            if prior:
                continue
            numbers.append(m)
            verdicts.append(
                Verdict(
                    cluster_id=cluster_id,
                    cluster_size=hi - lo,
                    canonical_id=root,
                    is_canonical=m == canonical,
                    revision=m != canonical and own_outlet != 0 and own_outlet == outlet,
                    matched_prior=canonical_prior,
                )
            )
    return np.array(numbers, dtype=np.int64), verdicts
