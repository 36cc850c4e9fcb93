"""Independent head members: with member_loss="each" every member fits its own v2.7 loss."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from abag.encoding.batches import PairEmbeddings
from abag.model.config import LEGACY_FIELD_VALUES, ModelConfig
from abag.model.losses import StableCombinedLoss
from abag.model.network import AdditiveHead, AffinityHead

D_AB, D_AG = 12, 10


def head_config(**overrides) -> ModelConfig:
    base = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16, dropout=0.0,
                       input_dropout=0.0, n_members=3, member_loss="each")
    return dataclasses.replace(base, **overrides)


def random_batch(n: int, seed: int = 0) -> PairEmbeddings:
    generator = torch.Generator().manual_seed(seed)
    return PairEmbeddings(torch.randn(n, D_AB, generator=generator), torch.randn(n, D_AB, generator=generator),
                          torch.ones(n, dtype=torch.bool), torch.randn(n, D_AG, generator=generator))


def test_loss_on_member_predictions_is_the_mean_of_each_members_loss():
    target = torch.tensor([7.0, 9.5, 6.0, 10.0])
    censored = torch.tensor([False, False, True, False])
    members = torch.stack([target + 1.0, target - 1.0])  # the members' mean is exact, each member is off by 1
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.1], [-0.5, 1.0, -2.0, 0.3]])
    loss = StableCombinedLoss()
    each = loss(members, target, logits, censored)
    expected = (loss(members[0], target, logits[0], censored) + loss(members[1], target, logits[1], censored)) / 2
    torch.testing.assert_close(each, expected)
    # MSE part alone: a perfect mean gives 0, members that are each wrong do not (censored row 2: only the
    # member above its bound counts).
    mse_only = StableCombinedLoss(class_weight=0.0)
    assert float(mse_only(members.mean(0), target, censored=censored)) == 0.0
    assert float(mse_only(members, target, censored=censored)) == pytest.approx(0.7 * (4 + 3) / 8)


def test_mismatched_prediction_shape_is_refused():
    with pytest.raises(ValueError, match="3 values for 4 targets"):
        StableCombinedLoss()(torch.zeros(2, 3), torch.zeros(4))


@pytest.mark.parametrize("head_class, fusion", [(AffinityHead, "antibody_only"), (AffinityHead, "interaction"),
                                                (AdditiveHead, "additive")])
def test_training_mode_returns_members_and_eval_the_bounded_mean(head_class, fusion):
    torch.manual_seed(0)
    head = head_class(D_AB, D_AG, head_config(fusion=fusion))
    batch = random_batch(5)
    pkd, logits = head.train()(batch)
    assert pkd.shape == logits.shape == (3, 5)
    assert float(pkd.detach().min()) >= 4.0 and float(pkd.detach().max()) <= 14.0
    with torch.no_grad():
        mean, mean_logits = head.eval()(batch)
    assert mean.shape == mean_logits.shape == (5,)
    torch.testing.assert_close(mean, pkd.detach().mean(0))  # dropout 0: train and eval members agree
    legacy = head_class(D_AB, D_AG, head_config(fusion=fusion, member_loss="mean")).train()
    assert legacy(batch)[0].shape == (5,)
    single = head_class(D_AB, D_AG, head_config(fusion=fusion, n_members=1)).train()
    assert single(batch)[0].shape == (5,)


def _member_gradients(member_loss: str) -> tuple[torch.Tensor, float]:
    """Gradient of the pKd output layer (one row per member) when the target is the members' own mean."""
    torch.manual_seed(0)
    head = AffinityHead(D_AB, D_AG, head_config(member_loss=member_loss)).train()
    batch = random_batch(16)
    with torch.no_grad():
        target = head.eval()(batch)[0]  # the members' mean is exact; the members themselves differ
    head.train()
    pkd, _ = head(batch)
    loss = StableCombinedLoss(class_weight=0.0)(pkd, target)
    loss.backward()
    return head.pkd_out.weight.grad.clone(), float(loss.detach())


