"""The model's architecture settings (`ModelConfig`): what `build_model` builds and a checkpoint records."""

from __future__ import annotations

from dataclasses import dataclass

from abag.encoding.features import legacy_trim
from abag.errors import CheckpointError
from abag.numbering.domains import numbered_by_default
from abag.policy import PKD_RANGE


@dataclass
class ModelConfig:
    """Architecture of the affinity model; encoders are named, so a checkpoint can rebuild them."""

    antibody_encoder: str = "antiberty"
    antigen_encoder: str = "antiberty"
    hidden_dim: int = 256
    dropout: float = 0.1
    finetune_layers: int = 0
    pkd_min: float = PKD_RANGE[0]
    pkd_max: float = PKD_RANGE[1]
    initial_pkd: float = 8.0
    # Chosen by 5-fold antigen-cluster cross-validation on saaintdb_dev (bench/RESULTS.md, "Real data"):
    # the v2.7 model (trim_antibody=False, fusion="interaction", input_dropout=0, n_members=1) scored mean
    # Spearman 0.04 over 3 training seeds; these defaults 0.14.
    # Encode heavy/light chains as their variable domains (abag.encoding.features): "imgt" (cut where IMGT numbering
    # puts the domain), "motif" (cut after the framework-4 motif, the rule before numbering) or "none" (whole chains).
    trim_antibody: str = "imgt"
    # How the antibody encoder pools residue vectors into a chain vector (abag.encoding.sequence_encoder): "regions"
    # (the whole-domain mean beside the means over the frameworks, CDR1, CDR2 and CDR3 of the IMGT-numbered domain:
    # five times as wide) or "mean" (the whole chain).
    pooling: str = "regions"
    # How antibody and antigen meet in the head: "antibody_only" (the antigen is not used, nor encoded: an
    # antibody-intrinsic affinity prior; it generalised best to unseen antigen clusters, but cannot rank antigen
    # variants against one antibody) or "interaction" (v2.7: [ab, ag, ab*ag]).
    fusion: str = "antibody_only"
    input_dropout: float = 0.3    # dropout on the (normalised) chain vectors entering the head (0 when dropout is 0)
    # Independently initialised head copies trained together through one loss on their mean prediction.
    n_members: int = 5
    # A post-training correction (abag.posthoc.familiar_correction), the antigen-aware part of the model before the
    # wide part: "kmer_ridge_context" adds a k-mer ridge on the network's training residuals in proportion to the
    # query antigen's familiarity w (0 for an unseen antigen cluster) and the antigen construct's effect learned
    # within antigen clusters (abag.posthoc.antigen_context) by 1 − w; "kmer_ridge" the k-mer ridge alone; "none"
    # (the default) no correction: the wide part reads the antigen. It stays for tables too large to number
    # (`LARGE_TABLE_DEFAULTS`).
    familiar_correction: str = "none"
    # The wide part (abag.model.wide): pKd = clamp(soft_bound(wide(x) + deep(x))), with wide(x) closed-form ridges on
    # explicit sequence features fitted on the training rows before the network trains, and deep(x) the head above,
    # which learns the residual. "grouped_blend" (the default): within each split group a blend of the k-mer ridge
    # and the IMGT one-hot ridge (scaled down by its held-out offsets), across groups the k-mer ridge, plus (with or
    # without groups) a local kernel term on what they leave; see `WIDES` for the others; "none": the network
    # alone. Chosen by the benchmarks of bench/RESULTS.md ("The level apart from the order", "The heavy 3-mer block
    # against few variants", "A local term on what the linear part leaves", "The local term without groups").
    wide: str = "grouped_blend"

    def __post_init__(self) -> None:
        # Saved as a bool before numbering (True was the motif rule): read as today's value.
        self.trim_antibody = legacy_trim(self.trim_antibody)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Rebuild a saved config; fields missing from it (written before they existed) take the values
        that reproduce the model it was trained as (`LEGACY_FIELD_VALUES`), not today's defaults.

        A config that uses an option this abag no longer has raises `CheckpointError` naming the option and
        the last release that had it; removed keys at their neutral values are ignored."""
        values = dict(values)
        used = removed_options_in(values)
        if used:
            which = "an option" if len(used) == 1 else "options"
            unreleased = [u for u in used if u.split("=")[0] in UNRELEASED_OPTIONS or u in UNRELEASED_OPTIONS]
            if unreleased:  # experimental options of the development version after 2.7.0: no release loads them
                where = (f"{', '.join(unreleased)} only existed in the development version after abag "
                         f"{LAST_VERSION_WITH_REMOVED_OPTIONS} and no release loads it; retrain it with `abag train`")
            else:
                where = (f"it was written by abag {LAST_VERSION_WITH_REMOVED_OPTIONS}, the last release with "
                         f"{'this option' if len(used) == 1 else 'these options'}; load it with "
                         f"`pip install abag=={LAST_VERSION_WITH_REMOVED_OPTIONS}`, or retrain it with `abag train`")
            raise CheckpointError(f"its model uses {', '.join(used)}, {which} this abag no longer has: {where}")
        for key in REMOVED_FIELDS:
            values.pop(key, None)
        return cls(**{**LEGACY_FIELD_VALUES, **values})


# Fields added after v2.7 and the values that give the v2.7 head, for configs saved before they existed.
LEGACY_FIELD_VALUES = {"trim_antibody": "none", "fusion": "interaction", "input_dropout": 0.0, "n_members": 1,
                       "familiar_correction": "none", "wide": "none", "pooling": "mean"}


LARGE_TABLE_DEFAULTS = {"trim_antibody": "motif", "pooling": "mean", "wide": "none",
                        "familiar_correction": "kmer_ridge_context"}
"""What `abag train` takes instead of `ModelConfig`'s defaults, for the fields not given, when a table holds more
distinct antibody chains than `abag.numbering.NUMBERING_MAX_CHAINS`: every default that needs each chain numbered
(the IMGT trim, region pooling, the one-hot wide part) falls back to the model before numbering, which was measured
within the 500k-pair scale budget (bench/RESULTS.md); numbering 150,000 chains alone would take longer than
training."""


def defaults_for_table(n_chains: int) -> dict[str, str]:
    """The defaults of the fields in `LARGE_TABLE_DEFAULTS` for a table of `n_chains` distinct antibody chains:
    `ModelConfig`'s own up to the numbering size rule (`abag.numbering.numbered_by_default`), those above it."""
    if numbered_by_default(n_chains):
        return {name: ModelConfig.__dataclass_fields__[name].default for name in LARGE_TABLE_DEFAULTS}
    return dict(LARGE_TABLE_DEFAULTS)


