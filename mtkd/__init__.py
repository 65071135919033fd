"""mtkd: multi-task knowledge distillation.

Importing the package registers every component (models, losses, datasets, transforms, metrics), so
that ``MODELS.build(dict(type=...))`` finds them.
"""
__version__ = "0.1.0"

from mtkd import data, distill, evaluation, models, visualization  # noqa: E402,F401  (registration)
