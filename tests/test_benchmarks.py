"""The benchmark scripts at tiny size: their arithmetic against hand computations, and each one end to end."""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import ablations, common, cost, overhead, plots, quality
from mtkd.checkpoint import save_checkpoint
from mtkd.config import Config, parse_cfg_options
from mtkd.distill.distiller import resolve_tasks
from mtkd.registry import MODELS
from tools.model_info import data_class_counts

REPO = Path(__file__).resolve().parents[1]
CLASSES = {"seg": 9, "det": 8, "cls": 8}
PRIMARY = {"seg": "seg/mIoU", "det": "det/mAP", "cls": "cls/top1"}
TINY = ["train_dataloader.batch_size=4", "train_dataloader.num_workers=0",
        "val_dataloader.num_workers=0", "test_dataloader.num_workers=0", "param_scheduler.warmup.total_iters=1"]


def fake_run(seg: float, det: float, cls: float) -> dict:
    metrics = {"seg/mIoU": seg, "det/mAP": det, "cls/top1": cls, "seg/aAcc": 99.0, "primary": PRIMARY}
    return {"val": metrics, "test": metrics, "seconds": 60.0}


def test_mean_std_is_the_sample_standard_deviation():
    mean, std = common.mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert common.mean_std([3.0]) == (3.0, 0.0)


def test_quality_summary_deltas_verdicts_and_gap_closed():
    runs = {"teacher": {0: fake_run(30, 20, 50), 1: fake_run(32, 22, 52)},
            "scratch": {0: fake_run(10, 5, 20), 1: fake_run(12, 5, 22)},
            "kd": {0: fake_run(20, 5.5, 30), 1: fake_run(22, 6.5, 32)}}
    summary = quality.summarize(runs)
    kd = summary["comparisons"]["kd"]["per_task"]
    assert summary["stats"]["kd"]["seg/mIoU"] == {"mean": 21.0, "std": pytest.approx(math.sqrt(2))}
    assert kd["seg/mIoU"]["delta"] == pytest.approx(10.0) and kd["seg/mIoU"]["beats_scratch"]
    assert kd["seg/mIoU"]["gap_closed"] == pytest.approx(10 / 20)          # (21 - 11) / (31 - 11)
    assert kd["det/mAP"]["delta"] == pytest.approx(1.0)                     # 6 - 5, std of kd = 0.707
    assert kd["det/mAP"]["beats_scratch"] and kd["det/mAP"]["gap_closed"] == pytest.approx(1 / 16)
    assert summary["comparisons"]["kd"]["mean_gap_closed"] == pytest.approx((0.5 + 1 / 16 + 10 / 30) / 3)
    paired = kd["det/mAP"]["paired"]  # seed 0: 5.5 - 5, seed 1: 6.5 - 5
    assert paired["deltas"] == pytest.approx([0.5, 1.5]) and paired["mean"] == pytest.approx(1.0)
    assert paired["std"] == pytest.approx(math.sqrt(0.5)) and paired["wins"] == 2
    assert "+1.00 ± 0.71 (2/2)" in quality.format_summary(summary, runs)
    runs["kd"][1] = fake_run(22, 3.5, 32)  # det: mean 4.5 < scratch: does not beat it
    summary = quality.summarize(runs)
    assert summary["comparisons"]["kd"]["per_task"]["det/mAP"]["paired"]["wins"] == 1
    assert not summary["comparisons"]["kd"]["per_task"]["det/mAP"]["beats_scratch"]
    assert not summary["comparisons"]["kd"]["beats_scratch_on_every_task"]
    assert "✗" in quality.format_summary(summary, runs)
    assert summary["keys"] == ["seg/mIoU", "det/mAP", "cls/top1"]  # the primary metrics, not seg/aAcc


def test_quality_keys_come_from_the_results_for_any_task():
    """A task of the user's own (here "edges") is compared like a built-in one; its key comes from "primary"."""
    def run(value: float, with_edges: bool = True) -> dict:
        metrics = {"seg/mIoU": value, "edges/F1": 2 * value, "edges/ODS": 0.0,
                   "primary": {"edges": "edges/F1", "seg": "seg/mIoU"} if with_edges else {"seg": "seg/mIoU"}}
        return {"val": metrics, "test": metrics, "seconds": None}

    runs = {"teacher": {0: run(30)}, "scratch": {0: run(10)}, "kd": {0: run(20)}}
    summary = quality.summarize(runs)
    assert summary["keys"] == ["edges/F1", "seg/mIoU"]  # the teacher's order
    assert summary["comparisons"]["kd"]["per_task"]["edges/F1"]["gap_closed"] == pytest.approx(0.5)
    assert "edges/F1 Δ (gap closed)" in quality.format_summary(summary, runs)
    assert common.quality_keys([{"primary": {"seg": "seg/mIoU"}}, {}, {"primary": {"b": "b/x", "seg": "seg/y"}}]) \
        == ["seg/mIoU", "b/x"]  # first record wins a task; a record without "primary" is skipped
    with pytest.raises(ValueError, match="tools/test.py --out"):
        common.quality_keys([{"seg/mIoU": 1.0}])


SPEC_TASKS = list(Config.fromfile(REPO / quality.SPECIALISTS_CONFIG).model.tasks)  # one specialist per task
PRIMARY4 = {**PRIMARY, "depth": "depth/delta1"}


def task_run(values: dict, seconds: float = 60.0) -> dict:
    """A run measured on the tasks of ``values`` only ({task: primary metric value})."""
    metrics = {PRIMARY4[t]: v for t, v in values.items()}
    metrics["primary"] = {t: PRIMARY4[t] for t in values}
    return {"val": metrics, "test": metrics, "seconds": seconds}


