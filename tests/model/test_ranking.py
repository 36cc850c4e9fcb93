"""The optional ranking term within antigen clusters (`abag.ranking`, `TrainConfig.ranking_weight`)."""

from __future__ import annotations

import numpy as np
import torch
from conftest import synthetic_frame

from abag.checkpoint import load_checkpoint
from abag.model.config import ModelConfig
from abag.model.ranking import (
    RANKING_MIN_GAP,
    grouped_epoch_order,
    pairwise_ranking_loss,
)
from abag.training import loop as fit_module
from abag.training.config import TrainConfig
from abag.training.run import train

TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=32)


def runs_of(order: np.ndarray, groups: np.ndarray, size: int) -> list[np.ndarray]:
    return [groups[order[i:i + size]] for i in range(0, len(order), size)]


def test_grouped_order_is_a_reproducible_permutation_in_runs_of_one_group():
    groups = np.repeat(np.arange(7), [1, 3, 4, 9, 12, 2, 5])
    rng = np.random.default_rng(0)
    groups = groups[rng.permutation(len(groups))]
    order = grouped_epoch_order(groups, torch.Generator().manual_seed(5), 4)
    assert sorted(order.tolist()) == list(range(len(groups)))
    np.testing.assert_array_equal(order, grouped_epoch_order(groups, torch.Generator().manual_seed(5), 4))
    assert not np.array_equal(order, grouped_epoch_order(groups, torch.Generator().manual_seed(6), 4))
    # Consecutive runs: a group's rows come in runs of 4 (its last run shorter), so every chunk of the order
    # starting at a run boundary is one group. Find the boundaries from the group changes and check the sizes.
    labels = groups[order]
    change = np.flatnonzero(np.concatenate([[True], labels[1:] != labels[:-1], [True]]))
    lengths = np.diff(change)
    counts = {g: int((groups == g).sum()) for g in np.unique(groups)}
    # Each maximal same-group stretch is made of whole runs of <= 4 rows: never longer than the group.
    for start, length in zip(change[:-1], lengths):
        assert length <= counts[labels[start]]
    # Most pairs that land in one micro-batch of 16 share a group far more often than in a shuffle.
    same = np.mean([len(set(b)) for b in runs_of(order, groups, 16)])
    shuffled = np.mean([len(set(b)) for b in runs_of(rng.permutation(len(groups)), groups, 16)])
    assert same < shuffled - 1


def test_ranking_loss_prefers_the_measured_order_within_a_group_only():
    target = torch.tensor([9.0, 7.0, 8.0, 6.0])
    groups = torch.tensor([0, 0, 1, 1])
    right = torch.tensor([8.5, 7.5, 8.2, 7.0])
    wrong = torch.tensor([7.5, 8.5, 7.0, 8.2])
    assert pairwise_ranking_loss(right, target, groups) < pairwise_ranking_loss(wrong, target, groups)
    # Across groups nothing is ranked: swapping the groups' levels changes nothing.
    shifted = right + torch.tensor([0.0, 0.0, 3.0, 3.0])
    assert torch.isclose(pairwise_ranking_loss(shifted, target, groups), pairwise_ranking_loss(right, target, groups))
    # Pairs closer than the gap, and censored rows, are left out (a zero that keeps the graph).
    close = torch.tensor([8.0, 8.0 - RANKING_MIN_GAP / 2])
    pred = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = pairwise_ranking_loss(pred, close, torch.tensor([0, 0]))
    loss.backward()
    assert float(loss.detach()) == 0.0 and pred.grad is not None
    censored = torch.tensor([False, True, False, False])
    only_other_group = pairwise_ranking_loss(wrong, target, groups, censored)
    assert torch.isclose(only_other_group, pairwise_ranking_loss(wrong[2:], target[2:], groups[2:]))
    # Members (M, B): each member ranked, the mean taken.
    members = torch.stack([right, wrong])
    expected = (pairwise_ranking_loss(right, target, groups) + pairwise_ranking_loss(wrong, target, groups)) / 2
    assert torch.isclose(pairwise_ranking_loss(members, target, groups), expected)


def test_training_with_the_ranking_term_uses_pairs_and_resumes_bit_identically(tmp_path, tiny_encoders,
                                                                                  monkeypatch):
    frame = synthetic_frame(n=120, n_antigens=4)
    calls = []
    original = fit_module.pairwise_ranking_loss

    def counting(pred, target, groups, censored=None):
        calls.append(int((groups[:, None] == groups[None, :]).sum() - len(groups)))
        return original(pred, target, groups, censored)

    monkeypatch.setattr(fit_module, "pairwise_ranking_loss", counting)

    def config(epochs):
        return TrainConfig(epochs=epochs, progress=False, cache_dir=str(tmp_path / "cache"), split="random",
                           ranking_weight=0.5)

    straight = train(frame, tmp_path / "straight", TINY, config(3), encoders=tiny_encoders, log=lambda _: None)
    assert calls and np.mean(calls) > 8  # runs of 4 rows of one antigen: many same-group pairs per batch
    plain = train(frame, tmp_path / "plain", TINY, TrainConfig(epochs=3, progress=False, split="random",
                                                               cache_dir=str(tmp_path / "cache")),
                  encoders=tiny_encoders, log=lambda _: None)
    assert list(plain.history["train_loss"]) != list(straight.history["train_loss"])
    train(frame, tmp_path / "resumed", TINY, config(1), encoders=tiny_encoders, log=lambda _: None)
    resumed = train(frame, tmp_path / "resumed", TINY, config(3), resume=True, encoders=tiny_encoders,
                    log=lambda _: None)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model_state_dict"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["model_state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert list(straight.history["train_loss"]) == list(resumed.history["train_loss"])
    assert straight.metrics["hyperparameters"]["ranking_weight"] == 0.5


def test_a_negative_ranking_weight_is_refused_on_the_command_line(capsys):
    from abag.cli import main

    assert main(["train", "--data", "x.csv", "--out", "y", "--ranking-weight", "-0.1"]) == 2
    assert "--ranking-weight" in capsys.readouterr().err
