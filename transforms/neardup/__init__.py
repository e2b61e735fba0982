"""Near-duplicates: syndicated copies, edited copies and revisions of one story collapse into one cluster.

Runs after exact dedup and before windowing. The batch graph signs each article as it stages it and decides on the
staged columns (pipeline/plane/: `signature_records`, then `candidate_key_arrays`, `candidate_pairs`,
`verdicts_of_pairs`); `find_near_copies` is the same on in-memory records; streaming is DropNearCopiesWithState.

Each article with words gets a MinHash signature of the word shingles of its normalised title and text (one
permutation hashing with optimal densification, vectorised in numpy: see `minhash_signatures`). Then:

1. LSH banding: each signature is cut into `bands` bands; each band gives a key made of the band's values, the
   band's index and the article's language (so languages never meet); `lead_keys` add keys from the top of the text.
2. Sorting the keys (a shard of them at a time) gives buckets; each bucket gives candidate pairs. A bucket larger than
   `max_bucket_size` (shared furniture, boilerplate, a story syndicated hundreds of times) is capped: its members,
   sorted by id, are paired only with their next `bucket_window` neighbours, so a bucket costs O(n), never O(n^2).
3. Candidate pairs are verified on their two records (`is_near_copy`), the later article (canonical
   order, see 4) as the possible copy of the earlier: same language, and either an estimated Jaccard similarity at
   or above `threshold` (higher for short texts and for two articles of one outlet) or, for a later text no longer
   than the earlier, an estimated containment (the share of the later's shingles that the earlier has) at or above
   `containment`: a wire story cut to its first paragraphs with a local paragraph added. Unless the two are alike
   as a whole, the later must keep the top of the earlier (`leads_agree`: a quarter of the earlier's first
   `lead_words` words' shingles among the later's first words), which two stories that share only a quotation or a
   boilerplate paragraph do not. And the facts must agree (`facts_agree`): where both texts give a figure between the
   same two words, mostly the same figure (two reports from one template share text, not figures); a share of the names
   (capitalised words inside sentences), in proportion to the text shared. Two stories on the same event share
   names and figures, not text.
4. Verified pairs form star clusters (`star_clusters`): in canonical order (a prior, already written
   article first, else the earliest published, then the longer text, then the smaller id) each article joins the
   canonical article it copies best (highest score), or a copy it mostly equals (`follow_copies`), so clusters do
   not chain through a paragraph that two stories share. The clusters depend only on the set of pairs, never on
   the input order.

`mode="drop"` writes only the canonical article, with `cluster_id` and `cluster_size`; every dropped copy counts
once in `dedup/duplicates` (the run summary reconciles entries read = written + duplicates + dead letters).
`mode="mark"` writes every article; the copies carry `duplicate_of`. A copy from the same outlet as its canonical
(the URL or GUID changed, the text did not) counts as a revision.

Across runs, prior signatures (the run state's, `read_prior_signatures`) take part in banding and verification but are
never written: a copy that arrives tomorrow joins today's cluster and, in drop mode, is dropped. The signatures of
the articles a run writes go to the run state for later runs.
"""

from transforms.neardup.candidates import (
    band_key_matrix,
    band_keys,
    bucket_bounds,
    bucket_pairs,
    candidate_key_matrix,
    candidate_keys,
    language_salt,
    lead_key_matrix,
    lead_keys,
)
from transforms.neardup.clusters import (
    Link,
    Member,
    Verdict,
    apply_verdict,
    canonical_order,
    cluster_verdicts,
    member_of,
    orient,
    star_clusters,
)
from transforms.neardup.hashing import (
    LEAD_REACH,
    ShingleBatch,
    has_signature,
    minhash_from_shingles,
    minhash_signature,
    minhash_signatures,
    normalise_text,
    shingle_hashes,
    shingles,
    similarity,
    words,
)
from transforms.neardup.in_memory import candidate_pairs, find_near_copies, verdicts_of_pairs
from transforms.neardup.prior import lookback_patterns, read_prior_signatures
from transforms.neardup.records import (
    SIGNATURE_SCHEMA,
    SignatureRecord,
    outlet_of,
    signature_from_row,
    signature_records,
    signature_row,
)
from transforms.neardup.settings import MODES, NearDedupSettings
from transforms.neardup.streaming import DropNearCopiesWithState
from transforms.neardup.verification import containment, facts_agree, is_near_copy, leads_agree

__all__ = [
    "DropNearCopiesWithState",
    "LEAD_REACH",
    "Link",
    "MODES",
    "Member",
    "NearDedupSettings",
    "SIGNATURE_SCHEMA",
    "ShingleBatch",
    "SignatureRecord",
    "Verdict",
    "apply_verdict",
    "band_key_matrix",
    "band_keys",
    "bucket_bounds",
    "bucket_pairs",
    "candidate_pairs",
    "candidate_key_matrix",
    "candidate_keys",
    "canonical_order",
    "cluster_verdicts",
    "containment",
    "facts_agree",
    "find_near_copies",
    "lookback_patterns",
    "read_prior_signatures",
    "has_signature",
    "is_near_copy",
    "language_salt",
    "lead_key_matrix",
    "lead_keys",
    "leads_agree",
    "member_of",
    "minhash_from_shingles",
    "minhash_signature",
    "minhash_signatures",
    "normalise_text",
    "orient",
    "outlet_of",
    "shingle_hashes",
    "shingles",
    "signature_from_row",
    "signature_records",
    "signature_row",
    "similarity",
    "star_clusters",
    "verdicts_of_pairs",
    "words",
]