def test_quality_variants_name_their_teachers_configs_and_weightings():
    variants = quality.VARIANTS
    assert quality.DEFAULT_VARIANTS == ["teacher", "scratch", "kd", "kd+feat"]  # --seeds 0 1 2 means what it did
    assert quality.build_parser().parse_args([]).variants == quality.DEFAULT_VARIANTS
    assert [n for n in variants if n.startswith("teacher_")] == [f"teacher_{t}" for t in SPEC_TASKS]
    assert "depth" in SPEC_TASKS
    for task in SPEC_TASKS:
        teacher = variants[f"teacher_{task}"]
        assert teacher.config == f"configs/demo/teacher_{task}.py" and not teacher.teachers
        heads = Config.fromfile(REPO / teacher.config).model.heads
        assert [t for t, head in heads.items() if head is not None] == [task]  # heads.<t>=None drops a head
    spec = variants["kd_spec"]
    assert spec.teachers == {f"model.teachers.{t}_t.checkpoint": f"teacher_{t}" for t in SPEC_TASKS}
    assert quality.taught_by(spec) == {t: f"teacher_{t}" for t in SPEC_TASKS}
    assert quality.taught_by(variants["kd"]) == {t: "teacher" for t in SPEC_TASKS}
    assert quality.taught_by(variants["kd_mix"]) == {**{t: f"teacher_{t}" for t in SPEC_TASKS}, "cls": "teacher"}
    assert {v.config for n, v in variants.items() if n in ("kd+ls", "dkd_cwd", "crosskd")} == {
        "configs/demo/student_kd_ls.py", "configs/demo/student_dkd_cwd.py", "configs/demo/student_crosskd.py"}
    assert (variants["kd"].config, variants["kd_best+feat"].config) == ("configs/demo/student_kd_plain.py",
                                                                        "configs/demo/student_kd.py")
    best, best_feat = (Config.fromfile(REPO / variants[n].config).model for n in ("kd_best", "kd_best+feat"))
    assert best.tasks == best_feat.tasks and not best.get("feature_kd") and len(best_feat.feature_kd) == 4
    for name in ("kd", "kd+ls", "dkd_cwd", "crosskd"):  # ablations.py reuses these runs of quality.py's work dir
        prefix = ablations.QUALITY_RUNS[variants[name].config]
        assert quality.run_dir(Path("w"), name, 0).name == f"{prefix}_s0"
    assert quality.teacher_variants() == {"teacher", *[f"teacher_{t}" for t in SPEC_TASKS]}
    for name, variant in variants.items():
        cfg = Config.fromfile(REPO / variant.config).to_dict()
        assert ablations.option_errors(cfg, [f"{key}=x" for key in variant.teachers]) == [], name
        assert all(teacher in variants and not variants[teacher].teachers for teacher in variant.teachers.values())
    for base in ("kd", "kd_spec", "kd_mix"):
        for suffix, kind in (("unc", "UncertaintyWeighting"), ("dwa", "DWA")):
            learned = variants[f"{base}+{suffix}"]
            assert learned._replace(options=()) == variants[base]
            assert learned.options == (f"model.task_weighting.type={kind}",) and MODELS.get(kind) is not None
            tasks = Config.fromfile(REPO / learned.config).model.tasks
            assert all(spec.get("ratio", 1.0) == 1.0 for spec in tasks.values())  # a learned weighting needs 1
    assert quality.needed(["kd_spec+dwa"]) == [f"teacher_{t}" for t in SPEC_TASKS] + ["kd_spec+dwa"]


def test_quality_summary_of_specialists_against_a_hand_computation():
    runs = {"teacher": {0: task_run(dict(seg=30, det=20, cls=50, depth=70)),
                        1: task_run(dict(seg=32, det=22, cls=52, depth=72))},
            "scratch": {0: task_run(dict(seg=10, det=5, cls=20, depth=40)),
                        1: task_run(dict(seg=12, det=5, cls=22, depth=42))},
            **{f"teacher_{t}": {0: task_run({t: v}, 120.0), 1: task_run({t: v + 2}, 180.0)}
               for t, v in dict(seg=40, det=15, cls=60, depth=80).items()},
            "kd_spec": {0: task_run(dict(seg=20, det=6, cls=30, depth=50)),
                        1: task_run(dict(seg=24, det=4, cls=34, depth=52))}}
    summary = quality.summarize(runs)
    stats = summary["stats"]
    assert summary["keys"] == [PRIMARY4[t] for t in SPEC_TASKS]
    assert set(stats["teacher_seg"]) == {"seg/mIoU", "seeds"}  # measured on its own task only
    assert summary["references"] == {"specialists": {"from": {PRIMARY4[t]: f"teacher_{t}" for t in SPEC_TASKS},
                                                     "of": ["kd_spec"]}}
    assert stats["specialists"]["seg/mIoU"] == {"mean": 41.0, "std": pytest.approx(math.sqrt(2))}
    assert stats["specialists"]["det/mAP"]["mean"] == 16.0 and stats["specialists"]["seeds"] == [0, 1]
    comp = summary["comparisons"]["kd_spec"]
    assert comp["own_teachers"] == "specialists"
    seg, det = comp["per_task"]["seg/mIoU"], comp["per_task"]["det/mAP"]
    assert seg["delta"] == pytest.approx(11.0)                      # 22 - 11
    assert seg["gap_closed"] == pytest.approx(11 / 20)              # multi-task teacher: 31 - 11
    assert seg["own_gap_closed"] == pytest.approx(11 / 30)          # specialists: 41 - 11
    assert det["delta"] == pytest.approx(0.0) and not det["beats_scratch"] and det["paired"]["wins"] == 1
    assert det["own_gap_closed"] == pytest.approx(0.0) and det["own_teacher_gap"] == pytest.approx(11.0)  # 16 - 5
    own = [11 / 30, 0.0, 11 / 40, 10 / 40]                          # cls: 32 - 21 of 61 - 21; depth: 51 - 41 of 81 - 41
    assert comp["mean_own_gap_closed"] == pytest.approx(sum(own) / 4)
    assert comp["mean_gap_closed"] == pytest.approx((11 / 20 + 0.0 + 11 / 30 + 10 / 30) / 4)
    text = quality.format_summary(summary, runs, {"seeds": [0, 1], "teacher_seeds": [0],
                                                  "teacher_seed_of": {"0": 0, "1": 0}})
    lines = text.splitlines()
    assert "| teacher_seg | 2 | 41.00 ± 1.41 | - | - | - | 2.5 |" in lines  # (2 + 3 min) / 2
    assert "| specialists | 2 | 41.00 ± 1.41 | 16.00 ± 1.41 | 61.00 ± 1.41 | 81.00 ± 1.41 | 10.0 |" in lines
    assert lines.index("| specialists | 2 | 41.00 ± 1.41 | 16.00 ± 1.41 | 61.00 ± 1.41 | 81.00 ± 1.41 | 10.0 |") \
        == lines.index("| teacher_depth | 2 | - | - | - | 81.00 ± 1.41 | 2.5 |") + 1  # after the teachers
    assert "| kd_spec | specialists | 37% | 0% | 28% | 25% | 22% |" in lines
    assert "specialists: each task's metric from the teacher that teaches it to kd_spec (seg/mIoU: teacher_seg" in text
    assert "teachers: trained at seed 0 (--teacher-seeds 0); student seed -> teacher seed: 0 -> 0, 1 -> 0" in text


