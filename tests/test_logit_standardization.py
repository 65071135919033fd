"""Logit standardization (Sun et al., CVPR 2024) on LogitKD, DKD, PixelwiseKL and the det class term, against
references: the authors' code written out, a plain-Python z-score with the unbiased std, and invariances."""
import math
import statistics

import pytest
import torch
import torch.nn.functional as F

import mtkd.distill  # noqa: F401  (registers the losses)
from mtkd.distill.losses import standardize_logits
from mtkd.registry import MODELS
from tests.test_losses import kl_list, ref_dkd, ref_logit_kd, ref_pixel_kl, softmax_list

TOL = dict(rtol=1e-6, atol=1e-6)


def zscore_list(values):
    """(z - mean) / (unbiased std + 1e-7) of a plain list: the paper's Z-score, independent of torch."""
    mean, std = statistics.fmean(values), statistics.stdev(values)
    return [(v - mean) / (std + 1e-7) for v in values]


def zscore_rows(logits):
    """[N, C] float64: each row z-scored in plain Python."""
    return torch.tensor([zscore_list(row) for row in logits.tolist()], dtype=torch.float64)


def authors_kd(logits_student, logits_teacher, temperature):
    """Sun et al.'s ``kd_loss`` with ``logit_stand=True`` (github.com/sunshangquan/logit-standardization-KD)."""
    def normalize(logit):
        mean = logit.mean(dim=-1, keepdims=True)
        stdv = logit.std(dim=-1, keepdims=True)
        return (logit - mean) / (1e-7 + stdv)
    log_pred_student = F.log_softmax(normalize(logits_student) / temperature, dim=1)
    pred_teacher = F.softmax(normalize(logits_teacher) / temperature, dim=1)
    loss_kd = F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1).mean()
    return loss_kd * temperature ** 2


def rand(*shape, scale=3.0, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * scale


def test_standardize_logits_is_the_z_score_with_unbiased_std():
    logits = rand(5, 7)
    torch.testing.assert_close(standardize_logits(logits), zscore_rows(logits), **TOL)
    maps = rand(2, 4, 3, 3)   # dim=1 of a seg map: per pixel over classes
    per_pixel = zscore_rows(maps.permute(0, 2, 3, 1).reshape(-1, 4)).reshape(2, 3, 3, 4).permute(0, 3, 1, 2)
    torch.testing.assert_close(standardize_logits(maps, dim=1), per_pixel, **TOL)
    with pytest.raises(ValueError, match="at least 2 classes"):
        standardize_logits(rand(3, 1))


@pytest.mark.parametrize("temperature", (1.0, 2.0, 4.0))
def test_logit_kd_standardized_matches_the_authors_code_and_the_loop_reference(temperature):
    student, teacher = rand(6, 5, seed=1), rand(6, 5, scale=8.0, seed=2)
    loss = MODELS.build(dict(type="LogitKDLoss", temperature=temperature, standardize=True))(student, teacher)
    torch.testing.assert_close(loss, authors_kd(student, teacher, temperature), **TOL)
    reference = ref_logit_kd(zscore_rows(student), zscore_rows(teacher), temperature)
    assert loss.item() == pytest.approx(reference, rel=1e-6)
    plain = MODELS.build(dict(type="LogitKDLoss", temperature=temperature))(student, teacher)
    assert abs(plain.item() - loss.item()) > 1e-3   # it does change the loss


def test_standardized_kd_ignores_each_vectors_shift_and_scale():
    """The point of the method: a student whose logits are the teacher's up to a per-sample affine map
    (a smaller logit range) is already at zero loss, while plain KD still pulls it."""
    teacher = rand(4, 6, seed=3)
    scale, shift = torch.tensor([[0.2], [0.5], [1.0], [3.0]], dtype=torch.float64), rand(4, 1, seed=4)
    student = teacher * scale + shift
    loss = MODELS.build(dict(type="LogitKDLoss", temperature=2.0, standardize=True))
    assert loss(student, teacher).item() == pytest.approx(0.0, abs=1e-10)
    assert MODELS.build(dict(type="LogitKDLoss", temperature=2.0))(student, teacher).item() > 0.01


@pytest.mark.parametrize("temperature,alpha,beta", [(1.0, 1.0, 8.0), (4.0, 0.5, 2.0)])
def test_dkd_standardized_is_dkd_of_the_z_scores(temperature, alpha, beta):
    student, teacher, target = rand(5, 4, seed=5), rand(5, 4, seed=6), torch.tensor([0, 3, 1, 2, 3])
    loss = MODELS.build(dict(type="DKDLoss", alpha=alpha, beta=beta, temperature=temperature, standardize=True))
    expected = ref_dkd(zscore_rows(student), zscore_rows(teacher), target, alpha, beta, temperature)
    assert loss(student, teacher, target).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("with_target", (False, True))
def test_pixelwise_kl_standardized_per_pixel_over_classes(with_target):
    student, teacher = rand(2, 3, 4, 5, seed=7), rand(2, 3, 4, 5, scale=6.0, seed=8)
    target = torch.randint(0, 3, (2, 4, 5), generator=torch.Generator().manual_seed(9))
    target[0, :2] = 255
    loss = MODELS.build(dict(type="PixelwiseKLLoss", temperature=2.0, standardize=True))
    value = loss(student, teacher, target if with_target else None)

    def z_map(maps):
        flat = zscore_rows(maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]))
        return flat.reshape(maps.shape[0], *maps.shape[2:], maps.shape[1]).permute(0, 3, 1, 2)
    expected = ref_pixel_kl(z_map(student), z_map(teacher), 2.0, target if with_target else None)
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("weighted,normalize", [(False, "mean"), (True, "teacher_objectness")])
def test_det_class_term_standardized_is_kd_per_location(weighted, normalize):
    """Box and objectness terms off: the loss is T^2 KL between the z-scored class logits of each location,
    averaged over locations (or weighted by the teacher's objectness and divided by its sum)."""
    student, teacher = rand(2, 6, 5 + 3, seed=10), rand(2, 6, 5 + 3, seed=11)
    temperature = 2.0
    loss = MODELS.build(dict(type="DetOutputMSELoss", box=0.0, obj=0.0, cls=1.0, standardize=True,
                             temperature=temperature, objectness_weighted=weighted, normalize=normalize))
    kls, weights = [], []
    for b in range(2):
        for n in range(6):
            s, t = zscore_list(student[b, n, 5:].tolist()), zscore_list(teacher[b, n, 5:].tolist())
            kls.append(temperature ** 2 * kl_list(softmax_list(t, temperature), softmax_list(s, temperature)))
            weights.append(1.0 / (1.0 + math.exp(-float(teacher[b, n, 4]))))
    if normalize == "mean":
        expected = sum(kls) / len(kls)
    else:
        expected = sum(k * w for k, w in zip(kls, weights)) / max(sum(weights), 1.0)
    assert loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_det_box_and_objectness_terms_are_unchanged_by_standardize():
    student, teacher = rand(2, 6, 7, seed=12), rand(2, 6, 7, seed=13)
    for terms in (dict(box=1.0, obj=0.0), dict(box=0.0, obj=1.0)):
        plain = MODELS.build(dict(type="DetOutputMSELoss", cls=0.0, **terms))(student, teacher)
        both = MODELS.build(dict(type="DetOutputMSELoss", cls=1e-12, standardize=True, **terms))(student, teacher)
        assert both.item() == pytest.approx(plain.item(), rel=1e-6)