LAST_VERSION_WITH_REMOVED_OPTIONS = "2.7.0"
"""The last abag release whose `ModelConfig` had the experimental options removed since (`REMOVED_FIELDS`,
`REMOVED_FUSIONS`)."""

REMOVED_FIELDS = {"head": "mlp", "composition_k": 0, "member_loss": "mean", "branch_dropout": None}
"""Fields `ModelConfig` no longer has, each with its neutral value (the one today's model is; None: any value
is neutral unless the fusion was "additive", the only head that read it)."""

REMOVED_FUSIONS = ("concat", "additive")

UNRELEASED_OPTIONS = ("member_loss", "branch_dropout", "fusion='additive'")
"""Removed options that were added after 2.7.0 and never released (the rest were in 2.7.0)."""


def removed_options_in(values: dict) -> list[str]:
    """The removed options a saved config dict uses (`head='linear'`, `fusion='additive'`, …); [] for none."""
    used = []
    if values.get("fusion") in REMOVED_FUSIONS:
        used.append(f"fusion={values['fusion']!r}")
    additive = values.get("fusion") == "additive"
    for key, neutral in REMOVED_FIELDS.items():
        if key in values and (additive if neutral is None else values[key] != neutral):
            used.append(f"{key}={values[key]!r}")
    return used


FUSIONS = ("interaction", "antibody_only")


CORRECTIONS = ("kmer_ridge", "kmer_ridge_context", "none")
"""`ModelConfig.familiar_correction` values: the residual k-mer ridge; the same with the antigen construct term
for unfamiliar antigens (`abag.posthoc.antigen_context`: the construct's effect within families; the default); or no
correction."""


WIDES = ("kmer_ridge", "ridge_choice", "ridge_blend", "grouped_blend", "grouped_kmer", "none")
"""`ModelConfig.wide` values (`abag.model.wide`): abag's k-mer ridge with a heavy-chain 3-mer block as the wide part;
the k-mer ridge alone or a ridge on the IMGT-aligned one-hot of VH and VL, whichever predicts held-out groups of the
training rows better (`ridge_choice`); a weighted sum of the two, the weights minimising that held-out error
(`ridge_blend`); that blend fitted to each row's deviation from its split group's mean pKd (scaled down by its
held-out offsets), plus the k-mer ridge fitted to the group means and a local kernel term on what the blend leaves,
with wide + deep softly bounded to the training pKd range (`grouped_blend`: what separates rows of one group, and
what separates groups, learnt apart); the same with the k-mer ridge alone within groups and no local term, which needs
no numbering (`grouped_kmer`: measured as the large-table default against the familiar-antigen correction, it lost SKEMPI's
ranking within complexes and CR6261's extrapolation RMSE, bench/RESULTS.md, "A wide part without numbering"); or no
wide part (the network alone)."""

BLEND_MAX_ONEHOT = 0.9
"""The most weight `wide="ridge_blend"` gives the one-hot ridge: the k-mer parts, the only candidate that reads the
antigen, always keep at least a tenth, so the antigen enters every blended wide part (any weight below 1 keeps
the k-mer ridge's order of antigen variants against one antibody, which the one-hot ridge cannot rank)."""
