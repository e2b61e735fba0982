"""Verification of a candidate pair: is the later article a near copy of the earlier one?"""

from __future__ import annotations

import numpy as np

from transforms.neardup.hashing import similarity
from transforms.neardup.records import SignatureRecord
from transforms.neardup.settings import NearDedupSettings

# Verification.


def _share_agrees(na: set[int], nb: set[int], overlap: float, minimum: int) -> bool:
    if overlap <= 0 or len(na) < minimum or len(nb) < minimum:
        return True
    return len(na & nb) >= overlap * min(len(na), len(nb))


def facts_agree(
    a: bytes, b: bytes, overlap: float, minimum: int, number_overlap: float = 0.0, number_minimum: int = 1
) -> bool:
    """False when the facts of two texts disagree: both state at least `minimum` names and fewer than `overlap` of
    the shorter list of names appear in the other, or at least `number_minimum` contexts (the words either side of a
    figure) hold a figure in both texts, and fewer than `number_overlap` of the figures in those contexts (of the
    shorter list) are the same in the other (a template story: "rose 3 percent" against "rose 5 percent"). Figures
    in contexts only one text has say nothing either way."""
    # Python sets: these lists are short, and numpy's set functions cost more than they save on them.
    fa, fb = np.frombuffer(a, dtype="<u4").tolist(), np.frombuffer(b, dtype="<u4").tolist()
    if not _share_agrees({x for x in fa if not x & 1}, {x for x in fb if not x & 1}, overlap, minimum):
        return False
    if number_overlap <= 0:
        return True
    figures_a, figures_b = {x for x in fa if x & 1}, {x for x in fb if x & 1}
    contexts = {x >> 16 for x in figures_a} & {x >> 16 for x in figures_b}
    if len(contexts) < number_minimum:
        return True
    # Counted per figure, not per word: a template that says "aged 35 ... aged 40 ... aged 23" against "aged 19 ...
    # aged 81 ... aged 23" agrees once by chance in three, not in the one word they share.
    in_a = {x for x in figures_a if x >> 16 in contexts}
    in_b = {x for x in figures_b if x >> 16 in contexts}
    return len(in_a & in_b) >= number_overlap * min(len(in_a), len(in_b))


# Two texts at least this alike (Jaccard) are copies whatever their leads.
_WHOLE = 0.5


def leads_agree(earlier: bytes, later: bytes, settings: NearDedupSettings = NearDedupSettings()) -> bool:
    """Whether at least `lead_overlap` of the earlier text's lead shingles (its first `lead_words` words) are among
    the later's first LEAD_REACH * lead_words words (room for a paragraph put on top). True when either lead is too
    short to say (fewer than 10 shingles) or the check is off."""
    first = np.frombuffer(earlier, dtype="<u2")[: max(1, settings.lead_words - settings.shingle_size + 1)].tolist()
    second = np.frombuffer(later, dtype="<u2").tolist()
    if settings.lead_overlap <= 0 or len(first) < 10 or len(second) < 10:
        return True
    found = set(second)
    return sum(x in found for x in first) >= settings.lead_overlap * len(first)


def _shingle_count(record: SignatureRecord, size: int) -> int:
    # Distinct shingles, nearly: news text seldom repeats a run of words.
    return max(1, record.word_count - size + 1)


def containment(earlier: SignatureRecord, later: SignatureRecord, jaccard: float, size: int) -> float:
    """The estimated share of `later`'s shingles that `earlier` has: |A and B| = J (|A| + |B|) / (1 + J)."""
    na, nb = _shingle_count(earlier, size), _shingle_count(later, size)
    return min(1.0, jaccard * (na + nb) / (1.0 + jaccard) / nb)


def is_near_copy(
    earlier: SignatureRecord, later: SignatureRecord, settings: NearDedupSettings = NearDedupSettings()
) -> tuple[bool, float]:
    """Whether `later` is a copy of `earlier`, and how much of it `earlier` holds (the estimated containment, at
    least the estimated Jaccard similarity): the score a copy picks its canonical by.

    A copy either resembles the earlier text as a whole (Jaccard at or above `threshold`: edited, re-headlined,
    with furniture) or is mostly made of it (containment at or above `containment`: cut to its first paragraphs,
    with a local paragraph added); unless alike as a whole, it keeps the top of the earlier (`leads_agree`). Never
    across languages (nor signature schemes); stricter for short texts, whose few shingles make the estimate coarse
    and a shared headline formula common, and for two articles of one outlet; never when the facts they state
    disagree.
    """
    if earlier.language != later.language or earlier.scheme != later.scheme:
        return False, 0.0
    jaccard = similarity(earlier.values(), later.values())
    score = max(jaccard, containment(earlier, later, jaccard, settings.shingle_size))
    needed = settings.threshold
    if min(earlier.word_count, later.word_count) < settings.min_words:
        needed = max(needed, settings.short_threshold)
    if earlier.outlet and earlier.outlet == later.outlet:
        needed = max(needed, settings.same_outlet_threshold)
    # Containment counts for a later text no longer than the earlier one (a cut copy), never for a short text or
    # two articles of one outlet: otherwise a short story whose paragraph a regional copy carries would become a
    # copy of that copy.
    contained = (
        score >= settings.containment and needed == settings.threshold and later.word_count <= earlier.word_count
    )
    if jaccard < needed and not contained:
        return False, score
    if jaccard < _WHOLE and not leads_agree(earlier.lead, later.lead, settings):
        return False, score
    # Names must agree about as much as the words do: a copy cut to its lead plus a local paragraph shares the
    # names of the lead, not all of its own. Figures are compared where both texts give one between the same words.
    agree = facts_agree(
        earlier.facts,
        later.facts,
        settings.fact_overlap * min(1.0, score),
        settings.fact_min,
        settings.number_overlap,
        settings.number_min,
    )
    return agree, score
