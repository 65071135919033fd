import argparse
import math
import sys
import textwrap
from pathlib import Path

import pytest

from mtkd.config import Config, ConfigDict, ConfigError, DictAction, parse_cfg_options, parse_value

REPO = Path(__file__).resolve().parents[1]


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tree(tmp_path):
    """A 3-level tree: child -> [model base -> its own base, schedule base]."""
    write(tmp_path, "_base_/models/backbone_r18.py", """
        backbone = dict(type="TimmBackbone", name="resnet18", out_indices=(1, 2, 3, 4))
        model = dict(type="MultiTaskModel", backbone=backbone, neck=dict(type="FPN", out_channels=64),
                     heads=dict(seg=dict(type="SegHead", channels=64), cls=dict(type="ClsHead")))
        """)
    write(tmp_path, "_base_/models/teacher.py", """
        _base_ = "backbone_r18.py"
        model = dict(neck=dict(out_channels=128), heads=dict(det=dict(type="DetHead", strides=[8, 16, 32])))
        """)
    write(tmp_path, "_base_/schedule.py", """
        optimizer = dict(type="SGD", lr=0.01, momentum=0.9, nesterov=True)
        train_cfg = dict(max_epochs=12, val_interval=1)
        milestones = [8, 11]
        """)
    child = write(tmp_path, "child.py", """
        _base_ = ["_base_/models/teacher.py", "_base_/schedule.py"]
        optimizer = dict(_delete_=True, type="AdamW", lr=1e-3)
        milestones = [20]
        model = dict(heads=dict(cls=dict(dropout=0.1)))
        lr_double = _base_.optimizer.lr * 2
        """)
    return child


def test_three_level_tree_loads_to_expected_dict(tree):
    cfg = Config.fromfile(tree)
    cfg.merge_from_dict(parse_cfg_options(["model.backbone.name=resnet34", "train_cfg.max_epochs=3",
                                           "model.heads.det.strides.0=4"]))
    expected = dict(
        backbone=dict(type="TimmBackbone", name="resnet18", out_indices=(1, 2, 3, 4)),
        model=dict(
            type="MultiTaskModel",
            backbone=dict(type="TimmBackbone", name="resnet34", out_indices=(1, 2, 3, 4)),
            neck=dict(type="FPN", out_channels=128),
            heads=dict(seg=dict(type="SegHead", channels=64), cls=dict(type="ClsHead", dropout=0.1),
                       det=dict(type="DetHead", strides=[4, 16, 32]))),
        optimizer=dict(type="AdamW", lr=1e-3),   # _delete_ dropped momentum and nesterov
        train_cfg=dict(max_epochs=3, val_interval=1),
        milestones=[20],                          # lists replace, never merge
        lr_double=0.02,                           # plain Python over the merged bases
    )
    assert cfg.to_dict() == expected


def test_attribute_and_item_access(tree):
    cfg = Config.fromfile(tree)
    assert cfg.model.backbone.name == "resnet18"
    assert cfg["model"]["neck"]["out_channels"] == 128
    assert isinstance(cfg.model, ConfigDict) and "model" in cfg
    cfg.model.neck.out_channels = 32
    assert cfg["model"]["neck"]["out_channels"] == 32
    with pytest.raises(AttributeError, match="did you mean model"):
        _ = cfg.modle


def test_to_dict_returns_plain_containers(tree):
    plain = Config.fromfile(tree).to_dict()

    def check(value):
        assert type(value) in (dict, list, tuple, str, int, float, bool, type(None))
        if isinstance(value, dict):
            [check(v) for v in value.values()]
        elif isinstance(value, (list, tuple)):
            [check(v) for v in value]

    check(plain)


def test_dump_round_trip_and_pretty_text(tree, tmp_path):
    cfg = Config.fromfile(tree)
    cfg.merge_from_dict({"extra": {"inf": float("inf"), "name with space": 1, "t": (1,), "none": None}})
    out = tmp_path / "dumped" / "config.py"
    cfg.dump(out)
    again = Config.fromfile(out)
    assert again.to_dict() == cfg.to_dict()
    assert again.extra["inf"] == math.inf
    assert "model = dict(" in cfg.pretty_text


