"""Many models over folds of whole antigen clusters: `abag train`'s fold members and their ensemble, and
cross-validation with its tables.

May import: abag.training, abag.inference and the rooms below them.
"""

from abag.folds.crossval import CVResult, cross_validate
from abag.folds.members import FoldsResult, TooFewFoldGroupsError, train_folds

__all__ = ["train_folds", "FoldsResult", "TooFewFoldGroupsError", "cross_validate", "CVResult"]
