"""Task weightings (#16): Fixed = the former totals bit for bit, Uncertainty (Kendall et al. 2018) and DWA
(Liu et al. 2019) against their formulas, their state, DDP, and training with each (plain model, Distiller)."""
import json
import math

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from mtkd.checkpoint import load_checkpoint
from mtkd.engine.optim import build_optimizer, trainable_parameters
from mtkd.models import DWA, FixedWeighting, MultiTaskModel, UncertaintyWeighting
from mtkd.models.task_weighting import build_task_weighting
from tests.test_distiller import STUDENT
from tests.test_distiller import TASKS as KD_TASKS
from tests.test_distiller import build, make_batch, teacher_ckpt  # noqa: F401  (a fixture)
from tests.test_multitask import BACKBONES, CLASSES, HEADS, batch_for
from tests.test_trainer import run_train, teacher_run, tiny_config  # noqa: F401  (a fixture)
from tools import test as test_tool

TASKS = ("seg", "det", "cls")
WEIGHTINGS = ("FixedWeighting", "UncertaintyWeighting", "DWA")


def make(task_weighting=None):
    """A tiny seg + det + cls MultiTaskModel with ``task_weighting``."""
    return MultiTaskModel(backbone=BACKBONES["seed"], neck=dict(type="FPN", out_channels=16),
                          heads={t: HEADS[t] for t in TASKS}, num_classes=CLASSES, task_weighting=task_weighting)


def task_losses(values, requires_grad=False):
    return {t: torch.tensor(float(v), requires_grad=requires_grad) for t, v in zip(TASKS, values)}


# -- FixedWeighting: today's totals ------------------------------------------------------------------------
def test_fixed_weighting_is_the_former_running_sum_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    ratios = {"seg": 1.0, "det": 2.0, "cls": 0.3}
    weighting = FixedWeighting(TASKS, ratios)
    for _ in range(200):
        losses = {t: torch.rand((), generator=gen) * 10 ** torch.randint(-2, 3, (), generator=gen) for t in TASKS}
        former = torch.zeros(())
        for task in TASKS:   # the Distiller's sum before task weightings
            former = former + ratios[task] * losses[task]
        assert torch.equal(torch.zeros(()) + weighting(losses), former)
    assert weighting.weights() == ratios and FixedWeighting(TASKS).weights() == dict.fromkeys(TASKS, 1.0)
    assert not list(weighting.state_dict())   # nothing to save: old checkpoints load strictly


@pytest.mark.parametrize("labelled", [("seg", "det", "cls"), ("seg", "cls")])
def test_the_distillers_default_total_is_the_former_one_bit_for_bit(teacher_ckpt, labelled):  # noqa: F811
    tasks = {t: c for t, c in KD_TASKS.items() if t != "det" or len(labelled) == 3}   # then det: hard only
    distiller = build(teacher_ckpt, tasks=tasks).train()
    losses = distiller(make_batch(tasks=labelled))
    former = torch.zeros(())
    for task in TASKS:
        former = former + distiller.task_kd[task].ratio * losses[f"{task}/total"]
    assert torch.equal(losses["loss"], former)
    losses["loss"].backward()   # a task with neither labels nor a teacher still reaches its head (DDP)
    assert all(p.grad is not None for p in distiller.student.heads["det"].parameters())


def test_a_plain_models_default_gradients_are_the_former_ones_bit_for_bit():
    """The total is grouped by task now; its value may differ from the former flat sum in the last bit,
    but every term's gradient is exactly 1 either way, so training is the same."""
    torch.manual_seed(0)
    model = make().train()
    batch = batch_for(("seg", "det"))   # cls unlabelled: a zero term
    losses = model.forward_loss(batch)
    losses["loss"].backward()
    new = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    outputs = model(batch["img"])
    terms = model.loss(outputs, batch)
    former = torch.stack(list(terms.values())).sum() + outputs["cls"].sum() * 0.0
    former.backward()
    torch.testing.assert_close(losses["loss"], former, rtol=1e-6, atol=0)
    for name, param in model.named_parameters():
        assert torch.equal(param.grad, new[name]), name


