"""Collate samples into the batch contract of ``mtkd.structures``."""
from __future__ import annotations

from collections.abc import Sequence

import torch

STACKED = ("img", "seg", "cls")   # same-shape tensors -> one tensor [B, ...]
LISTED = ("boxes", "labels", "meta")  # per-image sizes -> lists of B items


def collate(samples: Sequence[dict]) -> dict:
    """Stack ``img``/``seg``/``cls``, list ``boxes``/``labels``/``meta``; a key in some samples only is an error."""
    if not samples:
        raise ValueError("collate: empty list of samples")
    keys = set(samples[0])
    for i, sample in enumerate(samples[1:], 1):
        for key in sorted(keys ^ set(sample)):
            has, lacks = (0, i) if key in keys else (i, 0)
            raise KeyError(f"collate: key {key!r} is in sample {has} but not in sample {lacks} of the batch; "
                           f"every sample of a dataset must carry the same tasks")
    batch = {}
    for key in keys:
        values = [s[key] for s in samples]
        if key in LISTED:
            batch[key] = values
        elif isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(f"collate: {key!r} tensors differ in shape {sorted(shapes)}; resize or pad "
                                 f"every image to one size in the pipeline")
            batch[key] = torch.stack(values)
        else:
            batch[key] = values
    return batch