def test_each_member_is_pulled_by_its_own_error_not_by_the_mean():
    grad_each, loss_each = _member_gradients("each")
    grad_mean, loss_mean = _member_gradients("mean")
    assert loss_mean == pytest.approx(0.0, abs=1e-10) and float(grad_mean.abs().max()) < 1e-6
    assert loss_each > 1e-4
    per_member_norm = grad_each.flatten(1).norm(dim=1)
    assert bool((per_member_norm > 1e-4).all())
    # Members on opposite sides of the mean are pushed in opposite directions.
    cosine = torch.nn.functional.cosine_similarity(grad_each[0].flatten(), grad_each[1].flatten(), dim=0)
    assert float(cosine) < 0.99


def test_member_gradient_equals_its_own_loss_gradient_over_m():
    torch.manual_seed(0)
    head = AffinityHead(D_AB, D_AG, head_config()).train()
    batch, target = random_batch(8, seed=1), torch.linspace(5, 12, 8)
    loss = StableCombinedLoss()
    pkd, logits = head(batch)
    loss(pkd, target, logits).backward()
    together = head.pkd_out.weight.grad.clone()
    for m in range(3):
        head.zero_grad()
        pkd, logits = head(batch)
        loss(pkd[m], target, logits[m]).backward()
        torch.testing.assert_close(together[m], head.pkd_out.weight.grad[m] / 3)


def test_saved_configs_without_the_field_rebuild_as_trained():
    assert LEGACY_FIELD_VALUES["member_loss"] == "mean"
    saved = dataclasses.asdict(ModelConfig(n_members=5, member_loss="each"))
    assert ModelConfig.from_dict(saved).member_loss == "each"
    del saved["member_loss"]  # written before the field existed: those heads were trained on the mean
    assert ModelConfig.from_dict(saved).member_loss == "mean"
    with pytest.raises(ValueError, match="member_loss"):
        AffinityHead(D_AB, D_AG, head_config(member_loss="median"))


def test_training_with_independent_members_resumes_bit_identically_and_predicts_the_mean(tmp_path, tiny_encoders):
    from conftest import synthetic_frame

    from abag.checkpoint import load_checkpoint
    from abag.inference import load_trained_model, predict_frame
    from abag.training.config import TrainConfig
    from abag.training.run import train

    frame = synthetic_frame(n=120)
    config = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=32, n_members=3,
                         member_loss="each")

    def settings(epochs):
        return TrainConfig(epochs=epochs, progress=False, cache_dir=str(tmp_path / "cache"), split="random")

    straight = train(frame, tmp_path / "straight", config, settings(3), encoders=tiny_encoders, log=lambda _: None)
    train(frame, tmp_path / "resumed", config, settings(2), encoders=tiny_encoders, log=lambda _: None)
    resumed = train(frame, tmp_path / "resumed", config, settings(3), resume=True, encoders=tiny_encoders,
                    log=lambda _: None)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert all(torch.equal(a["model_state_dict"][k], b["model_state_dict"][k]) for k in a["model_state_dict"])
    assert list(straight.history["train_loss"]) == list(resumed.history["train_loss"])
    assert a["config"]["model"]["member_loss"] == "each"
    model, _ = load_trained_model(tmp_path / "straight" / "checkpoints" / "best.pt", "cpu", encoders=tiny_encoders)
    assert model.head.member_loss == "each"
    predicted = predict_frame(model, frame.head(7), coverage=None)
    assert len(predicted) == 7 and predicted["pkd_pred"].between(4, 14).all()


def test_the_command_line_sets_member_loss_and_refuses_unknown_values(capsys):
    from abag.cli import _model_overrides, build_parser, main

    args = build_parser().parse_args(["train", "--data", "x.csv", "--out", "y", "--member-loss", "each"])
    assert _model_overrides(args)["member_loss"] == "each"
    assert "member_loss" not in _model_overrides(build_parser().parse_args(["train", "--data", "x", "--out", "y"]))
    assert main(["train", "--data", "x.csv", "--out", "y", "--member-loss", "median"]) == 2
    assert "--member-loss" in capsys.readouterr().err