# -- UncertaintyWeighting --------------------------------------------------------------------------------
def test_uncertainty_total_and_gradients_follow_the_formula():
    weighting = UncertaintyWeighting(TASKS)
    s = [0.5, -1.0, 2.0]
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor(s))
    losses = task_losses([0.7, 3.0, 0.2], requires_grad=True)
    present = {t: losses[t] for t in ("seg", "det")}   # cls has no labels in this batch
    total = weighting(present)
    expected = sum(math.exp(-s[i]) * losses[t].item() + s[i] for i, t in enumerate(("seg", "det")))
    assert total.item() == pytest.approx(expected, rel=1e-6)
    total.backward()
    # d/ds_t = 1 - exp(-s_t) L_t;  d/dL_t = exp(-s_t);  an absent task: a zero gradient, not none (DDP)
    hand = [1 - math.exp(-0.5) * 0.7, 1 - math.exp(1.0) * 3.0, 0.0]
    assert weighting.log_vars.grad.tolist() == pytest.approx(hand, rel=1e-6)
    assert losses["seg"].grad.item() == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert weighting.weights() == pytest.approx({t: math.exp(-v) for t, v in zip(TASKS, s)}, rel=1e-6)


def test_uncertainty_log_variances_are_in_the_optimizer_without_decay_and_trained():
    torch.manual_seed(0)
    model = make(task_weighting=dict(type="UncertaintyWeighting"))
    params = trainable_parameters(model)
    assert any(p is model.task_weighting.log_vars for p in params)
    optimizer = build_optimizer(dict(type="AdamW", lr=0.1, weight_decay=0.05), params)
    group = next(g for g in optimizer.param_groups if any(p is model.task_weighting.log_vars for p in g["params"]))
    assert group["weight_decay"] == 0.0
    losses = model.train().forward_loss(batch_for(TASKS))
    losses["loss"].backward()
    optimizer.step()
    task_loss = {t: sum(v.item() for k, v in losses.items() if k.startswith(f"{t}/")) for t in TASKS}
    for i, task in enumerate(TASKS):   # Adam's first step: s_t moves by lr against the sign of 1 - L_t
        step = model.task_weighting.log_vars[i].item()
        assert step == pytest.approx(0.1 if task_loss[task] > 1 else -0.1, rel=1e-3), task
    assert "task_weighting.log_vars" in model.state_dict()


# -- DWA ---------------------------------------------------------------------------------------------------
EPOCHS = [(2.0, 4.0, 1.0), (1.0, 3.0, 0.9), (0.8, 2.7, 0.45)]   # each task's mean loss per epoch


def dwa_hand(before, last, temperature=2.0):
    exps = [math.exp(b / a / temperature) for a, b in zip(before, last)]
    return {t: len(TASKS) * e / sum(exps) for t, e in zip(TASKS, exps)}


def feed_epoch(dwa, values, scales=(0.5, 1.5)):
    """Steps whose losses average ``values``; checks each step's total against sum_t w_t L_t."""
    for scale in scales:
        losses = task_losses([v * scale for v in values])
        expected = sum(dwa.weights()[t] * losses[t].item() for t in TASKS)
        assert dwa(losses).item() == pytest.approx(expected, rel=1e-6)


def test_dwa_weights_follow_the_loss_ratios_of_the_last_two_epochs():
    dwa = DWA(TASKS).train()
    seen = []
    for values in EPOCHS:
        seen.append(dwa.weights())
        feed_epoch(dwa, values)
        dwa.epoch_end()
    assert seen[0] == seen[1] == dict.fromkeys(TASKS, 1.0)   # the first two epochs
    assert seen[2] == pytest.approx(dwa_hand(EPOCHS[0], EPOCHS[1]), rel=1e-6)
    assert dwa.weights() == pytest.approx(dwa_hand(EPOCHS[1], EPOCHS[2]), rel=1e-6)
    assert sum(seen[2].values()) == pytest.approx(3.0)
    # the task whose loss fell least (cls: 0.9 of the epoch before) gets the largest weight
    assert max(seen[2], key=seen[2].get) == "cls"
    dwa.eval()
    before = dwa.state_dict()["_extra_state"].clone()
    dwa(task_losses(EPOCHS[0]))   # evaluation-mode calls are not counted
    assert torch.equal(dwa.state_dict()["_extra_state"], before)


