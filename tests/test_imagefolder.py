import numpy as np
import pytest
import torch
from PIL import Image

from mtkd.data import ImageFolderDataset, build_dataloader
from mtkd.data.imagefolder import read_labels_file

PIPELINE = [dict(type="Resize", height=16, width=16), dict(type="Normalize", mean=(0, 0, 0), std=(1, 1, 1))]


def write_folder(root, classes=("dog", "cat"), per_class=2, split="train", mode="RGB"):
    """``root/<split>/<class>/<i>.jpg``; class c's images have the constant colour 40 * (c + 1)."""
    for c, name in enumerate(classes):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            grey = 40 * (c + 1)
            colour = {"L": grey, "RGB": (grey,) * 3, "RGBA": (grey, grey, grey, 255)}[mode]
            Image.new(mode, (20, 12), colour).save(folder / f"{i}.png")
        (folder / "notes.txt").write_text("not an image")
    return root


def test_classes_are_sorted_folders_and_samples_follow_the_contract(tmp_path):
    dataset = ImageFolderDataset(write_folder(tmp_path), "train", PIPELINE)
    assert dataset.tasks == ("cls",) and dataset.num_classes == {"cls": 2}
    assert dataset.class_names == {"cls": ["cat", "dog"]} and len(dataset) == 4  # the .txt files are ignored
    sample = dataset[0]
    assert set(sample) == {"img", "cls", "meta"} and sample["img"].shape == (3, 16, 16)
    assert sample["cls"].dtype == torch.long and sample["cls"].ndim == 0
    # "cat" (folder index 1 in write order, colour 80) is class 0 after sorting
    assert int(sample["cls"]) == 0 and sample["img"][0, 0, 0].item() == pytest.approx(80 / 255)
    assert sample["meta"]["file_name"] == "cat/0.png" and sample["meta"]["ori_size"] == (12, 20)
    assert sample["meta"]["scale_factor"] == pytest.approx((0.8, 16 / 12))


def test_labels_file_orders_classes_by_name_or_by_index_folder(tmp_path):
    write_folder(tmp_path / "named")
    (tmp_path / "named" / "labels.txt").write_text("0 dog\n1 cat\n2 bird\n")
    named = ImageFolderDataset(tmp_path / "named", "train", PIPELINE, labels_file="labels.txt")
    assert named.class_names["cls"] == ["dog", "cat", "bird"] and named.num_classes["cls"] == 3
    assert {s[0].parent.name: s[1] for s in named.samples} == {"dog": 0, "cat": 1}
    write_folder(tmp_path / "indexed", classes=("0", "2"))
    (tmp_path / "indexed" / "labels.txt").write_text("0\tdog\n1\tcat\n2\tbird\n")
    indexed = ImageFolderDataset(tmp_path / "indexed", "train", PIPELINE, labels_file="labels.txt")
    assert {s[0].parent.name: s[1] for s in indexed.samples} == {"0": 0, "2": 2}


@pytest.mark.parametrize("text, message", [
    ("0 dog\n0 cat\n", "line 2: index 0 appears twice"),
    ("0 dog\n2 cat\n", "without gaps"),
    ("dog 0\n", "line 1: expected 'index class_name'"),
])
def test_bad_labels_files_are_errors_naming_the_line(tmp_path, text, message):
    (tmp_path / "labels.txt").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_labels_file(tmp_path / "labels.txt")


def test_bad_layouts_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder .*val"):
        ImageFolderDataset(write_folder(tmp_path), "val", PIPELINE)
    (tmp_path / "labels.txt").write_text("0 dog\n1 bird\n")
    with pytest.raises(ValueError, match="class folder 'cat' is neither a class name nor an index"):
        ImageFolderDataset(tmp_path, "train", PIPELINE, labels_file="labels.txt")
    with pytest.raises(FileNotFoundError, match="labels file not found"):
        ImageFolderDataset(tmp_path, "train", PIPELINE, labels_file="nope.txt")
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path / "empty", "train", PIPELINE)


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grayscale_and_rgba_are_converted(tmp_path, mode):
    sample = ImageFolderDataset(write_folder(tmp_path, mode=mode), "train", PIPELINE)[0]
    assert sample["img"].shape == (3, 16, 16)
    assert torch.allclose(sample["img"][:, 4, 4], torch.full((3,), 80 / 255))


def test_loader_batches_from_an_image_folder(tmp_path):
    cfg = dict(batch_size=3, num_workers=0, shuffle=False, dataset=dict(
        type="ImageFolderDataset", data_root=str(write_folder(tmp_path)), split="train", pipeline=PIPELINE))
    batch = next(iter(build_dataloader(cfg)))
    assert batch["img"].shape == (3, 3, 16, 16) and batch["cls"].tolist() == [0, 0, 1]
    assert np.allclose(batch["img"][:, 0, 0, 0].numpy(), [80 / 255, 80 / 255, 40 / 255])
