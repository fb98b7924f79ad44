"""Parameter groups, schedules and lookahead weight averaging (cifarlab.training.optim), without
training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifarlab.config.options import resolve
from cifarlab.models.registry import build_model
from cifarlab.training.optim import LOOKAHEAD_EVERY, WHITEN_BIAS_EPOCHS, Lookahead, make_optimizer


def test_one_group_for_the_study_models():
    cfg = resolve(None, {"model": "improved"})
    model = build_model("improved")
    opt, _ = make_optimizer(model, cfg, steps_per_epoch=10)
    assert len(opt.param_groups) == 1
    assert sum(p.numel() for p in opt.param_groups[0]["params"]) == sum(
        p.numel() for p in model.parameters()
    )


def test_fast_groups_bn_biases_and_whitening_bias():
    cfg = resolve(None, {"model": "fast"})
    model = build_model("fast")
    steps = 7
    opt, sched = make_optimizer(model, cfg, steps_per_epoch=steps)
    main, bn, special = opt.param_groups
    scale = cfg.bn_bias_lr_scale
    bn_biases = {
        id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.bias is not None
    }
    assert {id(p) for p in bn["params"]} == bn_biases
    assert special["params"] == [model.whitening.bias]
    assert not any(p is model.whitening.weight for g in opt.param_groups for p in g["params"])
    # BN biases: lr times the scale, weight decay divided by it (the same absolute decay)
    assert bn["initial_lr"] == pytest.approx(cfg.lr * scale)
    assert bn["weight_decay"] == pytest.approx(cfg.weight_decay / scale)
    assert main["initial_lr"] == cfg.lr
    # the whitening bias follows the schedule, then stops after WHITEN_BIAS_EPOCHS epochs
    lam_main, _, lam_special = sched.lr_lambdas
    for step in (1, steps * WHITEN_BIAS_EPOCHS - 1):
        assert lam_special(step) == lam_main(step)
    assert lam_special(steps * WHITEN_BIAS_EPOCHS) == 0.0
    assert lam_main(steps * WHITEN_BIAS_EPOCHS) > 0


def test_lookahead_steps():
    model = nn.Linear(3, 2)
    avg = Lookahead(model, epochs=10, enabled=True)
    assert not avg.active(3) and avg.active(4)  # from 30% of the epochs on
    assert not Lookahead(model, epochs=10, enabled=False).active(10)
    avg.update(LOOKAHEAD_EVERY - 1, 100)  # not an averaging step
    assert not avg.started
    avg.update(LOOKAHEAD_EVERY, 100)  # the first one starts the average at the weights
    assert avg.started
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    # Step 10 of 100: the average keeps a share 0.95 ** 5 * (10 / 100) ** 3 = 0.000773781 of
    # its old value and moves the rest of the way to the weights (numbers worked by hand).
    avg.update(2 * LOOKAHEAD_EVERY, 100)
    assert torch.allclose(model.weight, start + 0.999226219, atol=1e-6)
    moved = model.weight.detach().clone()
    # Step 80 of 100: the share kept is 0.7737809375 * 0.512 = 0.396175840.
    with torch.no_grad():
        model.weight.add_(1.0)
    avg.update(16 * LOOKAHEAD_EVERY, 100)
    assert torch.allclose(model.weight, moved + 0.603824160, atol=1e-6)
    expected = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.zero_()
    avg.to_model()  # the weights are set to the average
    assert torch.equal(model.weight, expected)
    avg.restart(False)
    assert not avg.started
    avg.restart(True)
    assert torch.equal(avg.average[0], model.weight)


def test_muon_trains_the_filters_in_any_memory_layout():
    """FilterMuon steps a channels_last filter exactly as the same filter laid out NCHW (its
    gradient may come in another layout): the 2-D views keep one element order."""
    from cifarlab.training.optim import FilterMuon

    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 4, 3, 3, generator=g)
    grad = torch.randn(8, 4, 3, 3, generator=g)
    plain = nn.Parameter(w.clone())
    last = nn.Parameter(w.clone().contiguous(memory_format=torch.channels_last))
    plain.grad, last.grad = grad.clone(), grad.clone()  # NCHW gradient for both
    for p in (plain, last):
        FilterMuon([p], lr=0.1, momentum=0.6).step()
    assert torch.allclose(plain, last, atol=1e-6)
    assert not torch.allclose(plain, w) and last.is_contiguous(memory_format=torch.channels_last)
    # the filter is scaled to norm sqrt(out) before the step, which moves it by lr * an
    # orthogonalized matrix: its singular values are close to one (Newton-Schulz, 5 steps)
    update = (w * (8**0.5 / w.norm()) - plain.detach()).reshape(8, -1) / 0.1
    s = torch.linalg.svdvals(update)
    assert s.min() > 0.5 and s.max() < 1.5


def test_muon_recipe_optimizers_and_state():
    cfg = resolve(None, {"model": "fast-muon"})
    model = build_model("fast-muon")
    opt, sched = make_optimizer(model, cfg, steps_per_epoch=5)
    filters = {id(p) for p in model.parameters() if p.ndim == 4 and p.requires_grad}
    in_sgd = {id(p) for g in opt.sgd.param_groups for p in g["params"]}
    assert len(filters) == 6 and not filters & in_sgd  # the whitening filter is frozen
    assert {id(p) for p in opt.muon.filters} == filters
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.lr)
    assert opt.muon.muon.param_groups[0]["lr"] == pytest.approx(cfg.muon_lr)
    opt.step()
    sched.step()
    state = (opt.state_dict(), sched.state_dict())
    opt2, sched2 = make_optimizer(model, cfg, steps_per_epoch=5)
    opt2.load_state_dict(state[0])
    sched2.load_state_dict(state[1])
    assert opt2.muon.muon.param_groups[0]["lr"] == opt.muon.muon.param_groups[0]["lr"]
    with pytest.raises(Exception, match="--muon-lr is for --optimizer muon"):
        resolve(None, {"model": "fast", "muon_lr": 0.1})