def test_dwa_state_dict_round_trip_mid_epoch_is_exact():
    dwa = DWA(TASKS, temperature=1.5).train()
    for values in EPOCHS[:2]:
        feed_epoch(dwa, values)
        dwa.epoch_end()
    feed_epoch(dwa, EPOCHS[2], scales=(0.5,))   # half of epoch 3
    copy = DWA(TASKS, temperature=1.5).train()
    copy.load_state_dict(dwa.state_dict())
    assert copy.weights() == dwa.weights() and copy.history == dwa.history
    for module in (dwa, copy):
        feed_epoch(module, EPOCHS[2], scales=(1.5,))
        module.epoch_end()
    assert copy.weights() == dwa.weights() and copy.weights() != dict.fromkeys(TASKS, 1.0)
    with pytest.raises(ValueError, match="does not fit 2 tasks"):
        DWA(("seg", "det")).load_state_dict(dwa.state_dict())
    moved = copy.to("meta")   # .to(device) moves the running sums with the module (the EMA copy's match)
    assert moved._sums.device.type == moved.state_dict()["_extra_state"].device.type == "meta"
    assert moved._sums.dtype == torch.float64


def dwa_worker(rank, init_file, out_dir):
    """Rank r sees losses scaled by (1 + r) and a different number of cls steps; a checkpoint sync mid-epoch."""
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    dwa = DWA(TASKS).train()
    for epoch, values in enumerate(EPOCHS):
        for step in range(2):
            losses = task_losses([v * (1 + rank) * (1 + step) for v in values])
            if rank == 1 and step == 1:
                del losses["cls"]
            dwa(losses)
            if epoch == 1 and step == 0:
                dwa.sync()
        dwa.epoch_end()
    (out_dir / f"rank{rank}.json").write_text(json.dumps(dwa.weights()))
    torch_dist.destroy_process_group()


def test_dwa_under_ddp_averages_every_ranks_steps_and_all_ranks_agree(tmp_path):
    mp.spawn(dwa_worker, args=(tmp_path / "init", tmp_path), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # one process: per task, the mean over every rank's steps (cls: 3 steps, 1 + 2 + 2 times its value / 3)
    means = [[v * (1 + 2 + 2 + 4) / 4 for v in values[:2]] + [values[2] * (1 + 2 + 2) / 3] for values in EPOCHS]
    assert got[0] == got[1]
    assert got[0] == pytest.approx(dwa_hand(means[1], means[2]), rel=1e-6)


# -- building: clear errors --------------------------------------------------------------------------------
def test_bad_types_and_arguments_are_clear_errors(teacher_ckpt):  # noqa: F811
    with pytest.raises(KeyError, match=r"unknown type 'DWB' \(closest: DWA\); known task weightings: DWA, "
                                       r"FixedWeighting, UncertaintyWeighting"):
        build_task_weighting(dict(type="DWB"), TASKS)
    with pytest.raises(ValueError, match="DWA has no argument 'temprature' .did you mean 'temperature'"):
        make(task_weighting=dict(type="DWA", temprature=2.0))
    with pytest.raises(ValueError, match="tasks come from the model"):
        build_task_weighting(dict(type="UncertaintyWeighting", tasks=["seg"]), TASKS)
    with pytest.raises(TypeError, match="'ClsHead' is not a task weighting"):
        build_task_weighting(dict(type="ClsHead"), TASKS)
    with pytest.raises(TypeError, match="must be a dict with a 'type' key"):
        build_task_weighting("DWA", TASKS)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        build_task_weighting(dict(type="DWA", temperature=0), TASKS)
    with pytest.raises(ValueError, match=r"ratios for unknown task\(s\) \['depth'\]"):
        build_task_weighting(dict(type="FixedWeighting", ratios=dict(depth=2.0)), TASKS)
    # a Distiller: tasks.<t>.ratio is FixedWeighting's; with a learned weighting it must stay 1
    with pytest.raises(ValueError, match="ratio is FixedWeighting's weight, but UncertaintyWeighting sets"):
        build(teacher_ckpt, task_weighting=dict(type="UncertaintyWeighting"))
    with pytest.raises(ValueError, match="ratios are set twice"):
        build(teacher_ckpt, task_weighting=dict(type="FixedWeighting", ratios=dict(seg=3.0)))
    with pytest.raises(ValueError, match="not model.student.task_weighting"):
        build(teacher_ckpt, student=dict(STUDENT, task_weighting=dict(type="DWA")))
    ones = {t: {k: v for k, v in c.items() if k != "ratio"} for t, c in KD_TASKS.items()}
    distiller = build(teacher_ckpt, tasks=ones, task_weighting=dict(type="DWA"))
    assert isinstance(distiller.task_weighting, DWA) and "task_weighting._extra_state" in distiller.state_dict()
    assert not any("task_weighting" in k for k in distiller.student.state_dict())


# -- training with each weighting ---------------------------------------------------------------------------
def weights_of(work_dir):
    records = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k[len("weights/"):]: v for k, v in r.items() if k.startswith("weights/")} for r in records]


