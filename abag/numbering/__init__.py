"""Antibody numbering: IMGT positions, regions and chain types from a field library.

May import: abag.errors, abag.policy (and the numbering library). Its modules, each usable on its own:

* `imgt` — the scheme: its seven regions (`REGIONS`, `region_of`) and the order of positions (`position_key`).
* `chains` — one chain numbered (`number_chain`): its variable domains (`Domain`: chain type H/K/L, span in the
  input, IMGT positions, regions and CDRs), or the reason it could not be numbered (`NumberedChain.failure`).
* `batch` — many chains (`number_chains`): each distinct sequence once, a per-chain cache, native threads.
* `disk_cache` — the same cache in a folder (`NumberingDiskCache`).
* `domains` — `variable_domains(chains, kind)`: each chain cut to its IMGT variable domain (what encoders see);
  `residue_regions(chains)`: each residue's framework/CDR label, for region pooling.
* `annotate` — `annotate(heavy, light)`: each pair's domains and IMGT CDRs as table columns.
* `onehot` — `AlignedOneHotEncoder`: VH and VL one-hot over the IMGT positions learned in training (sparse).

The numbering library is `anarcism` (bench/numbering_choice.md says why); it is imported on first use, so
importing this package has no cost.
`abag.data.chain_checks` uses it to check that each column holds the chain it claims.
"""

from abag.numbering.annotate import ANNOTATION_COLUMNS, annotate
from abag.numbering.batch import NumberedChains, default_workers, number_chains
from abag.numbering.chains import (
                                   SPECIES,
                                   Domain,
                                   NumberedChain,
                                   NumberingUnavailableError,
                                   number_chain,
                                   sequence_problem,
)
from abag.numbering.disk_cache import NumberingDiskCache
from abag.numbering.domains import (
                                   NUMBERING_MAX_CHAINS,
                                   POOLED_REGIONS,
                                   SHARED_NUMBERING,
                                   distinct_chains,
                                   numbered_by_default,
                                   residue_regions,
                                   variable_domains,
)
from abag.numbering.imgt import (
                                   CDR_NAMES,
                                   REGION_NAMES,
                                   REGIONS,
                                   position_key,
                                   position_label,
                                   region_of,
)
from abag.numbering.onehot import AlignedOneHotEncoder, OneHotFeatures

__all__ = [
    "SPECIES", "Domain", "NumberedChain", "NumberingUnavailableError", "number_chain", "sequence_problem",
    "NumberedChains", "number_chains", "default_workers", "NumberingDiskCache",
    "variable_domains", "SHARED_NUMBERING", "NUMBERING_MAX_CHAINS", "POOLED_REGIONS", "residue_regions",
    "distinct_chains", "numbered_by_default",
    "REGIONS", "REGION_NAMES", "CDR_NAMES", "region_of", "position_key", "position_label",
    "AlignedOneHotEncoder", "OneHotFeatures", "annotate", "ANNOTATION_COLUMNS",
]
