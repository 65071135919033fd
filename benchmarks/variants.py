"""The runs benchmarks/quality.py can train: the multi-task teacher and its students (output KD, with feature
KD, with the stronger losses of issue #17), the one-task specialist teachers named by
configs/demo/student_kd_specialists.py and theirs, the mixed set of configs/demo/student_kd_mixed.py, each
with learned task weightings (issue #16). A variant is a config, cfg-options, and the teacher variants it
is distilled from."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from benchmarks.common import ROOT
from mtkd.config import Config

KD_CONFIG = "configs/demo/student_kd_plain.py"  # output KD, each task's plain loss (the recipe before #17)
BEST_CONFIG = "configs/demo/student_kd_ls_t1.py"  # the best output-KD combination of issue #17, chosen on val
DEFAULT_KD_CONFIG = "configs/demo/student_kd.py"  # the demo's default: the same plus PKD feature KD
SPECIALISTS_CONFIG = "configs/demo/student_kd_specialists.py"  # its model.teachers: the specialist teachers
MIXED_CONFIG = "configs/demo/student_kd_mixed.py"  # specialists for seg, det, depth; the multi-task teacher for cls
WEIGHTINGS = {"unc": "UncertaintyWeighting", "dwa": "DWA"}  # suffix: learned model.task_weighting.type
METHODS = {"kd+ls": "kd_ls", "dkd_cwd": "dkd_cwd", "crosskd": "crosskd"}  # variant: configs/demo/student_<name>.py
REFERENCE = "teacher"  # the row every distilled variant's "gap closed" is measured against
ASSEMBLED = "specialists"  # the row of a variant's several one-task teachers, each on the task it teaches


class Variant(NamedTuple):
    """A run per seed: ``config`` with ``options``, and with each ``teachers`` key (a cfg-options key such as
    ``model.teacher_checkpoint``) set to the best.pth of the named teacher variant's run of the paired seed."""
    config: str
    teachers: dict[str, str] = {}
    options: tuple[str, ...] = ()


def specialist_teachers(config: str = SPECIALISTS_CONFIG) -> dict[str, tuple[str, str]]:
    """``{cfg-options key: (teacher variant, its config)}`` for each teacher named in ``config``'s model.teachers.

    Its checkpoint ``work_dirs/<path>/best.pth`` names the variant (the folder) and the config that trains
    it, ``configs/<path>.py`` (tools/train.py's work-dir convention).
    """
    out = {}
    for name, spec in Config.fromfile(ROOT / config).model.teachers.items():
        checkpoint = Path(spec.checkpoint)
        teacher_config = Path("configs", *checkpoint.parent.parts[1:]).with_suffix(".py")
        if checkpoint.parts[0] != "work_dirs" or checkpoint.name != "best.pth" or not (ROOT / teacher_config).is_file():
            raise ValueError(f"{config}: model.teachers.{name}.checkpoint={spec.checkpoint} is not "
                             f"work_dirs/<path>/best.pth of a configs/<path>.py")
        out[f"model.teachers.{name}.checkpoint"] = (checkpoint.parent.name, teacher_config.as_posix())
    return out


def build_variants() -> dict[str, Variant]:
    """Every variant, in table order: the multi-task teacher and its students, then the specialists and theirs."""
    one_teacher = {"model.teacher_checkpoint": "teacher"}
    kd = Variant(KD_CONFIG, one_teacher)
    variants = {"teacher": Variant("configs/demo/teacher.py"), "scratch": Variant("configs/demo/student_scratch.py"),
                "kd": kd, "kd+feat": Variant("configs/demo/student_kd_feat.py", one_teacher), **weighted("kd", kd),
                # issue #17: the field's stronger losses on the same teacher (configs/demo/student_<method>.py)
                **{name: Variant(f"configs/demo/student_{config}.py", one_teacher) for name, config in METHODS.items()},
                "kd_best": Variant(BEST_CONFIG, one_teacher),
                "kd_best+feat": Variant(DEFAULT_KD_CONFIG, one_teacher)}
    specialists = specialist_teachers()
    variants.update({name: Variant(config) for name, config in specialists.values()})
    kd_spec = Variant(SPECIALISTS_CONFIG, {key: name for key, (name, _) in specialists.items()})
    variants.update({"kd_spec": kd_spec, **weighted("kd_spec", kd_spec)})
    kd_mix = Variant(MIXED_CONFIG, {key: name for key, (name, _) in specialist_teachers(MIXED_CONFIG).items()})
    variants.update({"kd_mix": kd_mix, **weighted("kd_mix", kd_mix)})
    return variants


def weighted(prefix: str, student: Variant) -> dict[str, Variant]:
    """``<prefix>+unc`` and ``<prefix>+dwa``: ``student`` with a learned task weighting instead of the ratios."""
    return {f"{prefix}+{suffix}": student._replace(options=(*student.options, f"model.task_weighting.type={kind}"))
            for suffix, kind in WEIGHTINGS.items()}


VARIANTS = build_variants()
DEFAULT_VARIANTS = ["teacher", "scratch", "kd", "kd+feat"]


def teacher_variants() -> set[str]:
    """The variants some variant is distilled from: trained at the teacher seeds."""
    return {teacher for variant in VARIANTS.values() for teacher in variant.teachers.values()}


def needed(selected: list[str]) -> list[str]:
    """The selected variants and every teacher they are distilled from, in table order."""
    names, todo = set(), list(selected)
    while todo:
        name = todo.pop()
        if name not in names:
            names.add(name)
            todo += list(VARIANTS[name].teachers.values())
    return [n for n in VARIANTS if n in names]
