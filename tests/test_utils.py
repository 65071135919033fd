import random

import numpy as np
import pytest
import torch

from mtkd.config import Config
from mtkd.checkpoint import load_checkpoint, save_checkpoint
from mtkd.engine.utils import get_rng_state, seed_everything, select_device, set_data_root, set_rng_state


def draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_survives_a_checkpoint_round_trip(tmp_path):
    seed_everything(3)
    draw()
    state = get_rng_state()
    expected = [draw() for _ in range(3)]
    save_checkpoint({"rng": state, "state_dict": {}, "model_config": {}, "num_classes": {}, "config": {}},
                    tmp_path / "c.pth")
    seed_everything(99)
    set_rng_state(load_checkpoint(tmp_path / "c.pth")["rng"])
    assert [draw() for _ in range(3)] == expected


def test_seed_everything_repeats():
    seed_everything(5)
    first = draw()
    seed_everything(5)
    assert draw() == first


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            select_device("cuda")


def test_set_data_root_repoints_every_split():
    cfg = Config(dict(data_root="a", train_dataloader=dict(dataset=dict(data_root="a", x=1)),
                      val_dataloader=dict(dataset=dict(data_root="a")), other=dict(data_root="keep")))
    set_data_root(cfg, "/new")
    assert cfg.train_dataloader.dataset.data_root == "/new" and cfg.val_dataloader.dataset.data_root == "/new"
    assert cfg.data_root == "/new" and cfg.other.data_root == "keep"