def test_dump_rejects_unwritable_values(tmp_path):
    cfg = Config(dict(model=dict(type=object())))
    with pytest.raises(ConfigError, match="model.type"):
        cfg.dump(tmp_path / "x.py")
    with pytest.raises(ConfigError, match=".py"):
        Config(dict(a=1)).dump(tmp_path / "x.json")


def test_key_in_two_bases_is_an_error(tmp_path):
    write(tmp_path, "a.py", "lr = 0.1\n")
    write(tmp_path, "b.py", "lr = 0.2\n")
    child = write(tmp_path, "child.py", '_base_ = ["a.py", "b.py"]\n')
    with pytest.raises(ConfigError, match=r"'lr' is defined in two of its bases"):
        Config.fromfile(child)


def test_same_key_in_base_chain_is_fine(tmp_path):
    write(tmp_path, "a.py", "lr = 0.1\nmodel = dict(x=1)\n")
    write(tmp_path, "b.py", '_base_ = "a.py"\nlr = 0.2\n')
    child = write(tmp_path, "child.py", '_base_ = "b.py"\nlr = 0.3\n')
    assert Config.fromfile(child).to_dict() == dict(lr=0.3, model=dict(x=1))


def test_delete_on_a_key_absent_from_base_and_nested(tmp_path):
    write(tmp_path, "a.py", "m = dict(a=dict(x=1, y=2), b=1)\n")
    child = write(tmp_path, "child.py", '_base_ = "a.py"\nm = dict(a=dict(_delete_=True, z=3), c=dict(_delete_=True))\n')
    assert Config.fromfile(child).m == dict(a=dict(z=3), b=1, c=dict())


def test_child_dict_replaces_a_non_dict_base_value(tmp_path):
    write(tmp_path, "a.py", "m = [1, 2]\n")
    child = write(tmp_path, "child.py", '_base_ = "a.py"\nm = dict(k=1)\n')
    assert Config.fromfile(child).m == dict(k=1)


def test_base_values_do_not_leak_mutations(tmp_path):
    write(tmp_path, "a.py", "model = dict(neck=dict(c=1))\n")
    child = write(tmp_path, "child.py", """
        _base_ = "a.py"
        student = _base_.model
        student.neck.c = 2
        """)
    cfg = Config.fromfile(child)
    assert cfg.model.neck.c == 1 and cfg.student.neck.c == 2


def test_non_config_names_are_dropped(tmp_path):
    path = write(tmp_path, "c.py", """
        import math
        from os import path as osp
        _private = 3
        def helper():
            return 1
        value = math.sqrt(4) + helper()
        """)
    assert Config.fromfile(path).to_dict() == dict(value=3.0)


