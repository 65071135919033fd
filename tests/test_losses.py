"""Soft losses vs float64 references written loop-wise from the papers' formulas."""
import math
import statistics

import pytest
import torch
from torch import nn

import mtkd.distill  # noqa: F401  (registers the losses)
from mtkd.registry import MODELS

TEMPERATURES = (0.5, 1.0, 2.0, 4.0)
TOL = dict(rtol=1e-6, atol=1e-6)


# -- loop-wise references (float64, plain Python over elements) --------------------------------------
def softmax_list(values, temperature):
    top = max(v / temperature for v in values)
    exps = [math.exp(v / temperature - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def kl_list(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def ref_logit_kd(student, teacher, temperature):
    rows = [kl_list(softmax_list(t, temperature), softmax_list(s, temperature))
            for s, t in zip(student.tolist(), teacher.tolist())]
    return temperature ** 2 * sum(rows) / len(rows)


def ref_pixel_kl(student, teacher, temperature, target=None, ignore_index=255):
    batch, classes, height, width = student.shape
    total, count = 0.0, 0
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                if target is not None and int(target[b, y, x]) == ignore_index:
                    continue
                s = [float(student[b, c, y, x]) for c in range(classes)]
                t = [float(teacher[b, c, y, x]) for c in range(classes)]
                total += kl_list(softmax_list(t, temperature), softmax_list(s, temperature))
                count += 1
    return temperature ** 2 * total / max(count, 1)


def ref_det_mse(student, teacher, box, obj, cls, weighted, probabilities=False, normalize="mean"):
    batch, points, width = student.shape
    sigmoid = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    sums, counts = [0.0, 0.0, 0.0], [batch * points * 4, batch * points, batch * points * (width - 5)]
    objects = sum(sigmoid(float(teacher[b, n, 4])) for b in range(batch) for n in range(points))
    if normalize == "teacher_objectness":  # every sum divided by the teacher's soft object count
        counts = [max(objects, 1.0)] * 3
    for b in range(batch):
        for n in range(points):
            w = sigmoid(float(teacher[b, n, 4])) if weighted else 1.0
            for k in range(width):
                s_k, t_k = float(student[b, n, k]), float(teacher[b, n, k])
                if probabilities and k >= 4:  # objectness and classes compared as probabilities
                    s_k, t_k = sigmoid(s_k), sigmoid(t_k)
                err = (s_k - t_k) ** 2
                if k < 4:
                    sums[0] += w * err
                elif k == 4:
                    sums[1] += err
                else:
                    sums[2] += w * err
    return box * sums[0] / counts[0] + obj * sums[1] / counts[1] + cls * sums[2] / counts[2]


def ref_dkd(student, teacher, target, alpha, beta, temperature):
    """Zhao et al. 2022, eq. (1)-(7): KD = TCKD + (1 - p_t^T) NCKD, DKD = alpha TCKD + beta NCKD."""
    losses = []
    for s, t, gt in zip(student.tolist(), teacher.tolist(), target.tolist()):
        p_s, p_t = softmax_list(s, temperature), softmax_list(t, temperature)
        b_s, b_t = [p_s[gt], 1 - p_s[gt]], [p_t[gt], 1 - p_t[gt]]
        tckd = kl_list(b_t, b_s)
        hat_s = [p / (1 - p_s[gt]) for i, p in enumerate(p_s) if i != gt]
        hat_t = [p / (1 - p_t[gt]) for i, p in enumerate(p_t) if i != gt]
        nckd = kl_list(hat_t, hat_s)
        losses.append(temperature ** 2 * (alpha * tckd + beta * nckd))
    return sum(losses) / len(losses)


def ref_cwd(student, teacher, temperature):
    """Shu et al. 2021, eq. (3)-(4): T^2 / C * sum_c sum_i phi(y^T_c,i) log(phi(y^T_c,i) / phi(y^S_c,i))."""
    batch, channels = student.shape[:2]
    total = 0.0
    for b in range(batch):
        for c in range(channels):
            phi_s = softmax_list(student[b, c].flatten().tolist(), temperature)
            phi_t = softmax_list(teacher[b, c].flatten().tolist(), temperature)
            total += temperature ** 2 / channels * kl_list(phi_t, phi_s)
    return total / batch


def ref_feature(student, teacher, mode):
    batch, channels, height, width = student.shape
    total = 0.0
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                s = [float(student[b, c, y, x]) for c in range(channels)]
                t = [float(teacher[b, c, y, x]) for c in range(channels)]
                if mode == "mse":
                    total += sum((si - ti) ** 2 for si, ti in zip(s, t)) / channels
                else:
                    dot = sum(si * ti for si, ti in zip(s, t))
                    total += 1 - dot / (math.sqrt(sum(v * v for v in s)) * math.sqrt(sum(v * v for v in t)))
    return total / (batch * height * width)


def rand(*shape, scale=3.0):
    return torch.randn(*shape, dtype=torch.float64) * scale


# -- equality with the references --------------------------------------------------------------------
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_logit_kd_matches_loop_reference_and_kldivloss(temperature):
    torch.manual_seed(0)
    student, teacher = rand(5, 7), rand(5, 7)
    loss = MODELS.build(dict(type="LogitKDLoss", temperature=temperature))(student, teacher)
    torch.testing.assert_close(loss.item(), ref_logit_kd(student, teacher, temperature), **TOL)
    log_s = torch.log_softmax(student / temperature, dim=1)
    log_t = torch.log_softmax(teacher / temperature, dim=1)
    torch_kd = temperature ** 2 * nn.KLDivLoss(reduction="batchmean", log_target=True)(log_s, log_t)
    torch.testing.assert_close(loss, torch_kd, **TOL)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_pixelwise_kl_matches_reference_on_kept_pixels_only(temperature):
    torch.manual_seed(1)
    student, teacher = rand(2, 4, 5, 6), rand(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, :2] = 255
    target[1, :, 3:] = 255
    loss_fn = MODELS.build(dict(type="PixelwiseKLLoss", temperature=temperature))
    expected = ref_pixel_kl(student, teacher, temperature, target)
    torch.testing.assert_close(loss_fn(student, teacher, target).item(), expected, **TOL)
    torch.testing.assert_close(loss_fn(student, teacher).item(), ref_pixel_kl(student, teacher, temperature), **TOL)
    assert not math.isclose(expected, ref_pixel_kl(student, teacher, temperature), rel_tol=1e-3)


def test_pixelwise_kl_resizes_teacher_and_target_to_student_size():
    torch.manual_seed(2)
    student, teacher = rand(2, 3, 4, 4), rand(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 16, 16))
    target[:, :8] = 255
    loss = MODELS.build(dict(type="PixelwiseKLLoss", temperature=2.0))(student, teacher, target)
    small_teacher = nn.functional.interpolate(teacher, size=(4, 4), mode="bilinear", align_corners=False)
    small_target = target[:, ::4, ::4]  # nearest from 16 to 4 picks every 4th pixel
    torch.testing.assert_close(loss.item(), ref_pixel_kl(student, small_teacher, 2.0, small_target), **TOL)


def test_pixelwise_kl_all_ignored_is_zero_with_gradient_graph():
    student = rand(1, 3, 4, 4).requires_grad_()
    loss = MODELS.build(dict(type="PixelwiseKLLoss"))(student, rand(1, 3, 4, 4), torch.full((1, 4, 4), 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(student.grad == 0)


@pytest.mark.parametrize("normalize", ["mean", "teacher_objectness"])
@pytest.mark.parametrize("probabilities", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (2.0, 0.5, 3.0)])
def test_det_output_mse_matches_loop_reference(weighted, weights, probabilities, normalize):
    torch.manual_seed(3)
    student, teacher = rand(2, 9, 8), rand(2, 9, 8)
    box, obj, cls = weights
    loss_fn = MODELS.build(dict(type="DetOutputMSELoss", box=box, obj=obj, cls=cls, objectness_weighted=weighted,
                                probabilities=probabilities, normalize=normalize, loss_weight=1.5))
    expected = 1.5 * ref_det_mse(student, teacher, box, obj, cls, weighted, probabilities, normalize)
    torch.testing.assert_close(loss_fn(student, teacher).item(), expected, **TOL)


def test_det_teacher_objectness_normalization_is_independent_of_background_count():
    teacher = torch.full((1, 2, 7), 0.5, dtype=torch.float64)
    teacher[0, :, 4] = torch.tensor([30.0, -30.0])  # one sure object, one sure background point
    student = teacher.clone()
    student[0, 0, 5:] += 1.0  # class disagreement at the object only
    background = teacher[:, 1:].expand(1, 98, 7)  # 98 more background points, where both agree
    loss_fn = MODELS.build(dict(type="DetOutputMSELoss", objectness_weighted=True, normalize="teacher_objectness"))
    few = loss_fn(student, teacher)
    many = loss_fn(torch.cat([student, background], 1), torch.cat([teacher, background], 1))
    mean = MODELS.build(dict(type="DetOutputMSELoss", objectness_weighted=True))
    assert few.item() == pytest.approx(2.0, rel=1e-9) and many.item() == pytest.approx(2.0, rel=1e-9)
    assert mean(torch.cat([student, background], 1), torch.cat([teacher, background], 1)).item() < few.item() / 40


def test_det_output_mse_sums_half_precision_outputs_in_float32():
    torch.manual_seed(5)
    student, teacher = rand(2, 50, 9), rand(2, 50, 9)
    loss_fn = MODELS.build(dict(type="DetOutputMSELoss", objectness_weighted=True, normalize="teacher_objectness"))
    half = loss_fn(student.bfloat16(), teacher.bfloat16())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, loss_fn(student.bfloat16().float(), teacher.bfloat16().float()))


def test_det_output_mse_rejects_unknown_normalization():
    with pytest.raises(ValueError, match="normalize must be one of"):
        MODELS.build(dict(type="DetOutputMSELoss", normalize="sum"))


def test_det_objectness_weighting_ignores_background_disagreement():
    teacher = torch.zeros(1, 4, 7, dtype=torch.float64)
    teacher[0, :, 4] = torch.tensor([20.0, -30.0, -30.0, -30.0])  # one object, three background points
    student = teacher.clone()
    student[0, 1:, :4] += 5.0  # box disagreement on background only
    weighted = MODELS.build(dict(type="DetOutputMSELoss", objectness_weighted=True))(student, teacher)
    plain = MODELS.build(dict(type="DetOutputMSELoss"))(student, teacher)
    assert weighted.item() < 1e-10 and plain.item() == pytest.approx(25.0 * 3 / 4)


def test_det_probability_space_ignores_logit_gaps_between_confident_negatives():
    teacher = torch.full((1, 3, 7), -30.0, dtype=torch.float64)  # background everywhere, very confident
    student = torch.full((1, 3, 7), -6.0, dtype=torch.float64)   # also background, less confident
    student[..., :4] = teacher[..., :4]
    logits = MODELS.build(dict(type="DetOutputMSELoss"))(student, teacher)
    probs = MODELS.build(dict(type="DetOutputMSELoss", probabilities=True))(student, teacher)
    assert logits.item() == pytest.approx(2 * 24.0 ** 2) and probs.item() < 1e-4


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("alpha, beta", [(1.0, 8.0), (0.5, 2.0)])
def test_dkd_matches_paper_formula(temperature, alpha, beta):
    torch.manual_seed(4)
    student, teacher = rand(6, 5), rand(6, 5)
    target = torch.randint(0, 5, (6,))
    loss_fn = MODELS.build(dict(type="DKDLoss", alpha=alpha, beta=beta, temperature=temperature))
    expected = ref_dkd(student, teacher, target, alpha, beta, temperature)
    torch.testing.assert_close(loss_fn(student, teacher, target).item(), expected, **TOL)


def test_dkd_with_alpha_one_and_beta_one_minus_pt_is_hinton_kd():
    """The paper's eq. (7): KD = TCKD + (1 - p_t) NCKD; with one sample, beta = 1 - p_t gives KD."""
    torch.manual_seed(5)
    student, teacher, target = rand(1, 6), rand(1, 6), torch.tensor([2])
    p_target = torch.softmax(teacher / 2.0, dim=1)[0, 2].item()
    dkd = MODELS.build(dict(type="DKDLoss", alpha=1.0, beta=1 - p_target, temperature=2.0))(student, teacher, target)
    kd = MODELS.build(dict(type="LogitKDLoss", temperature=2.0))(student, teacher)
    torch.testing.assert_close(dkd, kd, **TOL)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_dkd_without_target_takes_the_teachers_top_class(temperature):
    """A batch without labels (partially labelled data): the target is the teacher's argmax."""
    torch.manual_seed(10)
    student, teacher = rand(6, 5), rand(6, 5)
    top = [max(range(5), key=row.__getitem__) for row in teacher.tolist()]
    loss_fn = MODELS.build(dict(type="DKDLoss", alpha=0.5, beta=4.0, temperature=temperature, loss_weight=2.0))
    expected = 2.0 * ref_dkd(student, teacher, torch.tensor(top), 0.5, 4.0, temperature)
    torch.testing.assert_close(loss_fn(student, teacher).item(), expected, **TOL)
    torch.testing.assert_close(loss_fn(student, teacher, None).item(), expected, **TOL)


def test_dkd_with_bad_target_is_an_error():
    loss_fn = MODELS.build(dict(type="DKDLoss"))
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        loss_fn(rand(2, 3), rand(2, 3), torch.tensor([0, 3]))


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_cwd_matches_paper_formula(temperature):
    torch.manual_seed(6)
    student, teacher = rand(2, 3, 4, 5), rand(2, 3, 4, 5)
    loss = MODELS.build(dict(type="CWDLoss", temperature=temperature))(student, teacher)
    torch.testing.assert_close(loss.item(), ref_cwd(student, teacher, temperature), **TOL)


@pytest.mark.parametrize("mode", ["mse", "cosine"])
def test_feature_kd_applies_adapter_then_matches_reference(mode):
    torch.manual_seed(7)
    loss_fn = MODELS.build(dict(type="FeatureKDLoss", student_channels=3, teacher_channels=5, mode=mode)).double()
    student, teacher = rand(2, 3, 4, 4), rand(2, 5, 2, 2)
    adapted = loss_fn.adapter(student).detach()
    big_teacher = nn.functional.interpolate(teacher, size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(loss_fn(student, teacher).item(), ref_feature(adapted, big_teacher, mode), **TOL)
    loss_fn(student, teacher).backward()
    assert loss_fn.adapter.weight.grad is not None and loss_fn.adapter.weight.grad.abs().sum() > 0


def test_feature_kd_pearson_is_one_minus_the_channel_correlation_whatever_the_scale():
    torch.manual_seed(9)
    loss_fn = MODELS.build(dict(type="FeatureKDLoss", student_channels=3, teacher_channels=3, mode="pearson")).double()
    student, teacher = rand(2, 3, 4, 4), rand(2, 3, 4, 4)
    adapted = loss_fn.adapter(student).detach()
    per_channel = [statistics.correlation(adapted[:, c].flatten().tolist(), teacher[:, c].flatten().tolist())
                   for c in range(3)]
    expected = 1.0 - sum(per_channel) / 3
    torch.testing.assert_close(loss_fn(student, teacher).item(), expected, **TOL)
    scaled = loss_fn(student, 100.0 * teacher + 7.0).item()  # per-channel affine change of the teacher
    torch.testing.assert_close(scaled, expected, **TOL)


# -- multi-label: binary KD per class ----------------------------------------------------------------
def ref_multi_label_kd(student, teacher, temperature):
    """T^2 * mean over images and classes of the binary KL between sigmoid(t/T) and sigmoid(s/T)."""
    terms = []
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        for s, t in zip(s_row, t_row):
            p_s, p_t = 1 / (1 + math.exp(-s / temperature)), 1 / (1 + math.exp(-t / temperature))
            terms.append(p_t * math.log(p_t / p_s) + (1 - p_t) * math.log((1 - p_t) / (1 - p_s)))
    return temperature ** 2 * sum(terms) / len(terms)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_multi_label_kd_matches_the_per_class_binary_kl(temperature):
    torch.manual_seed(9)
    student, teacher = rand(4, 6), rand(4, 6)
    loss_fn = MODELS.build(dict(type="MultiLabelKDLoss", temperature=temperature, loss_weight=0.5))
    expected = 0.5 * ref_multi_label_kd(student, teacher, temperature)
    torch.testing.assert_close(loss_fn(student, teacher).item(), expected, **TOL)
    bf16 = loss_fn(student.bfloat16(), teacher.bfloat16())   # AMP outputs: computed in float32
    assert bf16.dtype == torch.float32 and bf16.item() == pytest.approx(expected, rel=2e-2)


def test_multi_label_kd_at_t1_is_mld_of_yang_et_al_per_class():
    """T = 1: the MLD term of Yang et al. 2023 (KLDivLoss on sigmoid and 1 - sigmoid), divided by C."""
    student, teacher = rand(3, 5), rand(3, 5)
    p_s, p_t = student.sigmoid(), teacher.sigmoid()
    kl = nn.KLDivLoss(reduction="none")
    mld = (kl(p_s.log(), p_t) + kl((1 - p_s).log(), 1 - p_t)).sum() / 3   # their "batchmean"
    loss = MODELS.build(dict(type="MultiLabelKDLoss"))(student, teacher)
    torch.testing.assert_close(loss, mld / 5, **TOL)
    saturated = MODELS.build(dict(type="MultiLabelKDLoss"))(torch.full((1, 2), -200.0), torch.full((1, 2), 200.0))
    assert torch.isfinite(saturated) and saturated.item() == pytest.approx(200.0, rel=1e-6)   # -log sigmoid(-200)


def test_softmax_kd_losses_see_a_multi_label_head():
    multi = {"head": "ClsHead", "num_classes": 6, "multi_label": True}
    logit_kd = MODELS.build(dict(type="LogitKDLoss", temperature=3.0, loss_weight=0.5))
    assert logit_kd.for_output({"head": "ClsHead", "multi_label": False}) is logit_kd
    swapped = logit_kd.for_output(multi)
    assert type(swapped).__name__ == "MultiLabelKDLoss" and (swapped.temperature, swapped.loss_weight) == (3.0, 0.5)
    with pytest.raises(ValueError, match="DKDLoss compares softmax.*ClsHead.*multi-label.*MultiLabelKDLoss"):
        MODELS.build(dict(type="DKDLoss")).for_output(multi)
    multi_kd = MODELS.build(dict(type="MultiLabelKDLoss"))
    assert multi_kd.for_output(multi) is multi_kd and multi_kd.for_output({}) is multi_kd


# -- identical outputs: zero loss and zero gradient --------------------------------------------------
IDENTICAL_CASES = [
    (dict(type="LogitKDLoss", temperature=3.0), (4, 6), None),
    (dict(type="MultiLabelKDLoss", temperature=3.0), (4, 6), None),
    (dict(type="PixelwiseKLLoss", temperature=3.0), (2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5))),
    (dict(type="DetOutputMSELoss", objectness_weighted=True), (2, 7, 9), None),
    (dict(type="DKDLoss", temperature=3.0), (4, 6), torch.tensor([0, 5, 2, 2])),
    (dict(type="CWDLoss", temperature=3.0), (2, 4, 5, 5), None),
    (dict(type="FeatureKDLoss", student_channels=4, teacher_channels=4, mode="mse"), (2, 4, 5, 5), None),
    (dict(type="FeatureKDLoss", student_channels=4, teacher_channels=4, mode="cosine"), (2, 4, 5, 5), None),
    (dict(type="FeatureKDLoss", student_channels=4, teacher_channels=4, mode="pearson"), (2, 4, 5, 5), None),
]


def case_id(value):
    return value["type"] if isinstance(value, dict) else ""


@pytest.mark.parametrize("cfg, shape, target", IDENTICAL_CASES, ids=case_id)
def test_identical_outputs_give_zero_loss_and_zero_gradient(cfg, shape, target):
    torch.manual_seed(8)
    loss_fn = MODELS.build(cfg).double()
    teacher = rand(*shape)
    student = teacher.clone().requires_grad_()
    loss = loss_fn(student, teacher, target) if loss_fn.needs_target else loss_fn(student, teacher)
    loss.backward()
    assert abs(loss.item()) < 1e-12
    assert torch.isfinite(student.grad).all() and student.grad.abs().max().item() < 1e-12
    different = (teacher + rand(*shape)).requires_grad_()
    other = loss_fn(different, teacher, target) if loss_fn.needs_target else loss_fn(different, teacher)
    assert other.item() > 1e-4


# -- errors for people -------------------------------------------------------------------------------
def test_bad_shapes_and_settings_are_errors_that_name_the_loss():
    with pytest.raises(ValueError, match=r"LogitKDLoss.*\(2, 3\).*\(2, 4\)"):
        MODELS.build(dict(type="LogitKDLoss"))(rand(2, 3), rand(2, 4))
    with pytest.raises(ValueError, match="DetOutputMSELoss"):
        MODELS.build(dict(type="DetOutputMSELoss"))(rand(2, 5, 8), rand(2, 6, 8))
    with pytest.raises(ValueError, match="CWDLoss"):
        MODELS.build(dict(type="CWDLoss"))(rand(2, 3, 4, 4), rand(2, 4, 4, 4))
    with pytest.raises(ValueError, match="temperature must be a positive number, got 0"):
        MODELS.build(dict(type="PixelwiseKLLoss", temperature=0))
    with pytest.raises(ValueError, match="mode must be one of"):
        MODELS.build(dict(type="FeatureKDLoss", student_channels=2, teacher_channels=2, mode="l1"))


# -- depth: pixel-wise L1 / L2 on log-depth maps -----------------------------------------------------
def ref_depth_kd(student, teacher, mode):
    """Loop-wise mean over pixels of |s - t| or (s - t)^2 (teacher already at the student's size)."""
    values = [float(s) - float(t) for s, t in zip(student.flatten().tolist(), teacher.flatten().tolist())]
    return sum(abs(v) if mode == "l1" else v * v for v in values) / len(values)


@pytest.mark.parametrize("mode", ["l1", "l2"])
def test_depth_kd_matches_pixelwise_formula(mode):
    torch.manual_seed(11)
    student, teacher = rand(2, 1, 5, 6), rand(2, 1, 5, 6)
    loss_fn = MODELS.build(dict(type="DepthKDLoss", mode=mode, loss_weight=0.5))
    torch.testing.assert_close(loss_fn(student, teacher).item(), 0.5 * ref_depth_kd(student, teacher, mode), **TOL)


@pytest.mark.parametrize("mode", ["l1", "l2"])
def test_depth_kd_resizes_the_teacher_bilinearly_to_the_student(mode):
    torch.manual_seed(12)
    student, teacher = rand(2, 1, 4, 4), rand(2, 1, 8, 8)
    resized = teacher.reshape(2, 1, 4, 2, 4, 2).mean(dim=(3, 5))  # bilinear halving samples 2x2 block centres
    loss = MODELS.build(dict(type="DepthKDLoss", mode=mode))(student, teacher)
    torch.testing.assert_close(loss.item(), ref_depth_kd(student, resized, mode), **TOL)


@pytest.mark.parametrize("mode", ["l1", "l2"])
def test_depth_kd_identical_maps_give_zero_loss_and_zero_gradient(mode):
    teacher = rand(2, 1, 5, 5)
    student = teacher.clone().requires_grad_()
    loss = MODELS.build(dict(type="DepthKDLoss", mode=mode))(student, teacher)
    loss.backward()
    assert loss.item() == 0.0 and student.grad.abs().max().item() == 0.0


def test_depth_kd_bad_mode_and_shapes_are_errors():
    with pytest.raises(ValueError, match=r"DepthKDLoss: mode must be one of \('l1', 'l2'\), got 'huber'"):
        MODELS.build(dict(type="DepthKDLoss", mode="huber"))
    with pytest.raises(ValueError, match=r"DepthKDLoss.*\[B, 1, H, W\].*\(2, 3, 4, 4\)"):
        MODELS.build(dict(type="DepthKDLoss"))(rand(2, 3, 4, 4), rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="DepthKDLoss"):
        MODELS.build(dict(type="DepthKDLoss"))(rand(2, 1, 4, 4), rand(3, 1, 4, 4))
