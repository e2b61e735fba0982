"""Tunables of near-duplicate detection."""

from __future__ import annotations

import dataclasses

MODES = ("drop", "mark")


@dataclasses.dataclass(frozen=True)
class NearDedupSettings:
    """Tunables of near-duplicate detection. `num_perm` must be a power of two that `bands` divides."""

    enabled: bool = True
    # drop: only the canonical article of a cluster is written; mark: all are, the copies with `duplicate_of`.
    mode: str = "drop"
    # Words per shingle. 3 keeps copies with scattered word edits similar; larger sizes forgive fewer edits.
    shingle_size: int = 3
    num_perm: int = 128
    # 64 bands of 2 rows: a pair at Jaccard 0.25 becomes a candidate with probability 0.984, at 0.05 with 0.15.
    bands: int = 64
    # Besides its bands, each article is bucketed under this many keys sampled from the top of its text (see
    # `lead_keys`): a copy cut to its first paragraphs whose Jaccard similarity is too low to share a band still
    # becomes a candidate. 0 turns this source of candidates off.
    lead_keys: int = 8
    # Estimated Jaccard similarity of the shingle sets at or above which two articles are copies.
    threshold: float = 0.25
    # Or: the share of the later article's shingles that the earlier one has (estimated from the Jaccard estimate and
    # the two word counts) at or above which the later is a copy: a wire story cut to a third still qualifies.
    # 1 turns containment off.
    containment: float = 0.3
    # Articles with fewer words than this (title only, a one-line brief) need `short_threshold` instead.
    min_words: int = 30
    short_threshold: float = 0.7
    # Two articles of one outlet share its furniture (newsletter prompts, copyright lines), which inflates their
    # similarity; a true same-outlet copy is a revision, nearly identical. So they need this much.
    same_outlet_threshold: float = 0.6
    # Facts are the numbers and the capitalised words inside sentences (names) of a text. When both texts state at
    # least `fact_min` names, this share of the shorter list of names, times the estimated containment, must appear
    # in the other. When at least `number_min` contexts (the words either side) hold a figure in both texts,
    # `number_overlap` of the figures in those contexts (of the shorter list) must be the same: template stories (weather, market closes,
    # results) differ in their figures only. 0 turns a check off.
    fact_overlap: float = 0.2
    number_overlap: float = 0.5
    fact_min: int = 3
    number_min: int = 1
    # The lead is the first `lead_words` words of the text (the title aside). Unless two texts are alike as a whole
    # (Jaccard at least 0.5), at least `lead_overlap` of the earlier's lead shingles must be in the later's first
    # LEAD_REACH * lead_words words (room for a local paragraph put on top): a copy, however cut, keeps the top of
    # its story; a story that only shares a quotation or a boilerplate paragraph with another does not. 0 turns the
    # check off.
    lead_words: int = 40
    lead_overlap: float = 0.25
    # Clusters are stars around a canonical article: a copy joins the cluster of another copy only when it holds
    # this much of it, never through a paragraph two stories share. Lower chains more: a story syndicated so widely
    # that its buckets are capped pairs most copies with other copies only (0.7 lost 3 points of recall on such a
    # synthetic corpus, 0.5 none; on the real-text set 0 cost 0.7 points of precision, 0.5 0.07).
    follow_copies: float = 0.5
    # Buckets with more members are capped: each member is paired only with its next `bucket_window` neighbours.
    # Buckets grow with the number of articles that share furniture; at 100,000 synthetic articles a cap of 16
    # instead of 64 cuts the candidate pairs by 37% and loses no copy.
    max_bucket_size: int = 16
    bucket_window: int = 4
    # Each article (the smaller id of a pair) is verified against at most this many candidates, those sharing the
    # most buckets first: true copies share many bands or lead keys, a chance pair one or two. Without a cap the
    # pairs of a 100,000-article run grew faster than the run (a finite pool of shared paragraphs and phrases) and
    # filled 23 GB in the joins that carry a record per pair.
    max_partners: int = 32
    # Only the first `max_chars` characters of title + text are shingled.
    max_chars: int = 50_000
    seed: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.num_perm < 2 or self.num_perm & (self.num_perm - 1) or self.num_perm > 1024:
            raise ValueError("num_perm must be a power of two between 2 and 1024")
        if self.bands < 1 or self.num_perm % self.bands:
            raise ValueError("bands must divide num_perm")
        if self.shingle_size < 1:
            raise ValueError("shingle_size must be at least 1")
        for name in (
            "threshold",
            "containment",
            "short_threshold",
            "same_outlet_threshold",
            "fact_overlap",
            "number_overlap",
            "follow_copies",
            "lead_overlap",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.lead_keys < 0:
            raise ValueError("lead_keys must be at least 0")
        if self.max_bucket_size < 2 or self.bucket_window < 1:
            raise ValueError("max_bucket_size must be at least 2 and bucket_window at least 1")
        if self.max_partners < 1:
            raise ValueError("max_partners must be at least 1")

    @property
    def rows(self) -> int:
        """Signature values per band."""
        return self.num_perm // self.bands

    @property
    def keys_per_record(self) -> int:
        """Bucket keys per article: its bands and its lead keys."""
        return self.bands + self.lead_keys

    @property
    def scheme(self) -> str:
        """What makes two signatures comparable: records of another scheme (say, from a run state written with
        other settings) are never compared."""
        return f"minhash-oph3-p{self.num_perm}-w{self.shingle_size}-c{self.max_chars}-l{self.lead_words}-s{self.seed}"


# ---------------------------------------------------------------------------------------------------------------
# Tokens and shingles.
#
# Text is normalised like the exact content hash (NFKC, case folded), then split into tokens on every character that
# is not a letter, digit or mark. Characters of scripts written without spaces (Han, kana, Thai) are one token each,