def fake_train_and_test(calls: list):
    """A train_and_test that records ``(work dir name, seed, options)`` and measures each config's own tasks."""
    def run(config, work_dir, data_root, options=(), seed=0, force=False):
        calls.append((Path(work_dir).name, seed, list(options)))
        heads = Config.fromfile(REPO / config).model.get("heads") or dict.fromkeys(SPEC_TASKS, {})  # a Distiller: all
        tasks = [t for t, head in heads.items() if head is not None]
        return task_run({t: 10.0 + seed for t in tasks})
    return run


def test_teacher_seeds_train_one_teacher_set_for_every_student_seed(tmp_path, tiny_synthetic, monkeypatch, capsys):
    calls: list = []
    monkeypatch.setattr(quality, "train_and_test", fake_train_and_test(calls))
    work, out = tmp_path / "w", tmp_path / "q.json"
    common_args = ["--variants", "scratch", "kd_spec", "--data", str(tiny_synthetic), "--work-dir", str(work),
                   "--teacher-options", "train_cfg.max_epochs=3"]
    assert quality.main(["--seeds", "0", "1", "--teacher-seeds", "0", "--out", str(out), *common_args]) == 0
    teachers = [f"teacher_{t}_s0" for t in SPEC_TASKS]
    assert [c[0] for c in calls] == [*teachers, "scratch_s0", "kd_spec_s0", "scratch_s1", "kd_spec_s1_t0"]
    for name, seed, options in calls:
        assert ("train_cfg.max_epochs=3" in options) == name.startswith("teacher_")  # --teacher-options
        if name.startswith("kd_spec"):  # each task from its specialist of seed 0, for both student seeds
            assert [o for o in options if o.startswith("model.teachers.")] == [
                f"model.teachers.{t}_t.checkpoint={work / f'teacher_{t}_s0' / 'best.pth'}" for t in SPEC_TASKS]
    payload = json.loads(out.read_text())["results"]
    assert payload["protocol"]["teacher_seeds"] == [0] and payload["protocol"]["teacher_seed_of"] == {"0": 0, "1": 0}
    assert list(payload["runs"]["teacher_seg"]) == ["0"] and list(payload["runs"]["kd_spec"]) == ["0", "1"]
    assert payload["runs"]["kd_spec"]["1"]["teacher_seed"] == 0
    assert payload["summary"]["stats"]["specialists"]["seeds"] == [0]
    assert "teachers: trained at seed 0 (--teacher-seeds 0)" in capsys.readouterr().out
    calls.clear()  # the default: each student seed from its own seed's teachers
    assert quality.main(["--seeds", "0", "1", "--out", str(out), *common_args]) == 0
    assert [c[0] for c in calls] == [*teachers, "scratch_s0", "kd_spec_s0",
                                     *[f"teacher_{t}_s1" for t in SPEC_TASKS], "scratch_s1", "kd_spec_s1"]
    assert json.loads(out.read_text())["results"]["protocol"]["teacher_seeds"] is None
    assert "each student distilled from the teachers trained at its own seed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        quality.main(["--seeds", "0", "1", "2", "--teacher-seeds", "0", "1", "--out", str(out), *common_args])
    assert "--teacher-seeds takes one seed or one per --seeds entry (3), got 2" in capsys.readouterr().err


GROUPS = ablations.load_groups()
KD_TASKS = list(Config.fromfile(REPO / ablations.KD_CONFIG).model.tasks)


def ablated_config(variant) -> Config:
    """The config an ablation variant trains, merged as tools/train.py merges --cfg-options."""
    config, options = variant
    cfg = Config.fromfile(REPO / config)
    cfg.merge_from_dict(parse_cfg_options(options))
    return cfg


def test_the_groups_file_builds_valid_options_and_per_task_covers_every_task():
    kd = Config.fromfile(REPO / ablations.KD_CONFIG).to_dict()
    for group, variants in GROUPS.items():
        for name, variant in variants.items():
            if variant is None:
                continue
            config, options = variant
            cfg = kd if config == ablations.KD_CONFIG else Config.fromfile(REPO / config).to_dict()
            assert ablations.option_errors(cfg, options) == [], (group, name)
            assert all(o.startswith("model.") for o in options), (group, name)
    assert list(GROUPS) == ["alpha", "det_alpha", "temperature", "per_task", "det_kd", "from_first_recipe",
                            "feature_kd"]  # README, "Ablations"
    assert "depth" in KD_TASKS  # the demo recipe has four tasks
    assert list(GROUPS["per_task"]) == ["scratch", *[f"{t} KD only" for t in KD_TASKS], "all tasks"]
    for task in KD_TASKS:
        config, options = GROUPS["per_task"][f"{task} KD only"]
        assert config == ablations.KD_CONFIG
        assert sorted(options) == sorted(f"model.tasks.{t}.alpha=0.0" for t in KD_TASKS if t != task)
    assert GROUPS["per_task"]["scratch"] is None and GROUPS["per_task"]["all tasks"] == (ablations.KD_CONFIG, [])


