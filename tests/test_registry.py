import traceback

import pytest
import torch

from mtkd.registry import DATASETS, METRICS, MODELS, OPTIMIZERS, SCHEDULERS, TRANSFORMS, Registry


@pytest.fixture
def reg():
    registry = Registry("TOYS")

    @registry.register_module()
    class Ball:
        def __init__(self, size=1, colour="red"):
            self.size, self.colour = size, colour

    @registry.register_module(name="Cube")
    class SomethingElse:
        def __init__(self, side):
            if side <= 0:
                raise ValueError(f"side must be positive, got {side}")
            self.side = side

    return registry


def test_register_build_get_contains(reg):
    ball = reg.build(dict(type="Ball", size=3))
    assert (ball.size, ball.colour) == (3, "red")
    assert reg.get("Cube").__name__ == "SomethingElse"
    assert "Ball" in reg and "Cube" in reg and "SomethingElse" not in reg
    assert len(reg) == 2 and reg.keys() == ["Ball", "Cube"]


def test_build_does_not_mutate_cfg_and_defaults_lose_to_cfg(reg):
    cfg = dict(type="Ball", size=3)
    ball = reg.build(cfg, size=10, colour="blue")
    assert cfg == dict(type="Ball", size=3)
    assert (ball.size, ball.colour) == (3, "blue")


def test_build_with_class_as_type(reg):
    class Free:
        def __init__(self, x):
            self.x = x

    assert reg.build(dict(type=Free, x=5)).x == 5


def test_register_module_with_module_argument_and_force(reg):
    class Ball2:
        pass

    with pytest.raises(KeyError, match="already registered"):
        reg.register_module(name="Ball", module=Ball2)
    reg.register_module(name="Ball", force=True, module=Ball2)
    assert reg.get("Ball") is Ball2


def test_unknown_type_names_registry_and_closest(reg):
    with pytest.raises(KeyError) as info:
        reg.build(dict(type="Bal"))
    message = str(info.value)
    assert "TOYS" in message and "'Bal'" in message and "closest: Ball" in message


def test_missing_type_key_and_bad_cfg(reg):
    with pytest.raises(KeyError, match="no 'type' key"):
        reg.build(dict(size=1))
    with pytest.raises(TypeError, match="expects a dict"):
        reg.build("Ball")


def test_constructor_error_keeps_type_traceback_and_names_the_type(reg):
    with pytest.raises(ValueError) as info:
        reg.build(dict(type="Cube", side=-1))
    err = info.value
    assert "side must be positive" in str(err)
    assert any("type='Cube'" in note and "TOYS" in note for note in err.__notes__)
    frames = traceback.extract_tb(err.__traceback__)
    assert frames[-1].name == "__init__"  # the original raise site is still in the traceback


def test_nested_build_errors_name_each_level(reg):
    outer = Registry("OUTER")

    @outer.register_module()
    class Box:
        def __init__(self, content):
            self.content = reg.build(content)

    with pytest.raises(ValueError) as info:
        outer.build(dict(type="Box", content=dict(type="Cube", side=0)))
    notes = info.value.__notes__
    assert any("type='Cube'" in n for n in notes) and any("type='Box'" in n for n in notes)


def test_repr_lists_entries(reg):
    text = repr(reg)
    assert "TOYS" in text and "Ball" in text and "Cube" in text and "2 entries" in text


def test_torch_optimizers_and_schedulers_registered_by_own_names():
    param = torch.nn.Parameter(torch.zeros(2))
    opt = OPTIMIZERS.build(dict(type="SGD", lr=0.1), params=[param])
    assert isinstance(opt, torch.optim.SGD)
    assert {"Adam", "AdamW", "SGD"} <= set(OPTIMIZERS.keys())
    sched = SCHEDULERS.build(dict(type="CosineAnnealingLR", T_max=10), optimizer=opt)
    assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert {"LinearLR", "SequentialLR", "StepLR", "MultiStepLR"} <= set(SCHEDULERS.keys())


def test_project_registries_exist():
    for registry in (MODELS, DATASETS, TRANSFORMS, METRICS):
        assert isinstance(registry, Registry)
