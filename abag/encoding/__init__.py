"""From sequences to vectors: the encoders (one loader for every model), token-budget batching, what the encoders
see (variable-domain trimming), k-mer composition, the embedding cache and the per-pair embedding tables the model
reads.

May import: abag.data, abag.identity, abag.checkpoint, abag.outputs, abag.distributed, abag.errors, abag.policy.
"""

from abag.encoding.batches import PairEmbeddings, PairSequences
from abag.encoding.embedding_cache import EmbeddingCache, default_cache_dir
from abag.encoding.features import InputSpec
from abag.encoding.hub_encoders import PairedModelWarning, TokenizerDependencyError
from abag.encoding.kmers import kmer_composition
from abag.encoding.loader import (
                                  SequenceEncoder,
                                  load_antiberty_encoder,
                                  load_encoder,
                                  load_hub_encoder,
                                  load_tiny_encoder,
)
from abag.encoding.pair_embeddings import EmbeddedPairs, embed_pairs, make_caches

__all__ = ["SequenceEncoder", "load_encoder", "load_antiberty_encoder", "load_hub_encoder", "load_tiny_encoder",
           "EmbeddingCache", "default_cache_dir", "InputSpec", "kmer_composition", "EmbeddedPairs", "embed_pairs",
           "make_caches", "PairSequences", "PairEmbeddings", "PairedModelWarning", "TokenizerDependencyError"]
