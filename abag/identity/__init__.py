"""Sequence identity between chains: seed search, banded alignment, antigen clustering, nearest training chains
and how novel a query is.

May import: abag.policy (and numpy/scipy). Used by data (splits), posthoc and inference.
"""

from abag.identity.banded_alignment import alignment_identity
from abag.identity.clustering import (
           DEFAULT_IDENTITY,
           cluster_antigens,
           cluster_sequences,
)
from abag.identity.novelty import NoveltyReference, nearest_identity

__all__ = ["DEFAULT_IDENTITY", "cluster_sequences", "cluster_antigens", "alignment_identity", "nearest_identity",
           "NoveltyReference"]