def test_option_errors_name_what_the_config_lacks():
    cfg = Config.fromfile(REPO / ablations.KD_CONFIG).to_dict()
    errors = ablations.option_errors(cfg, ["model.tasks.seg.alpha=0.1", "model.tasks.sge.alpha=0.1",
                                           "model.tasks.det.loss.normalise=mean", "model.feature_kd.0.weight=1"])
    assert len(errors) == 3
    assert "model.tasks has no 'sge'" in errors[0] and "'seg'" in errors[0]
    assert "model.tasks.det.loss has no 'normalise'" in errors[1] and "model has no 'feature_kd'" in errors[2]


def test_ablations_refuse_a_bad_groups_file_or_group_before_training(tmp_path, capsys):
    bad = tmp_path / "groups.py"
    bad.write_text('groups = dict(typo={"seg alpha": ["model.tasks.seg.alhpa=0.1"]}, per_task=None)\n')
    common_args = ["--work-dir", str(tmp_path / "w"), "--out", str(tmp_path / "o.json"), "--data", str(tmp_path)]
    for args, message in ((["--groups-file", str(bad)], "typo / 'seg alpha'"),
                          (["--groups", "nope"], "--groups nope: not in"),
                          (["--groups-file", str(tmp_path / "missing.py")], "config file not found")):
        with pytest.raises(SystemExit) as exit_info:
            ablations.main([*args, *common_args])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("group", list(GROUPS))
def test_every_ablation_option_changes_what_it_names_in_the_kd_config(group):
    recipe = ablated_config((ablations.KD_CONFIG, []))
    recipe_kd, recipe_losses = resolve_tasks(recipe.model.tasks.to_dict(), KD_TASKS)
    for variant, spec in GROUPS[group].items():
        if spec is None:  # the scratch reference
            continue
        cfg = ablated_config(spec)
        options = spec[1]
        task_kd, losses = resolve_tasks(cfg.model.tasks.to_dict(), KD_TASKS)
        feature_kd = [dict(f) for f in cfg.model.get("feature_kd", [])]
        changed = {task for task in losses if losses[task] != recipe_losses[task]}
        alphas = {t: kd.alpha for t, kd in task_kd.items()}
        assert alphas["depth"] == recipe_kd["depth"].alpha or variant.endswith("KD only")  # depth: the recipe's
        if group == "from_first_recipe":  # steps from the first recipe: alpha 0.5 + det mean -> the recipe
            high_alpha = variant.startswith("+ seg/cls") or variant.startswith("+ both")
            per_object = variant.startswith("+ det") or variant.startswith("+ both")
            assert alphas == {"seg": 0.9 if high_alpha else 0.5, "det": 0.5, "cls": 0.9 if high_alpha else 0.5,
                              "depth": 0.5}
            assert losses["det"]["normalize"] == ("teacher_objectness" if per_object else "mean")
        elif "alpha=" in variant:
            tasks = ("det",) if variant.startswith("det") else ("seg", "cls")
            value = float(variant.split("=")[1])
            assert alphas == {t: value if t in tasks else recipe_kd[t].alpha for t in recipe_kd} and not changed
        elif variant.startswith("T="):
            assert losses["seg"]["temperature"] == losses["cls"]["temperature"] == float(variant.split("=")[1])
        elif variant.endswith("KD only"):
            kept = variant.split()[0]
            assert {t for t, kd in task_kd.items() if kd.alpha > 0} == {kept}
        elif variant.startswith("plain MSE"):
            assert losses["det"]["objectness_weighted"] is False and changed == {"det"}
        elif variant.endswith("mean over locations"):
            assert losses["det"]["normalize"] == "mean" and changed == {"det"}
        elif variant.endswith("on logits"):
            assert losses["det"]["probabilities"] is False and changed == {"det"}
        elif variant.startswith("FitNets"):
            assert [f["loss"]["mode"] for f in feature_kd] == ["mse"] * 4 and task_kd == recipe_kd
        elif variant.startswith("PKD"):
            assert [f["loss"]["mode"] for f in feature_kd] == ["pearson"] * 4 and task_kd == recipe_kd
        else:  # the recipe itself, under the group's name for it
            assert options == [] and task_kd == recipe_kd and not changed and not feature_kd
    if group == "det_kd":  # what the det variants change from: the recipe's det KD
        det = recipe_losses["det"]
        assert det["objectness_weighted"] and det["probabilities"] and det["normalize"] == "teacher_objectness"


@pytest.mark.parametrize("script", [quality, ablations])
def test_a_data_root_without_the_splits_is_a_usage_error_not_a_new_set(script, tmp_path, capsys):
    missing = tmp_path / "typo"
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--data", str(missing), "--work-dir", str(tmp_path / "w"), "--out", str(tmp_path / "o.json")])
    assert exit_info.value.code == 2
    assert f"--data {missing}: no annotations/instances_train.json" in capsys.readouterr().err
    assert not missing.exists()  # nothing generated in its place


def test_bench_data_of_another_synthetic_version_is_made_again(tmp_path, monkeypatch):
    from mtkd.data import synthetic

    made = []
    monkeypatch.setattr(common, "run_tool", lambda args, log=None: made.append(args))
    current = synthetic.SYNTHETIC_VERSION
    ann = tmp_path / "annotations" / "instances_test.json"
    common.ensure_bench_data(tmp_path)  # missing: made
    ann.parent.mkdir(parents=True)
    ann.write_text(json.dumps({"info": {"version": current}, "images": []}))
    common.ensure_bench_data(tmp_path)  # this version: kept
    ann.write_text(json.dumps({"info": {"version": current + 1}, "images": []}))
    common.ensure_bench_data(tmp_path)  # another version: made again
    ann.write_text(json.dumps({"images": []}))  # written before sets had a version: 1
    common.ensure_bench_data(tmp_path)
    assert len(made) == 3 - (current == 1) and all("--num-test" in args for args in made)


