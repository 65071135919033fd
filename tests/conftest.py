"""Shared fixtures: a tiny synthetic data set made once per test session."""
import pytest
import torch

torch.set_num_threads(1)  # tiny models: one thread is faster and does not fight subprocess tests


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """16 train / 8 val / 8 test images of 64 px, in COCO format."""
    from mtkd.data import make_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, num_train=16, num_val=8, num_test=8, size=64, seed=0, workers=1, progress=False)
    return root
