import math

import pytest
import torch

from mtkd.engine.optim import build_optimizer, build_scheduler


def make_model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten())


def test_weight_decay_skips_norms_and_biases():
    model = make_model()
    opt = build_optimizer(dict(type="AdamW", lr=0.1, weight_decay=0.05), model.parameters())
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.05 and all(p.ndim >= 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.ndim < 2 for p in plain["params"])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_no_trainable_parameters_is_an_error():
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(dict(type="SGD", lr=0.1), [])


def test_warmup_then_cosine_matches_formula():
    opt = build_optimizer(dict(type="SGD", lr=1.0), make_model().parameters())
    total, warmup, eta_min = 50, 10, 0.01
    sched = build_scheduler(dict(warmup=dict(type="LinearLR", start_factor=0.1, total_iters=warmup),
                                 main=dict(type="CosineAnnealingLR", eta_min=eta_min)), opt, total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    for i in range(warmup):
        assert lrs[i] == pytest.approx(0.1 + 0.9 * i / warmup)
    for i in range(warmup, total):
        t = i - warmup
        assert lrs[i] == pytest.approx(eta_min + (1 - eta_min) * (1 + math.cos(math.pi * t / (total - warmup))) / 2)


def test_no_schedule_is_constant_and_unknown_key_is_an_error():
    opt = build_optimizer(dict(type="SGD", lr=0.5), make_model().parameters())
    sched = build_scheduler(None, opt, 10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    with pytest.raises(KeyError, match="warmpu"):
        build_scheduler(dict(warmpu=dict(type="LinearLR")), opt, 10)
