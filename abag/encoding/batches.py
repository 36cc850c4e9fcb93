"""What flows from encoding into the model: a batch of complexes as sequences or as pooled chain embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PairSequences:
    """A batch of complexes as sequences; `light` is "" for single-domain antibodies, antigen chains joined by `|`."""

    heavy: list[str]
    light: list[str]
    antigen: list[str]


@dataclass
class PairEmbeddings:
    """A batch of complexes as pooled chain embeddings (what the head sees).

    When the head ignores the antigen (`InputSpec.uses_antigen` is False) it is not encoded and `antigen`
    is (B, 0).
    """

    heavy: torch.Tensor          # (B, d_antibody)
    light: torch.Tensor          # (B, d_antibody); rows without a light chain are ignored
    light_present: torch.Tensor  # (B,) bool
    antigen: torch.Tensor        # (B, d_antigen), or (B, 0) when not used

    def to(self, device: torch.device) -> "PairEmbeddings":
        return PairEmbeddings(self.heavy.to(device), self.light.to(device),
                              self.light_present.to(device), self.antigen.to(device))
