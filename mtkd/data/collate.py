"""Collate samples into the batch contract of ``mtkd.structures``."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from mtkd.structures import META_KEY


def collate(samples: Sequence[dict], listed: Sequence[str] = (META_KEY,)) -> dict:
    """Stack every key's tensors into ``[B, ...]``, except the ``listed`` keys, kept as lists of B items.

    Datasets declare their listed keys (``dataset.listed_keys``: ``meta`` and per-image sizes such as
    boxes); the loader passes them. A key in some samples only, or stacked tensors of different shapes, is
    an error naming the key.
    """
    if not samples:
        raise ValueError("collate: empty list of samples")
    keys = list(samples[0])
    for i, sample in enumerate(samples[1:], 1):
        for key in sorted(set(keys) ^ set(sample)):
            has, lacks = (0, i) if key in keys else (i, 0)
            raise KeyError(f"collate: key {key!r} is in sample {has} but not in sample {lacks} of the batch; "
                           f"every sample of a dataset must carry the same tasks")
    batch = {}
    for key in keys:
        values = [s[key] for s in samples]
        if key in listed or not isinstance(values[0], torch.Tensor):
            batch[key] = values
            continue
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            raise ValueError(f"collate: {key!r} tensors differ in shape {sorted(shapes)}; resize or pad every "
                             f"image to one size in the pipeline, or declare {key!r} listed (a per-image list)")
        batch[key] = torch.stack(values)
    return batch
