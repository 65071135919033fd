"""tools/make_synthetic.py and tools/browse_dataset.py, run through their main() as from the command line."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtkd.config import Config
from mtkd.data import CocoMultiTaskDataset, build_dataset
from mtkd.engine.utils import set_data_root
from mtkd.visualization import class_colours, denormalize

REPO = Path(__file__).resolve().parents[1]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_synthetic_writes_the_splits_and_prints_the_summary(tmp_path, capsys):
    tool = load_tool("make_synthetic")
    args = ["--out", str(tmp_path), "--num-train", "3", "--num-val", "2", "--num-test", "1", "--size", "48",
            "--seed", "5", "--workers", "1"]
    assert tool.main(args) == 0
    printed = capsys.readouterr().out
    for split, count in (("train", 3), ("val", 2), ("test", 1)):
        data = json.loads((tmp_path / "annotations" / f"instances_{split}.json").read_text())
        assert len(data["images"]) == count == len(list((tmp_path / "images" / split).glob("*.png")))
        assert f"{split}: {count} images, {len(data['annotations'])} objects" in printed
        assert Image.open(tmp_path / "images" / split / data["images"][0]["file_name"]).size == (48, 48)
    assert f"wrote {tmp_path} in" in printed


@pytest.mark.parametrize("bad", [["--size", "16"], ["--num-val", "-1"]])
def test_make_synthetic_rejects_bad_arguments(tmp_path, capsys, bad):
    assert load_tool("make_synthetic").main(["--out", str(tmp_path), *bad]) == 2
    assert "error" in capsys.readouterr().err and not (tmp_path / "annotations").exists()


def test_browse_dataset_draws_every_task_through_the_configs_drawers(tiny_synthetic, tmp_path):
    tool = load_tool("browse_dataset")
    config = str(REPO / "configs/demo/teacher.py")   # 64 px input; drawers from _base_/default_runtime.py
    args = [config, "--split", "val", "--num", "3", "--out-dir", str(tmp_path), "--data-root", str(tiny_synthetic)]
    assert tool.main(args) == 0
    files = sorted(tmp_path.glob("*.png"))
    dataset = CocoMultiTaskDataset(tiny_synthetic, "annotations/instances_val.json", "images/val")
    colours = class_colours(len(dataset.class_names["seg"]))
    cfg = Config.fromfile(config)
    set_data_root(cfg, str(tiny_synthetic))
    configured = build_dataset(cfg["val_dataloader"]["dataset"])   # what the tool draws on, undrawn
    panels = 1 + sum(1 for task in dataset.tasks if task == "depth")  # depth is a panel to the right
    assert len(files) == 3
    for index, path in enumerate(files):
        info = dataset.coco.imgs[dataset.image_ids[index]]
        assert path.name == f"{index:03d}_{Path(info['file_name']).stem}.png"
        drawn = np.asarray(Image.open(path))
        assert drawn.shape == (384, 384 * panels, 3)  # the config's 64 px input, zoomed 6x
        # the last box drawn: its left edge, bottom end, has the colour of its class (det k is seg k + 1)
        last = dataset.coco.imgToAnns[info["id"]][-1]
        x, y, w, h = (v * 6 for v in last["bbox"])  # 64 px images at a 64 px input, zoomed 6x
        label = dataset.label_to_cat_id.index(last["category_id"])
        assert tuple(drawn[min(int(y + h), 383), int(x)]) == colours[label + 1]
        # object pixels are blended 0.55 image + 0.45 class colour (most of them: box edges, names, the class
        # text cover some)
        sample = configured[index]
        plain = denormalize(sample["img"], *configured.pipeline.normalization()).permute(1, 2, 0).numpy()
        plain = plain.repeat(6, 0).repeat(6, 1).astype(float)
        seg = sample["seg"].numpy().repeat(6, 0).repeat(6, 1)
        for cls in set(np.unique(seg)) - {0}:
            inside = seg == cls
            blended = 0.55 * plain[inside] + 0.45 * np.array(colours[cls])
            close = (np.abs(drawn[:, :384][inside] - blended) <= 2).all(1)
            assert close.mean() > 0.7, (path.name, cls, close.mean())
