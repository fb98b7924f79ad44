"""Precision: one object for the dtype, the autocast and the scaled step of every command."""

import pytest
import torch

from cifarlab.errors import CifarlabError
from cifarlab.training import precision as precision_module
from cifarlab.training.hardware import Hardware
from cifarlab.training.precision import Precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_a_cpu_takes_bf16_only_where_it_is_native(monkeypatch, native, expected):
    monkeypatch.setattr(precision_module, "cpu_has_fast_bf16", lambda: native)
    chosen = Precision.choose("auto", CPU)
    assert chosen.name == expected and chosen.why.startswith("auto: ")


def test_asked_for_precisions_and_the_ones_a_cpu_cannot_run():
    assert Precision.choose("bf16", CPU) == Precision("bf16", "cpu", "asked for")
    with pytest.raises(CifarlabError, match="--precision fp16 is for CUDA"):
        Precision.choose("fp16", CPU)
    with pytest.raises(CifarlabError, match="--precision must be one of auto, fp32"):
        Precision.choose("fp8", CPU)
    with pytest.raises(CifarlabError, match="resolved by Precision.choose"):
        Precision("auto")


@pytest.mark.parametrize(("name", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_autocast_computes_in_the_dtype(name, dtype):
    p = Precision(name, "cpu")
    assert p.dtype == dtype
    with p.autocast():
        out = torch.nn.Linear(4, 3)(torch.ones(2, 4))
    assert out.dtype == dtype


def test_only_fp16_scales_and_the_step_updates_the_weights():
    assert not Precision("bf16").scaler().is_enabled()
    assert not Precision("fp32").scaler().is_enabled()
    layer = torch.nn.Linear(2, 1)
    before = layer.weight.detach().clone()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    p = Precision("fp32")
    p.step(layer(torch.ones(1, 2)).sum(), opt, p.scaler())
    assert torch.allclose(layer.weight, before - 0.1)  # d(sum)/dw = 1 for each weight


def test_hardware_keeps_a_precision_given_by_name():
    hw = Hardware(CPU, "bf16", "asked for")
    assert hw.precision == Precision("bf16", "cpu", "asked for") and hw.why == "asked for"
    assert hw.describe()["precision"] == "bf16" and f"{hw.precision}" == "bf16"
