"""Reading files of a dataset: images, PNG label maps and their headers, with errors that name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


class InvalidSampleError(ValueError):
    """A sample that cannot be read as labelled; the message starts with the reason, then names the file."""


def read_rgb(path: Path) -> np.ndarray:
    """Image file -> RGB ``uint8 [H, W, 3]``; grayscale, palette and RGBA are converted."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise InvalidSampleError(f"image file not found: {path}") from None
    except (OSError, ValueError) as err:
        raise InvalidSampleError(f"cannot read image: {path}: {err}") from err


def image_header(path: Path, what: str = "image") -> tuple[tuple[int, int], str]:
    """``((H, W), PIL mode)`` from a file's header only (cheap enough to check every file at start-up)."""
    try:
        with Image.open(path) as img:
            (width, height), mode = img.size, img.mode
    except FileNotFoundError:
        raise InvalidSampleError(f"{what} file not found: {path}") from None
    except (OSError, ValueError) as err:
        raise InvalidSampleError(f"cannot read {what}: {path}: {err}") from err
    return (height, width), mode


def image_size(path: Path, what: str = "image") -> tuple[int, int]:
    """``(H, W)`` of an image file from its header only."""
    return image_header(path, what)[0]
