"""Old flat module paths (abag 2.7) that keep importing, with a DeprecationWarning, for one release.

`import abag.kfold` or `from abag.train import TrainConfig` find the module's new home through `OLD_PATHS`.
Remove this file, and its registration in `abag/__init__.py`, in the release after 2.8.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

OLD_PATHS = {
    "abag.antigen_context": "abag.posthoc.antigen_context",
    "abag.banded_alignment": "abag.identity.banded_alignment",
    "abag.baselines": "abag.evaluation.baselines",
    "abag.batching": "abag.encoding.batching",
    "abag.clustering": "abag.identity.clustering",
    "abag.crossval": "abag.folds.crossval",
    "abag.crossval_report": "abag.folds.crossval_tables",
    "abag.data_identity": "abag.training.data_identity",
    "abag.embedding_cache": "abag.encoding.embedding_cache",
    "abag.encoders": "abag.encoding.loader",
    "abag.ensemble": "abag.model.ensemble",
    "abag.familiar_correction": "abag.posthoc.familiar_correction",
    "abag.features": "abag.encoding.features",
    "abag.finalize": "abag.training.finalize",
    "abag.fit": "abag.training.loop",
    "abag.hub_encoders": "abag.encoding.hub_encoders",
    "abag.intervals": "abag.posthoc.intervals",
    "abag.kfold": "abag.folds.members",
    "abag.kfold_report": "abag.folds.assembly",
    "abag.losses": "abag.model.losses",
    "abag.metrics": "abag.evaluation.metrics",
    "abag.metrics_document": "abag.training.metrics_document",
    "abag.metrics_report": "abag.evaluation.tables",
    "abag.monitors": "abag.training.monitors",
    "abag.nearest_chains": "abag.identity.nearest_chains",
    "abag.novelty": "abag.identity.novelty",
    "abag.pair_data": "abag.model.apply",
    "abag.pair_embeddings": "abag.encoding.pair_embeddings",
    "abag.predict_cli": "abag.cli.predict",
    "abag.ranking": "abag.model.ranking",
    "abag.resume": "abag.training.resume",
    "abag.seed_search": "abag.identity.seed_search",
    "abag.sequence_encoder": "abag.encoding.sequence_encoder",
    "abag.splits": "abag.data.splits",
    "abag.suggest_cli": "abag.cli.suggest",
    "abag.train": "abag.training.run",
    "abag.train_setup": "abag.training.config",
    "abag.training_state": "abag.training.state",
}


class _CallableModule(types.ModuleType):
    """`abag.train` is both the old module path and the function: importing the path must not hide the function."""

    def __call__(self, *args, **kwargs):
        return self.train(*args, **kwargs)


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name not in OLD_PATHS:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        new = OLD_PATHS[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old path goes in the next release", DeprecationWarning,
                      stacklevel=3)
        target = importlib.import_module(new)
        alias = _CallableModule(spec.name) if spec.name == "abag.train" else types.ModuleType(spec.name)
        alias.__dict__.update({k: v for k, v in vars(target).items() if not k.startswith("__")})
        alias.__doc__ = target.__doc__
        if spec.name == "abag.train":
            # The new modules' names hold the real objects; the alias must not shadow the `abag.train` function.
            alias.train = target.train
        return alias

    def exec_module(self, module):
        pass


def register() -> None:
    """Let the 2.7 module paths import (once per interpreter)."""
    if not any(isinstance(finder, _OldPathFinder) for finder in sys.meta_path):
        sys.meta_path.append(_OldPathFinder())