def test_a_killed_run_is_not_reused_and_is_set_aside(tmp_path):
    run = tmp_path / "kd_s0"
    run.mkdir()
    (run / "best.pth").write_bytes(b"epoch 3")  # a killed run keeps the best.pth of an early epoch
    (run / "log.txt").write_text("2026-12-01 INFO epoch 4/12 iter 10/125 loss 1.0\n")
    assert not common.finished(run)
    (tmp_path / "kd_s0.log").write_text("$ tools/train.py ...\n")
    common.set_aside_unfinished(run)
    assert not run.exists() and (tmp_path / "kd_s0.unfinished" / "best.pth").read_bytes() == b"epoch 3"
    assert (tmp_path / "kd_s0.unfinished.log").is_file() and not (tmp_path / "kd_s0.log").exists()
    run.mkdir()
    (run / "best.pth").write_bytes(b"epoch 12")
    (run / "log.txt").write_text("2026-12-01 INFO done: best 35.8 at epoch 12; checkpoints in kd_s0\n")
    assert common.finished(run)


def test_quality_and_ablation_runs_end_to_end(tmp_path, tiny_synthetic, monkeypatch):
    work = tmp_path / "quality"
    out = tmp_path / "quality.json"
    assert quality.main(["--seeds", "0", "--variants", "scratch", "kd", "--data", str(tiny_synthetic),
                         "--work-dir", str(work), "--out", str(out), "--epochs", "1", "--cfg-options", *TINY,
                         "--teacher-options", "train_cfg.max_epochs=2"]) == 0
    payload = json.loads(out.read_text())
    assert set(payload["results"]["runs"]) == {"teacher", "scratch", "kd"}  # the teacher is trained for kd
    assert payload["machine"]["logical_cores"] >= 1 and payload["command"].startswith("python benchmarks/quality.py")
    run = payload["results"]["runs"]["kd"]["0"]
    saved = json.loads((work / "kd_s0" / "test_metrics.json").read_text())
    assert run["test"]["det/mAP"] == saved["det/mAP"] and run["test"]["split"] == "test"
    config = Config.fromfile(work / "kd_s0" / "config.py")
    assert config.model.teacher_checkpoint == str(work / "teacher_s0" / "best.pth")
    assert config.train_cfg.max_epochs == 1  # --teacher-options reach the teacher only
    assert Config.fromfile(work / "teacher_s0" / "config.py").train_cfg.max_epochs == 2
    assert "kd" in payload["results"]["summary"]["comparisons"]
    primary = json.loads((work / "teacher_s0" / "test_metrics.json").read_text())["primary"]
    assert list(primary) == KD_TASKS  # the demo's four tasks, depth included
    assert payload["results"]["summary"]["keys"] == list(primary.values())
    assert set(payload["results"]["summary"]["comparisons"]["kd"]["per_task"]) == set(primary.values())
    mtime = (work / "kd_s0" / "best.pth").stat().st_mtime_ns
    assert quality.main(["--seeds", "0", "--variants", "kd", "--data", str(tiny_synthetic), "--work-dir", str(work),
                         "--out", str(tmp_path / "again.json"), "--epochs", "1", "--cfg-options", *TINY]) == 0
    again = json.loads((tmp_path / "again.json").read_text())["results"]["runs"]["kd"]["0"]
    assert (work / "kd_s0" / "best.pth").stat().st_mtime_ns == mtime  # reused, not retrained
    assert again["seconds"] == run["seconds"] > 0 and again["test"] == run["test"]  # with its training time
    stale = work / "kd_s0" / "test_metrics.json"  # as if measured on a test split of another size
    stale.write_text(json.dumps({**saved, "num_images": 999, "det/mAP": -1.0}))
    assert quality.main(["--seeds", "0", "--variants", "kd", "--data", str(tiny_synthetic), "--work-dir", str(work),
                         "--out", str(tmp_path / "again.json"), "--epochs", "1", "--cfg-options", *TINY]) == 0
    retested = json.loads(stale.read_text())
    assert retested["num_images"] == common.split_size(tiny_synthetic, "test") == 8
    assert retested["det/mAP"] == saved["det/mAP"]  # measured again, not the stale number
    stale.write_text(json.dumps({k: v for k, v in saved.items() if k != "primary"}))  # from before "primary"
    assert quality.main(["--seeds", "0", "--variants", "kd", "--data", str(tiny_synthetic), "--work-dir", str(work),
                         "--out", str(tmp_path / "again.json"), "--epochs", "1", "--cfg-options", *TINY]) == 0
    assert json.loads(stale.read_text())["primary"] == saved["primary"]  # tested again
    # several teachers, shared runs: kd_spec+unc with seg and cls from their specialists (trained here for it),
    # det and depth from the multi-task teacher above (reused), a learned task weighting on top
    spec = quality.VARIANTS["kd_spec+unc"]
    mixed = {key: teacher if teacher in ("teacher_seg", "teacher_cls") else "teacher"
             for key, teacher in spec.teachers.items()}
    monkeypatch.setitem(quality.VARIANTS, "kd_spec+unc", spec._replace(teachers=mixed))
    out = tmp_path / "spec.json"
    assert quality.main(["--seeds", "0", "--variants", "scratch", "kd_spec+unc", "--data", str(tiny_synthetic),
                         "--work-dir", str(work), "--out", str(out), "--epochs", "1", "--cfg-options", *TINY]) == 0
    results = json.loads(out.read_text())["results"]
    assert list(results["runs"]) == ["teacher", "scratch", "teacher_seg", "teacher_cls", "kd_spec+unc"]
    assert results["runs"]["teacher"]["0"]["test"] == payload["results"]["runs"]["teacher"]["0"]["test"]  # reused
    student = Config.fromfile(work / "kd_spec_unc_s0" / "config.py").model
    assert {name: t.checkpoint for name, t in student.teachers.items()} == {
        key.split(".")[2]: str(work / f"{teacher}_s0" / "best.pth") for key, teacher in mixed.items()}
    assert student.task_weighting.type == "UncertaintyWeighting"
    assert results["runs"]["teacher_seg"]["0"]["test"]["primary"] == {"seg": "seg/mIoU"}  # its one task
    stats = results["summary"]["stats"]
    assert set(stats["teacher_cls"]) == {"cls/top1", "seeds"}
    row = "teachers of kd_spec+unc"  # not "specialists": the multi-task teacher teaches two of its tasks
    assert results["summary"]["references"][row]["from"] == {
        primary[t]: mixed[f"model.teachers.{t}_t.checkpoint"] for t in KD_TASKS}
    assert stats[row]["seg/mIoU"] == stats["teacher_seg"]["seg/mIoU"]
    assert stats[row]["det/mAP"] == stats["teacher"]["det/mAP"]
    comparison = results["summary"]["comparisons"]["kd_spec+unc"]
    assert comparison["own_teachers"] == row and set(comparison["per_task"]) == set(primary.values())
    # --report-only trains nothing: seed 1 has no runs yet (not even its teacher), so they are listed and left out
    out = tmp_path / "report.json"
    assert quality.main(["--seeds", "0", "1", "--variants", "scratch", "kd", "--report-only", "--data",
                         str(tiny_synthetic), "--work-dir", str(work), "--out", str(out)]) == 0
    report = json.loads(out.read_text())["results"]
    left_out = [(work / f"{name}_s1").as_posix() for name in ("teacher", "scratch", "kd")]
    assert report["protocol"]["not_finished"] == left_out
    assert not (work / "scratch_s1").exists() and not (work / "kd_s1").exists()
    assert {name: list(by_seed) for name, by_seed in report["runs"].items()} == {
        "teacher": ["0"], "scratch": ["0"], "kd": ["0"]}
    assert report["runs"]["kd"]["0"]["test"]["det/mAP"] == saved["det/mAP"]
    out = tmp_path / "ablations.json"
    assert ablations.main(["--groups", "det_kd", "--data", str(tiny_synthetic), "--quality-dir", str(work),
                           "--work-dir", str(tmp_path / "abl"), "--out", str(out), "--epochs", "1",
                           "--cfg-options", *TINY]) == 0
    runs = json.loads(out.read_text())["results"]["runs"]["det_kd"]
    assert set(runs) == set(GROUPS["det_kd"])
    assert runs["objectness-weighted, per teacher object"]["0"]["test"] == run["test"]  # quality's kd run, reused
    ablated = {name: Config.fromfile(tmp_path / "abl" / f"{name}_s0" / "config.py").model.tasks.det.loss
               for name in ("det.loss.objectness_weighted-False", "det.loss.normalize-mean")}
    assert not ablated["det.loss.objectness_weighted-False"].objectness_weighted
    assert ablated["det.loss.normalize-mean"].normalize == "mean"
    assert Config.fromfile(tmp_path / "abl" / "det.loss.normalize-mean_s0" / "config.py").train_cfg.max_epochs == 1
    tables = ablations.format_tables(json.loads(out.read_text())["results"]["summary"])
    assert "| variant | " + " | ".join(primary.values()) + " |" in tables