def test_standardized_losses_give_gradients_in_float32_for_half_inputs():
    student = torch.randn(4, 5, dtype=torch.bfloat16, requires_grad=True)
    loss = MODELS.build(dict(type="LogitKDLoss", standardize=True))(student, torch.randn(4, 5, dtype=torch.bfloat16))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad.float()).all()


@pytest.mark.parametrize("cfg,name", [
    (dict(type="DepthKDLoss"), "DepthKDLoss"),
    (dict(type="FeatureKDLoss", student_channels=4, teacher_channels=4), "FeatureKDLoss"),
    (dict(type="CWDLoss"), "CWDLoss"),
    (dict(type="MultiLabelKDLoss"), "MultiLabelKDLoss"),
])
def test_standardize_on_a_loss_without_class_logits_is_an_error_naming_it(cfg, name):
    with pytest.raises(ValueError, match=rf"{name}: standardize=True has no meaning.*LogitKDLoss"):
        MODELS.build(dict(cfg, standardize=True))


def test_standardize_errors_on_det_regression_multi_label_and_one_class():
    with pytest.raises(ValueError, match="DetOutputMSELoss: standardize=True standardizes the class logits.*cls=0"):
        MODELS.build(dict(type="DetOutputMSELoss", cls=0.0, standardize=True))
    with pytest.raises(ValueError, match="DetOutputMSELoss: temperature=2.0 is used only"):
        MODELS.build(dict(type="DetOutputMSELoss", temperature=2.0))
    with pytest.raises(ValueError, match=r"LogitKDLoss\(standardize=True\).*multi-label"):
        MODELS.build(dict(type="LogitKDLoss", standardize=True)).for_output(
            {"head": "ClsHead", "num_classes": 3, "multi_label": True})
    for loss in ("PixelwiseKLLoss", "DKDLoss", "DetOutputMSELoss"):
        with pytest.raises(ValueError, match=rf"{loss}\(standardize=True\).*1 class"):
            MODELS.build(dict(type=loss, standardize=True)).for_output({"head": "H", "num_classes": 1})
