"""Every config typo is an error before anything runs, naming the key, its file and the closest known key."""
import pytest

from mtkd.config import Config, ConfigError
from mtkd.engine.config_keys import ENGINE_KEYS, RUNTIME_KEYS, check_config_keys
from tests.test_trainer import REPO, run_train, tiny_config

TYPOS = [  # (a config line with a typo, the key as reported, what it should have been): issue #20's cases
    ("seeed = 5", "seeed", "seed"),
    ("deterministc = True", "deterministc", "deterministic"),
    ("devcie = 'cpu'", "devcie", "device"),
    ("num_vis_image = 2", "num_vis_image", "num_vis_images"),
    ("log_intervall = 3", "log_intervall", "log_interval"),
    ("optimiser = dict(type='SGD', lr=0.1)", "optimiser", "optimizer"),
    ("max_epochs = 1", "max_epochs", "train_cfg.max_epochs"),
    ("train_cfg = dict(max_epoch=1)", "train_cfg.max_epoch", "train_cfg.max_epochs"),
    ("train_cfg = dict(val_intervl=1)", "train_cfg.val_intervl", "train_cfg.val_interval"),
    ("grad_clip = dict(max_nrom=1.0)", "grad_clip.max_nrom", "grad_clip.max_norm"),
    ("checkpoint = dict(best_metirc='det/mAP')", "checkpoint.best_metirc", "checkpoint.best_metric"),
    ("checkpoint = dict(patiance=2)", "checkpoint.patiance", "checkpoint.patience"),
    ("ema = dict(enable=True)", "ema.enable", "ema.enabled"),
    ("amp = dict(enable=False)", "amp.enable", "amp.enabled"),
]


@pytest.mark.parametrize("line, typo, meant", TYPOS, ids=[t[1] for t in TYPOS])
def test_each_typo_names_the_key_its_file_and_what_was_meant(tmp_path, line, typo, meant):
    path = tmp_path / "typo.py"
    path.write_text(f"_base_ = {str(REPO / 'configs/demo/teacher.py')!r}\n{line}\n")
    cfg = Config.fromfile(path)
    with pytest.raises(ConfigError) as info:
        check_config_keys(cfg)
    message = str(info.value)
    assert f"'{typo}' (set in {path})" in message and f"did you mean '{meant}'?" in message


def test_the_shipped_configs_pass_and_private_names_are_not_keys(tmp_path):
    for config in ["configs/demo/teacher.py", "configs/demo/student_kd_feat.py", "configs/multitask_kd.py",
                   "configs/cls_kd_densenet121-seedcnn_imagefolder.py", "examples/counting/student_kd.py"]:
        check_config_keys(Config.fromfile(REPO / config))
    path = tmp_path / "mine.py"
    path.write_text(f"_base_ = {str(REPO / 'configs/demo/teacher.py')!r}\n_size = 64\ninput_size = (_size, _size)\n")
    check_config_keys(Config.fromfile(path))
    assert {"model", "optimizer", "metrics", "drawers", "custom_imports"} <= ENGINE_KEYS
    assert RUNTIME_KEYS["train_cfg"] == {"max_epochs", "val_interval"}


def test_a_typo_stops_train_before_anything_runs(tmp_path, tiny_synthetic, capsys):
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "typo", extra="seeed = 5")
    assert run_train(config, tmp_path / "work", "--cfg-options", "grad_clip.max_nrom=1.0") == 2
    err = capsys.readouterr().err
    assert f"'seeed' (set in {config}); did you mean 'seed'?" in err
    assert "'grad_clip.max_nrom' (set in --cfg-options); did you mean 'grad_clip.max_norm'?" in err
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("option, message", [
    ("optimizer.lr=", "--cfg-options optimizer.lr='': empty value"),
    ("optimizer.lr=1e-3x", "--cfg-options optimizer.lr='1e-3x': expected a number, like its current value 0.002"),
    ("channels_last=yes", "--cfg-options channels_last='yes': expected true or false, like its current value True"),
])
def test_cfg_options_values_that_do_not_fit_their_key(tmp_path, tiny_synthetic, capsys, option, message):
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "bad")
    assert run_train(config, tmp_path / "work", "--cfg-options", option) == 2
    assert message in capsys.readouterr().err


def test_fitting_overrides_still_work():
    cfg = Config.fromfile(REPO / "configs/demo/teacher.py")
    cfg.merge_from_dict({"optimizer.lr": 1, "grad_clip": None, "train_cfg.max_epochs": 2, "work_dir": "x"})
    assert cfg.optimizer.lr == 1 and cfg.grad_clip is None and cfg.origin("optimizer.lr") == "--cfg-options"
    assert cfg.origin("model.backbone.channels").endswith("teacher_seedcnn-fpn_tiny.py")