def test_missing_base_names_the_file_that_asked(tmp_path):
    child = write(tmp_path, "sub/child.py", '_base_ = ["../nope.py"]\n')
    with pytest.raises(ConfigError) as info:
        Config.fromfile(child)
    assert "nope.py" in str(info.value) and str(child) in str(info.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        Config.fromfile("/does/not/exist.py")


def test_inheritance_cycle_names_the_cycle(tmp_path):
    write(tmp_path, "a.py", '_base_ = "b.py"\n')
    write(tmp_path, "b.py", '_base_ = "c.py"\n')
    write(tmp_path, "c.py", '_base_ = "a.py"\n')
    with pytest.raises(ConfigError, match="cycle") as info:
        Config.fromfile(tmp_path / "a.py")
    message = str(info.value)
    assert message.count("a.py") == 2 and "b.py" in message and "c.py" in message


def test_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.py", "a = 1\nb = dict(\nc = 3\n")
    with pytest.raises(ConfigError) as info:
        Config.fromfile(path)
    assert str(path) in str(info.value) and "line" in str(info.value)


def test_runtime_error_names_file(tmp_path):
    path = write(tmp_path, "bad.py", "a = undefined_name\n")
    with pytest.raises(NameError) as info:
        Config.fromfile(path)
    assert any(str(path) in note for note in info.value.__notes__)


def test_non_literal_base_is_an_error(tmp_path):
    path = write(tmp_path, "bad.py", "x = 'a.py'\n_base_ = x\n")
    with pytest.raises(ConfigError, match="literal"):
        Config.fromfile(path)


@pytest.mark.parametrize("text, expected", [
    ("1", 1), ("-3", -3), ("1.5", 1.5), ("1e-3", 1e-3), ("true", True), ("False", False),
    ("None", None), ("resnet34", "resnet34"), ("'quoted'", "quoted"),
    ("[1,2]", [1, 2]), ("1,2", [1, 2]), ("(1,2)", (1, 2)), ("[a, 0.5]", ["a", 0.5]),
    ("[(1,2),(3,4)]", [(1, 2), (3, 4)]), ("[]", []), ("()", ()), ("[[1],[2,3]]", [[1], [2, 3]]),
])
def test_parse_value(text, expected):
    assert parse_value(text) == expected
    assert type(parse_value(text)) is type(expected)


def test_parse_value_unbalanced_brackets():
    with pytest.raises(ConfigError, match="unbalanced"):
        parse_value("[1,2")


def test_parse_cfg_options_needs_key_value():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_cfg_options(["model.lr"])


def test_merge_from_dict_creates_dicts_and_indexes_lists():
    cfg = Config(dict(pipeline=[dict(type="Resize", size=32), dict(type="Flip")], model=dict(a=1)))
    cfg.merge_from_dict({"pipeline.0.size": 64, "new.sub.key": "v", "model": dict(b=2)})
    assert cfg.pipeline[0] == dict(type="Resize", size=64)
    assert cfg.new.sub.key == "v"
    assert cfg.model == dict(a=1, b=2)  # a dict value merges, as in mmengine


def test_merge_from_dict_errors():
    cfg = Config(dict(optimizer=dict(lr=0.1), pipeline=[1, 2]))
    with pytest.raises(ConfigError, match="optimizer.lr is a float"):
        cfg.merge_from_dict({"optimizer.lr.value": 1})
    with pytest.raises(ConfigError, match="out of range"):
        cfg.merge_from_dict({"pipeline.5": 1})
    with pytest.raises(ConfigError, match="integer"):
        cfg.merge_from_dict({"pipeline.x": 1})


def test_dict_action_in_argparse():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = parser.parse_args(["--cfg-options", "a.b=1", "c=[1,2]", "d=(x,y)", "e=none"])
    assert args.cfg_options == {"a.b": 1, "c": [1, 2], "d": ("x", "y"), "e": "none"}


def test_repo_configs_load():
    configs = sorted((REPO / "configs").rglob("*.py"))
    assert configs, "no configs found"
    for path in configs:
        cfg = Config.fromfile(path)
        assert cfg.pretty_text  # every config formats


# -- custom_imports ---------------------------------------------------------------------------------------
def test_custom_imports_are_imported_by_fromfile(tmp_path, monkeypatch):
    (tmp_path / "my_parts.py").write_text(
        "from mtkd.registry import MODELS\n\n@MODELS.register_module()\nclass MyCustomPart:\n    pass\n")
    (tmp_path / "cfg.py").write_text("custom_imports = dict(imports=['my_parts'], allow_failed_imports=False)\n")
    monkeypatch.chdir(tmp_path)           # user modules are found from the current directory
    monkeypatch.setattr(sys, "path", list(sys.path))
    from mtkd.registry import MODELS
    assert "MyCustomPart" not in MODELS
    Config.fromfile(tmp_path / "cfg.py")
    assert "MyCustomPart" in MODELS
    MODELS._modules.pop("MyCustomPart")


def test_a_custom_import_that_fails_names_the_module_and_the_config(tmp_path):
    (tmp_path / "cfg.py").write_text("custom_imports = dict(imports=['no_such_module_xyz'])\n")
    with pytest.raises(ConfigError, match=r"cfg.py: custom_imports cannot import 'no_such_module_xyz'"):
        Config.fromfile(tmp_path / "cfg.py")
    (tmp_path / "ok.py").write_text("custom_imports = dict(imports=['no_such_module_xyz'], allow_failed_imports=True)\n")
    with pytest.warns(UserWarning, match="no_such_module_xyz.*allow_failed_imports=True"):
        Config.fromfile(tmp_path / "ok.py")
    (tmp_path / "bad.py").write_text("custom_imports = dict(import_modules=['x'])\n")
    with pytest.raises(ConfigError, match="custom_imports must be dict\\(imports="):
        Config.fromfile(tmp_path / "bad.py")
    assert Config.fromfile(tmp_path / "cfg.py", import_custom=False).custom_imports.imports == ["no_such_module_xyz"]
