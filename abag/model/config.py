"""The model's architecture settings (`ModelConfig`): what `build_model` builds and a checkpoint records."""

from __future__ import annotations

from dataclasses import dataclass

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
    # the v2.7 model (trim_antibody=False, composition_k=0, fusion="interaction", input_dropout=0,
    # n_members=1, head="mlp") scored mean Spearman 0.04 over 3 training seeds; these defaults 0.14.
    trim_antibody: bool = True    # encode heavy/light chains as variable domains (cut after FR4)
    composition_k: int = 0        # append k-mer (k = 1..composition_k) composition + log length per chain
    # How antibody and antigen meet in the head: "interaction" (v2.7: [ab, ag, ab*ag]), "concat" ([ab, ag]),
    # "antibody_only" (the antigen is not used, nor encoded: an antibody-intrinsic affinity prior), or
    # "additive" (μ + a(ab) + w·(g(ag) + i(ab, ag)), see AdditiveHead: antibody-only on unseen antigens,
    # antigen-aware on variants of training antigens). "antibody_only" generalised best to unseen antigen
    # clusters, but it cannot rank antigen variants against one antibody.
    fusion: str = "antibody_only"
    input_dropout: float = 0.3    # dropout on the (normalised) chain vectors entering the head (0 when dropout is 0)
    n_members: int = 5            # independently initialised head copies trained together, predictions averaged
    # How the members learn: "mean" (one v2.7 loss on the members' mean prediction) or "each" (every member
    # fits its own v2.7 loss and the criterion averages them: independent members). Prediction is the members'
    # mean either way. "mean" by measurement (bench/RESULTS.md, "Independent head members"): on saaintdb_dev
    # antigen-cluster CV "each" lost pooled Spearman in 3 of 3 seeds (0.041 vs 0.079), tied within clusters
    # (0.070 vs 0.075), and its members' spread did not track the error on unseen clusters any better.
    member_loss: str = "mean"
    head: str = "mlp"             # "mlp" (v2.7 projections + fusion MLP) or "linear" (one linear layer, see AffinityHead)
    # fusion="additive" only: probability, per training row, that g and i are dropped (a alone must predict).
    # Unused by the other fusions, so configs saved before it existed need no legacy value.
    branch_dropout: float = 0.5
    # The antigen-aware part of the default (abag.familiar_correction): a k-mer ridge on the network's training
    # residuals, added in proportion to the query antigen's familiarity w (0 for an unseen antigen cluster), and
    # the antigen construct's effect learned within antigen clusters (abag.antigen_context), added by 1 − w.
    # "kmer_ridge": the k-mer ridge alone (an unseen antigen then gets the network's prediction exactly);
    # "none": the network alone, as before.
    familiar_correction: str = "kmer_ridge_context"

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Rebuild a saved config; fields missing from it (written before they existed) take the values
        that reproduce the model it was trained as (`LEGACY_FIELD_VALUES`), not today's defaults."""
        return cls(**{**LEGACY_FIELD_VALUES, **values})


# Fields added after v2.7 and the values that give the v2.7 head, for configs saved before they existed.
LEGACY_FIELD_VALUES = {"trim_antibody": False, "composition_k": 0, "fusion": "interaction", "input_dropout": 0.0,
                       "n_members": 1, "head": "mlp", "member_loss": "mean", "familiar_correction": "none"}


HEADS = ("mlp", "linear")


MEMBER_LOSSES = ("each", "mean")


FUSIONS = ("interaction", "concat", "antibody_only", "additive")


CORRECTIONS = ("kmer_ridge", "kmer_ridge_context", "none")
"""`ModelConfig.familiar_correction` values: the residual k-mer ridge; the same with the antigen construct term
for unfamiliar antigens (`abag.antigen_context`: the construct's effect within families; the default); or no
correction."""