def test_cost_measures_params_against_a_direct_count_and_positive_speeds(monkeypatch):
    monkeypatch.chdir(REPO)
    row = cost.measure_model("configs/demo/student_scratch.py", torch.device("cpu"), batch_size=2, repeats=2,
                             warmup=1)
    cfg = Config.fromfile(REPO / "configs/demo/student_scratch.py")
    counts, reason = data_class_counts(cfg)  # the config's data, or the synthetic set's classes and why
    assert row["num_classes"] == counts and len(row["notes"]) == (reason is not None)
    assert row["tasks"] == list(cfg.model.heads) and "depth" in row["tasks"]
    model = MODELS.build(cfg.model, num_classes=counts)
    assert row["params"] == sum(p.numel() for p in model.parameters())
    assert row["latency_ms"] > 0 and row["throughput"] > 0 and len(row["latency_ms_all"]) == 2
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        assert row["ort_latency_ms"] > 0 and row["ort_throughput"] > 0 and len(row["ort_latency_ms_all"]) == 2
        assert row["ort_note"] is None and row["ort_threads"] == torch.get_num_threads()
    ratio = cost.ratios({"params": 10, "gflops": 4.0, "latency_ms": 8.0, "throughput": 5.0},
                        {"params": 2, "gflops": 1.0, "latency_ms": 2.0, "throughput": 20.0})
    assert ratio == {"params": 5.0, "gflops": 4.0, "latency": 4.0, "throughput": 4.0,
                     "ort_latency": None, "ort_throughput": None}
    ratio = cost.ratios({"params": 10, "gflops": 4.0, "latency_ms": 8.0, "throughput": 5.0, "ort_latency_ms": 6.0,
                         "ort_throughput": 10.0},
                        {"params": 2, "gflops": 1.0, "latency_ms": 2.0, "throughput": 20.0, "ort_latency_ms": 1.0,
                         "ort_throughput": 30.0})
    assert ratio["ort_latency"] == 6.0 and ratio["ort_throughput"] == 3.0


def test_cost_says_so_when_onnxruntime_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # import onnxruntime -> ImportError
    model = MODELS.build(Config.fromfile(REPO / "configs/demo/student_scratch.py").model, num_classes=CLASSES)
    row = {"input_size": [64, 64], "params": 1, "gflops": 1.0, "latency_ms": 1.0, "throughput": 1.0, "notes": [],
           **cost.measure_ort(model, (64, 64), batch_size=2, repeats=1, warmup=0)}
    assert row["ort_latency_ms"] is None and "pip install -e '.[onnx]'" in row["ort_note"]
    table = cost.format_table({"demo": {"teacher": row, "student": row, "ratio": cost.ratios(row, row)}}, "cpu")
    assert table.count("n/a (onnxruntime not installed)") == 4 and "ORT latency b=1" in table


