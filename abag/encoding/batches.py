"""What flows from encoding into the model: a batch of complexes as sequences or as pooled chain embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PairSequences:
    """A batch of complexes as sequences; `light` is "" for single-domain antibodies, antigen chains joined by `|`.

    `antigen_weight` (optional, (B,) in [0, 1]) is each row's antigen familiarity for the additive head.
    """

    heavy: list[str]
    light: list[str]
    antigen: list[str]
    antigen_weight: torch.Tensor | None = None


@dataclass
class PairEmbeddings:
    """A batch of complexes as pooled chain embeddings (what the head sees).

    With `ModelConfig.composition_k > 0` every chain vector is `[pooled embedding | chain features]`
    (`abag.features.chain_features`); the head splits them by the encoder widths it was built with.
    When the head ignores the antigen (`InputSpec.uses_antigen` is False) it is not encoded and `antigen`
    is (B, 0).
    """

    heavy: torch.Tensor          # (B, d_antibody)
    light: torch.Tensor          # (B, d_antibody); rows without a light chain are ignored
    light_present: torch.Tensor  # (B,) bool
    antigen: torch.Tensor        # (B, d_antigen), or (B, 0) when not used
    antigen_weight: torch.Tensor | None = None  # (B,) float in [0, 1]: the additive head's antigen weight

    def to(self, device: torch.device) -> "PairEmbeddings":
        weight = None if self.antigen_weight is None else self.antigen_weight.to(device)
        return PairEmbeddings(self.heavy.to(device), self.light.to(device),
                              self.light_present.to(device), self.antigen.to(device), weight)
