"""The precision policy (`abag.policy.choose_precision`): what each GPU generation trains in, and fp32 on CPU.

No GPU is needed: `torch.cuda.get_device_capability` (and `current_device` for a bare "cuda") are
monkeypatched, so the decision is tested for a T4, an A100 and an H100 on any machine.
"""

from __future__ import annotations

import pytest
import torch

from abag import policy
from abag.policy import Precision, choose_precision

# (compute capability, GPU) -> what abag must train in
GPUS = [
    ((7, 0), "V100", "fp16"),
    ((7, 5), "T4", "fp16"),
    ((8, 0), "A100", "bf16"),
    ((8, 6), "A10 / RTX 3090", "bf16"),
    ((8, 9), "L4 / L40S", "bf16"),
    ((9, 0), "H100 / H200", "bf16"),
    ((10, 0), "B200", "bf16"),
]


@pytest.fixture
def gpu(monkeypatch):
    """Pretend to be a GPU of a given compute capability; records which device index was asked about."""
    asked: list[int] = []

    def install(capability: tuple[int, int], current: int = 0) -> list[int]:
        def get_device_capability(index=None):
            asked.append(index)
            return capability

        monkeypatch.setattr(torch.cuda, "get_device_capability", get_device_capability)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
        return asked

    return install


@pytest.mark.parametrize("capability, name, expected", GPUS, ids=[g[1] for g in GPUS])
def test_each_gpu_generation_gets_its_precision(gpu, capability, name, expected):
    gpu(capability)
    precision = choose_precision(torch.device("cuda:0"))
    assert precision.name == expected, name
    if expected == "fp16":  # no native bf16 before Ampere: fp16 needs a GradScaler against underflow
        assert precision.autocast_dtype is torch.float16 and precision.needs_scaler
    else:
        assert precision.autocast_dtype is torch.bfloat16 and not precision.needs_scaler
    assert precision.enabled


def test_t4_is_fp16_with_a_scaler_even_though_it_can_emulate_bf16(gpu):
    """`torch.cuda.is_bf16_supported()` is True on a T4 (emulated); the policy must not follow it."""
    gpu((7, 5))
    precision = choose_precision("cuda:0", mixed_precision=True)
    assert (precision.name, precision.needs_scaler) == ("fp16", True)


def test_the_capability_of_the_run_device_is_asked(gpu):
    asked = gpu((9, 0), current=3)
    assert choose_precision("cuda:1").name == "bf16"
    assert choose_precision("cuda").name == "bf16"  # no index: the current device
    assert asked == [1, 3]


@pytest.mark.parametrize("capability", [c for c, _, _ in GPUS])
def test_mixed_precision_off_is_fp32_on_every_gpu(gpu, capability):
    asked = gpu(capability)
    precision = choose_precision("cuda:0", mixed_precision=False)
    assert precision.name == "fp32" and precision.autocast_dtype is None and not precision.needs_scaler
    assert not precision.enabled
    assert asked == []  # off means off: the GPU is not even asked


@pytest.mark.parametrize("mixed_precision", [True, False])
def test_cpu_is_fp32(gpu, mixed_precision):
    asked = gpu((9, 0))  # a GPU present in the machine must not change what the CPU computes in
    for device in ("cpu", torch.device("cpu")):
        precision = choose_precision(device, mixed_precision)
        assert (precision.name, precision.autocast_dtype, precision.needs_scaler) == ("fp32", None, False)
    assert asked == []


def test_the_three_precisions_have_distinct_names():
    """The name is what the embedding cache key and metrics.json record, so it must identify the precision."""
    names = {p.name: p for p in (policy.FP32, policy.BF16, policy.FP16)}
    assert set(names) == {"fp32", "bf16", "fp16"}
    assert isinstance(names["bf16"], Precision)


def test_fp32_autocast_on_cpu_keeps_a_matmul_in_float32():
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with choose_precision("cpu").autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
        assert (a @ b).dtype is torch.float32


def test_fp32_autocast_switches_off_an_enclosing_autocast():
    """A no-op means fp32 even inside someone else's bf16 region (e.g. a caller's autocast)."""
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ b).dtype is torch.bfloat16  # the enclosing region is really active
        with policy.FP32.autocast(torch.device("cpu")):
            assert (a @ b).dtype is torch.float32


def test_bf16_autocast_does_change_the_matmul_dtype():
    """The counterpart of the no-op test: the dtype check above would see a real autocast."""
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with policy.BF16.autocast(torch.device("cpu")):
        assert (a @ b).dtype is torch.bfloat16
    assert (a @ b).dtype is torch.float32  # and it ends with its block


# --------------------------------------------------------------------------- forcing a precision


@pytest.mark.parametrize("requested", ["fp32", "bf16", "fp16"])
def test_a_requested_precision_overrides_the_automatic_choice_on_a_gpu(gpu, requested):
    gpu((7, 5))  # a T4 would get fp16 automatically
    assert choose_precision("cuda", True, requested).name == requested


def test_requests_that_cannot_work_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        choose_precision("cpu", True, "fp16")
    with pytest.raises(ValueError, match="switched off"):
        choose_precision("cpu", False, "bf16")
    with pytest.raises(ValueError, match="unknown precision"):
        choose_precision("cpu", True, "fp8")
    assert choose_precision("cpu", True, "bf16").name == "bf16"  # CPU autocast runs bf16
    assert choose_precision("cpu", False, "fp32").name == "fp32"


def test_a_run_records_its_precision_and_its_encoders_use_it(tmp_path, tiny_encoders):
    from abag.inference import load_trained_model
    from abag.model.config import ModelConfig
    from abag.training.config import TrainConfig
    from abag.training.run import train
    from tests.conftest import synthetic_frame

    frame = synthetic_frame(n=48)
    config = TrainConfig(epochs=1, progress=False, split="random", embedding_cache=False, precision="bf16")
    result = train(frame, tmp_path / "run", ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny"), config,
                   encoders=tiny_encoders, log=lambda line: None)
    assert result.metrics["hyperparameters"]["precision"] == "bf16"
    assert result.model.antibody_encoder.precision.name == "bf16"
    assert result.model.antibody_encoder.cache_key["precision"] == "bf16"
    model, _ = load_trained_model(result.best_checkpoint, device="cpu")
    assert model.antibody_encoder.precision.name == "bf16"  # predicting uses the precision it trained in


def test_fp16_on_a_cpu_is_a_clear_command_line_error(tmp_path, capsys):
    from abag.cli import main

    code = main(["train", "--data", "data/example_pairs.csv", "--out", str(tmp_path / "r"), "--encoder", "tiny",
                 "--epochs", "1", "--precision", "fp16", "--device", "cpu", "--no-embedding-cache"])
    assert code == 2
    assert "fp16 needs a CUDA GPU" in capsys.readouterr().err