def test_overhead_times_all_three_steps_and_the_loader(tmp_path, tiny_synthetic):
    out = tmp_path / "overhead.json"
    assert overhead.main(["--data", str(tiny_synthetic), "--steps", "2", "--warmup", "0", "--loader-batches", "2",
                          "--out", str(out), "--cfg-options", "train_dataloader.batch_size=4",
                          "train_dataloader.num_workers=0"]) == 0
    results = json.loads(out.read_text())["results"]
    seconds = results["seconds"]
    assert results["overhead_ratio"] == pytest.approx(
        seconds["distill_step"] / (seconds["teacher_forward"] + seconds["student_step"]))
    assert all(len(v) == 2 for v in results["seconds_all"].values())
    rounds = results["seconds_all"]
    per_round = [a / (b + c) for a, b, c in zip(rounds["distill_step"], rounds["teacher_forward"],
                                                rounds["student_step"])]
    assert results["overhead_ratio_paired"]["median"] == pytest.approx(sum(per_round) / 2)  # median of two
    assert results["overhead_ratio_paired"]["q25"] <= results["overhead_ratio_paired"]["q75"]
    assert results["loader_images_per_s"] > 0 and 0 <= results["loop"]["wait_fraction"] <= 1
    assert results["tasks"] == KD_TASKS


def test_overhead_with_several_teachers_times_1_vs_n_and_their_peak_memory(tmp_path, tiny_synthetic):
    out = tmp_path / "overhead_teachers.json"
    specialists = [f"configs/demo/teacher_{task}.py" for task in KD_TASKS]
    assert overhead.main(["--data", str(tiny_synthetic), "--steps", "2", "--warmup", "0", "--memory-steps", "1",
                          "--teacher-configs", *specialists, "--out", str(out), "--cfg-options",
                          "train_dataloader.batch_size=2", "train_dataloader.num_workers=0"]) == 0
    results = json.loads(out.read_text())["results"]
    assert results["taught_by"] == {task: f"teacher_{task}" for task in KD_TASKS}
    for key in ("one_teacher", "n_teachers"):
        seconds = results[key]["seconds"]
        assert results[key]["overhead_ratio"] == pytest.approx(
            seconds["distill_step"] / (seconds["teacher_forward"] + seconds["student_step"]))
        assert all(len(v) == 2 for v in results[key]["seconds_all"].values())
    assert results["one_teacher"]["seconds_all"]["student_step"] == results["n_teachers"]["seconds_all"]["student_step"]
    memory = results["memory"]
    assert memory["student_only"]["params"] < memory["one_teacher"]["params"] < memory["n_teachers"]["params"]
    assert all(m["peak_rss_mib"] > 0 for m in memory.values())


def test_overhead_refuses_a_config_that_is_not_a_distiller(capsys):
    with pytest.raises(SystemExit):
        overhead.main(["--config", "configs/demo/student_scratch.py"])
    assert "expected a Distiller" in capsys.readouterr().err


def _fake_checkpoint(path: Path, config: str, data_root: Path) -> list[str]:
    cfg = Config.fromfile(REPO / config)
    cfg.merge_from_dict({"val_dataloader.dataset.data_root": str(data_root)})
    model_cfg = cfg.model.to_dict()
    model_cfg = model_cfg.get("student", model_cfg)
    model = MODELS.build(model_cfg, num_classes=CLASSES)
    names = {task: [f"{task}-{k}" for k in range(n)] for task, n in CLASSES.items()}
    save_checkpoint({"state_dict": model.state_dict(), "model_config": model_cfg, "num_classes": CLASSES,
                     "config": cfg.to_dict(), "class_names": names}, path / "best.pth")
    return list(model.tasks)


FAKE_PRIMARY = {"seg": "seg/mIoU", "det": "det/mAP", "cls": "cls/top1", "depth": "depth/delta1"}


def _fake_run(folder: Path, config: str, data_root: Path) -> None:
    folder.mkdir()
    assert _fake_checkpoint(folder, config, data_root) == list(FAKE_PRIMARY)
    lines = [{"epoch": e, "iter": 4 * e, "seg/mIoU": 10.0 + e, "seg/aAcc": 50.0, "det/mAP": 1.0 * e, "cls/top1": 20.0,
              "depth/delta1": 30.0 + e, "depth/AbsRel": None, "train/seg/ce": 1.0 / e, "train/det/box": 1.0,
              "train/det/obj": 1.0, "train/det/cls": 1.0, "train/cls/ce": 2.0, "train/depth/silog": 0.5,
              "train/seg/hard": 1.0, "train/seg/soft": 0.1, "train/seg/total": 0.2, "train/loss": 9.0,
              "train/feat/0": 0.3, "train/lr": 1e-3} for e in (1, 2)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "val_metrics.json").write_text(json.dumps({"seg/mIoU": 11.0, "primary": FAKE_PRIMARY}))