@pytest.mark.parametrize("kind", WEIGHTINGS)
def test_a_plain_model_trains_with_each_weighting_and_logs_the_weights(kind, tmp_path, tiny_synthetic):
    ema = "ema = dict(enabled=True, decay=0.5)" if kind == "DWA" else ""   # timm's EMA copies DWA's state too
    config = tiny_config(tmp_path, "demo/student_scratch.py", tiny_synthetic, "scratch",
                         extra=f"model = dict(task_weighting=dict(type={kind!r}))\n{ema}")
    assert run_train(config, tmp_path / "work") == 0
    (weights,) = weights_of(tmp_path / "work")
    assert set(weights) == {"seg", "det", "cls", "depth"}
    if kind == "UncertaintyWeighting":   # learned: no longer 1 after an epoch, and what the checkpoint holds
        log_vars = load_checkpoint(tmp_path / "work" / "last.pth")["state_dict"]["task_weighting.log_vars"]
        assert list(weights.values()) == pytest.approx(torch.exp(-log_vars).tolist())
        assert all(w != 1.0 for w in weights.values())
    else:
        assert weights == dict.fromkeys(weights, 1.0)
    log = (tmp_path / "work" / "log.txt").read_text()
    assert f"epoch 1/1 task weights ({kind}): seg " in log
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "work" / "tb")).Reload()
    assert {f"weights/{t}" for t in weights} <= set(events.Tags()["scalars"])
    ckpt = load_checkpoint(tmp_path / "work" / "best.pth")
    assert ckpt["model_config"]["task_weighting"] == {"type": kind}
    assert test_tool.main([str(tmp_path / "work" / "best.pth"), "--no-progress"]) == 0   # rebuilds, loads strictly


@pytest.mark.parametrize("kind", WEIGHTINGS)
def test_a_distiller_trains_and_resumes_with_each_weighting(kind, teacher_run, tmp_path, tiny_synthetic):  # noqa: F811
    config = tiny_config(tmp_path, "demo/student_kd.py", tiny_synthetic, "kd",
                         extra=f"model = dict(task_weighting=dict(type={kind!r}))")
    teacher = f"model.teacher_checkpoint={teacher_run / 'best.pth'}"
    assert run_train(config, tmp_path / "kd", "--cfg-options", teacher) == 0
    assert set(weights_of(tmp_path / "kd")[0]) == {"seg", "det", "cls", "depth"}
    ckpt = load_checkpoint(tmp_path / "kd" / "last.pth")
    # training state, not the student's: in the run state (for --resume), never in the inference weights
    assert not any("task_weighting" in k for k in ckpt["state_dict"]) and "task_weighting" not in ckpt["model_config"]
    trained = {k for k in ckpt["train_state_dict"] if k.startswith("task_weighting.")}
    assert trained == {"FixedWeighting": set(), "UncertaintyWeighting": {"task_weighting.log_vars"},
                       "DWA": {"task_weighting._extra_state"}}[kind]
    assert test_tool.main([str(tmp_path / "kd" / "best.pth"), "--no-progress"]) == 0
    assert run_train(config, tmp_path / "kd", "--resume", "--cfg-options", teacher, "train_cfg.max_epochs=2") == 0
    assert len(weights_of(tmp_path / "kd")) == 2
