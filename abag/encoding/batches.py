"""What flows from encoding into the model: a batch of complexes as sequences or as pooled chain embeddings.

Both may carry `offset`, each row's wide-part prediction (`abag.model.wide`), which the head adds to its own
output before the clamp: (B,) for one model, (K, B) for the K members of a fold ensemble; None without one."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PairSequences:
    """A batch of complexes as sequences; `light` is "" for single-domain antibodies, antigen chains joined by `|`."""

    heavy: list[str]
    light: list[str]
    antigen: list[str]
    offset: torch.Tensor | None = None  # (B,) or (K, B): the wide part's prediction per row (see the module)


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
    offset: torch.Tensor | None = None  # (B,) or (K, B): the wide part's prediction per row (see the module)

    def to(self, device: torch.device) -> "PairEmbeddings":
        return PairEmbeddings(self.heavy.to(device), self.light.to(device),
                              self.light_present.to(device), self.antigen.to(device),
                              None if self.offset is None else self.offset.to(device))