def test_plots_write_curves_and_predictions(tmp_path, tiny_synthetic):
    pytest.importorskip("matplotlib")
    from PIL import Image
    for name, config in (("teacher", "configs/demo/teacher.py"), ("scratch", "configs/demo/student_scratch.py"),
                         ("kd", "configs/demo/student_kd_plain.py")):
        _fake_run(tmp_path / f"{name}_s0", config, tiny_synthetic)
    data = plots.curves(tmp_path, "scratch")
    assert list(data) == ["train/seg/ce", "train/det/box", "train/det/obj", "train/det/cls", "train/cls/ce",
                          "train/depth/silog", "seg/mIoU", "det/mAP", "cls/top1", "depth/delta1"]
    assert data["train/seg/ce"] == ([1, 2], [[1.0, 0.5]])
    assert math.isnan(plots.curves(tmp_path, "scratch", ["depth/AbsRel"])["depth/AbsRel"][1][0][0])  # null: NaN
    widths = []
    for with_feature_kd in (False, True):  # the feature-KD run is optional: drawn once it exists
        if with_feature_kd:
            _fake_run(tmp_path / "kd_feat_s0", "configs/demo/student_kd_feat.py", tiny_synthetic)
        out_dir = tmp_path / f"png{int(with_feature_kd)}"
        assert plots.main(["--quality-dir", str(tmp_path), "--num-images", "2", "--out-dir", str(out_dir)]) == 0
        for name in ("curves.png", "predictions.png"):
            with Image.open(out_dir / name) as image:
                assert image.size[0] > 400 and image.size[1] > 300
        with Image.open(out_dir / "predictions.png") as image:
            widths.append(image.size[0])
    assert widths[1] > widths[0] * 1.15  # one more column: 5 panels instead of 4
    with pytest.raises(FileNotFoundError, match="quality.py"):
        plots.curves(tmp_path, "missing")


def test_predictions_draw_ground_truth_and_each_task_through_the_drawers(tmp_path, tiny_synthetic, monkeypatch):
    from mtkd import visualization

    for name, config in (("teacher", "configs/demo/teacher.py"), ("scratch", "configs/demo/student_scratch.py"),
                         ("kd", "configs/demo/student_kd_plain.py")):
        _fake_run(tmp_path / f"{name}_s0", config, tiny_synthetic)
    drawn: list[tuple[str, str]] = []
    drawers = visualization.build_drawers(Config.fromfile(REPO / "configs/demo/teacher.py").drawers,
                                          list(FAKE_PRIMARY))
    for cls in {type(d) for d in drawers.values()}:
        for kind in ("draw", "draw_target"):
            monkeypatch.setattr(cls, kind, _recorded(cls.__dict__[kind], kind, drawn))
    plots.plot_predictions(tmp_path, 0, 2, 0.9, tmp_path / "p.png")
    targets = {task for kind, task in drawn if kind == "draw_target"}
    predictions = [task for kind, task in drawn if kind == "draw"]
    assert targets == set(FAKE_PRIMARY)  # the tiny set has ground truth for every task
    assert sorted(predictions) == sorted(list(FAKE_PRIMARY) * 2 * 3)  # 2 images x 3 runs x every task
    assert (tmp_path / "p.png").is_file()


def _recorded(method, kind: str, drawn: list):
    """A drawer method that notes ``(kind, task)`` in ``drawn`` and then draws (a call from within another
    drawer method, e.g. ``draw_target`` drawing the label map with ``draw``, is not noted)."""
    def wrapper(self, image, value):
        nested = getattr(self, "_drawing", False)
        if not nested:
            drawn.append((kind, self.task))
        self._drawing = True
        try:
            return method(self, image, value)
        finally:
            self._drawing = nested
    return wrapper


def _logged_run(folder: Path, config: str, records: list[dict]) -> None:
    folder.mkdir()
    Config.fromfile(REPO / config).dump(folder / "config.py")
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_loss_scales_reads_each_task_hard_and_soft_and_the_soft_share(tmp_path, capsys):
    from benchmarks import loss_scales

    _logged_run(tmp_path / "scratch_s0", "configs/demo/student_scratch.py", [{"epoch": 1, "train/seg/ce": 1.0}])
    for seed, soft in ((0, 0.2), (1, 0.4)):
        _logged_run(tmp_path / f"kd_s{seed}", "configs/demo/student_kd_plain.py", [
            {"epoch": 1, "train/seg/hard": 9.0, "train/seg/soft": 9.0},
            {"epoch": 2, "train/seg/hard": 1.0, "train/seg/soft": soft, "train/det/hard": 4.0, "train/det/soft": 1.0,
             "train/feat/0": None}])
    _logged_run(tmp_path / "kd_feat_s1_t0", "configs/demo/student_kd_feat.py", [
        {"epoch": 3, "train/cls/hard": 2.0, "train/cls/soft": 0.5, "train/feat/0": 0.25, "train/feat/3": 0.5}])
    out = tmp_path / "scales.json"
    assert loss_scales.main(["--work-dir", str(tmp_path), "--out", str(out)]) == 0
    summary = json.loads(out.read_text())["results"]["runs"]
    assert list(summary) == ["kd", "kd_feat"]  # the scratch run has no soft loss
    kd = summary["kd"]
    assert kd["seeds"] == [0, 1] and kd["epoch"] == [2] and kd["feature_kd"] is None
    shares = [0.9 * s / (0.1 * 1.0 + 0.9 * s) for s in (0.2, 0.4)]  # seg alpha 0.9 in student_kd_plain.py
    assert kd["seg"]["soft"] == pytest.approx([0.3, math.sqrt(0.02)])
    assert kd["seg"]["soft_share"][0] == pytest.approx(sum(shares) / 2) and kd["seg"]["alpha"] == 0.9
    assert kd["det"]["soft_share"][0] == pytest.approx(0.5 * 1.0 / (0.5 * 4.0 + 0.5 * 1.0))  # det alpha 0.5
    assert "cls" not in kd and summary["kd_feat"]["feature_kd"] == [0.75, 0.0]
    assert "| kd | 2 | 2 | 1.000 / 0.300 (" in capsys.readouterr().out
    assert loss_scales.main(["--work-dir", str(tmp_path), "--runs", "kd", "--epoch", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["results"]["runs"]["kd"]["seg"]["soft"] == [9.0, 0.0]
    with pytest.raises(SystemExit):
        loss_scales.main(["--work-dir", str(tmp_path), "--runs", "kd_ls", "--out", str(out)])
    assert "no distilled run named kd_ls" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        loss_scales.main(["--work-dir", str(tmp_path), "--runs", "kd_feat", "--epoch", "1", "--out", str(out)])
    assert "no epoch 1 (epochs 3-3)" in capsys.readouterr().err
