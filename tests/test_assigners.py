"""FCOSAssigner against the FCOS rules written out point by point (Tian et al. 2019), and the fallback that
gives every box a point."""
import math

import pytest
import torch

from mtkd.models import FCOSAssigner


def grid(strides, height, width=None):
    """Point centers ``[N, 2]`` (x, y) and strides ``[N]`` of an input, level by level, row-major."""
    centers, point_strides = [], []
    for s in strides:
        ys = torch.arange(math.ceil(height / s)) * s + s / 2
        xs = torch.arange(math.ceil((width or height) / s)) * s + s / 2
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        centers.append(torch.stack([xx, yy], -1).reshape(-1, 2))
        point_strides.append(torch.full((xx.numel(),), s))
    return torch.cat(centers).float(), torch.cat(point_strides)


def reference_assign(points, point_strides, boxes, radius, ranges):
    """The FCOS rules in plain Python: in the center region (clipped to the box), max(l, t, r, b) in the
    level's range, smallest area wins. No fallback for unmatched boxes."""
    result = []
    for (x, y), s in zip(points.tolist(), point_strides.tolist()):
        low, high = ranges[s]
        best, best_area = -1, math.inf
        for j, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, radius * s
            in_center = max(x1, cx - r) < x < min(x2, cx + r) and max(y1, cy - r) < y < min(y2, cy + r)
            in_range = low <= max(x - x1, y - y1, x2 - x, y2 - y) <= high
            area = (x2 - x1) * (y2 - y1)
            if in_center and in_range and area < best_area:
                best, best_area = j, area
        result.append(best)
    return torch.tensor(result)


def random_case(seed):
    """Points of a 256 x 224 input at strides 8/16/32 and 8 boxes of 2 to 222 px sides (all three levels,
    and boxes that only the fallback places)."""
    gen = torch.Generator().manual_seed(seed)
    points, point_strides = grid((8, 16, 32), 256, 224)
    xy = torch.rand(8, 2, generator=gen) * torch.tensor([200.0, 230.0])
    wh = 2 + torch.rand(8, 2, generator=gen) ** 2 * 220
    return points, point_strides, torch.cat([xy, (xy + wh).minimum(torch.tensor([224.0, 256.0]))], dim=1)


def test_default_scale_ranges_follow_fcos():
    assigner = FCOSAssigner(strides=(8, 16, 32, 64, 128))
    assert assigner.scale_ranges == [(0, 64), (64, 128), (128, 256), (256, 512), (512, math.inf)]


@pytest.mark.parametrize("seed", range(4))
def test_matches_the_fcos_rules_on_random_boxes(seed):
    """Where the rules match a box the assigner agrees point for point; each box the rules leave without a
    point (too small, cut by the ranges, or every point taken by a smaller box) gets exactly one."""
    assigner = FCOSAssigner(strides=(8, 16, 32), center_radius=1.5)
    points, point_strides, boxes = random_case(seed)
    expected = reference_assign(points, point_strides, boxes, 1.5, dict(zip((8, 16, 32), assigner.scale_ranges)))
    assigned = assigner.assign(points, point_strides, boxes)
    unmatched = set(range(len(boxes))) - set(expected.tolist())
    differ = assigned != expected
    assert sorted(assigned[differ].tolist()) == sorted(unmatched)
    assert set(assigned.tolist()) - {-1} == set(range(len(boxes)))  # every box trains some point


def test_the_random_cases_cover_every_level_and_the_fallback():
    ranges = dict(zip((8, 16, 32), FCOSAssigner(strides=(8, 16, 32)).scale_ranges))
    unmatched, levels = 0, set()
    for seed in range(4):
        points, point_strides, boxes = random_case(seed)
        expected = reference_assign(points, point_strides, boxes, 1.5, ranges)
        unmatched += 8 - len(set(expected.tolist()) - {-1})
        levels |= set(point_strides[expected >= 0].tolist())
    assert unmatched > 0 and levels == {8, 16, 32}


def test_center_sampling_radius_is_in_strides_and_clipped_to_the_box():
    assigner = FCOSAssigner(strides=(8,), center_radius=1.5, scale_ranges=((0, math.inf),))  # radius 12 px
    wide, flat = [0.0, 0.0, 100.0, 40.0], [0.0, 0.0, 100.0, 10.0]                          # centers x = 50
    points = torch.tensor([[39.0, 20.0], [37.0, 20.0], [61.0, 20.0], [63.0, 20.0]])
    assert assigner.assign(points, torch.full((4,), 8), torch.tensor([wide])).tolist() == [0, -1, 0, -1]
    points = torch.tensor([[50.0, 9.0], [50.0, 11.0]])  # within 12 px of the center, but the second is outside
    assert assigner.assign(points, torch.full((2,), 8), torch.tensor([flat])).tolist() == [0, -1]


def test_scale_ranges_send_a_box_to_the_level_whose_range_holds_it():
    assigner = FCOSAssigner(strides=(8, 16), center_radius=2.5, scale_ranges=((0, 16), (16, math.inf)))
    points = torch.tensor([[20.0, 20.0], [20.0, 20.0], [12.0, 12.0]])  # max(l, t, r, b) = 20, 20, 28
    point_strides = torch.tensor([8, 16, 16])
    assigned = assigner.assign(points, point_strides, torch.tensor([[0.0, 0.0, 40.0, 40.0]]))
    assert assigned.tolist() == [-1, 0, 0]  # 20 > 16 is out of the stride-8 range


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_a_point_in_two_boxes_takes_the_smaller(order):
    assigner = FCOSAssigner(strides=(8,), center_radius=10.0, scale_ranges=((0, math.inf),))
    big, small = [0.0, 0.0, 64.0, 64.0], [16.0, 16.0, 48.0, 48.0]
    boxes = torch.tensor([[big, small][i] for i in order])
    points = torch.tensor([[32.0, 32.0], [4.0, 4.0]])  # inside both; inside the big one only
    assigned = assigner.assign(points, torch.tensor([8, 8]), boxes)
    assert assigned.tolist() == [order.index(1), order.index(0)]


def test_a_box_smaller_than_a_stride_gets_the_point_nearest_its_center():
    assigner = FCOSAssigner(strides=(8,))
    points, point_strides = grid((8,), 32)
    box = torch.tensor([[9.0, 2.0, 11.0, 5.0]])  # between grid points: the rules give it none
    assert (reference_assign(points, point_strides, box, 2.5, {8: (0, math.inf)}) == -1).all()
    assigned = assigner.assign(points, point_strides, box)
    assert torch.nonzero(assigned >= 0).flatten().tolist() == [1]  # point (12, 4)
    assert assigned[1].item() == 0


def test_unmatched_boxes_that_share_a_nearest_point_both_get_one():
    assigner = FCOSAssigner(strides=(8,))
    points, point_strides = grid((8,), 32)
    boxes = torch.tensor([[8.5, 1.0, 11.5, 6.0], [9.0, 2.0, 11.0, 5.0]])  # both nearest (12, 4); the 2nd smaller
    assigned = assigner.assign(points, point_strides, boxes)
    assert assigned[1].item() == 1  # the smaller box keeps the nearest point
    assert sorted(assigned[assigned >= 0].tolist()) == [0, 1]
    assert points[assigned == 0].tolist() == [[4.0, 4.0]]  # the larger box: the next nearest free point


def test_a_box_outside_every_range_gets_a_point_on_the_level_with_the_nearest_range():
    ranges = ((0, 8), (23, math.inf))  # a gap (8, 23)
    assigner = FCOSAssigner(strides=(8, 16), center_radius=0.5, scale_ranges=ranges)
    points, point_strides = grid((8, 16), 64)
    box = torch.tensor([[2.0, 2.0, 38.0, 38.0]])  # center (20, 20), half side 18: 10 above 8, 5 below 23
    assert (reference_assign(points, point_strides, box, 0.5, dict(zip((8, 16), ranges))) == -1).all()
    assigned = assigner.assign(points, point_strides, box)
    assert (assigned >= 0).sum() == 1 and point_strides[assigned >= 0].item() == 16
    assert points[assigned >= 0].tolist() == [[24.0, 24.0]]  # not the stride-8 point on the center


def test_no_boxes_gives_all_background():
    assigner = FCOSAssigner(strides=(8,))
    points, point_strides = grid((8,), 32)
    assert (assigner.assign(points, point_strides, torch.zeros(0, 4)) == -1).all()


def test_unknown_point_stride_and_bad_settings_are_errors():
    assigner = FCOSAssigner(strides=(8, 16))
    with pytest.raises(ValueError, match=r"points with strides \[4\] but the assigner knows \[8, 16\]"):
        assigner.assign(torch.zeros(2, 2), torch.tensor([4, 8]), torch.tensor([[0.0, 0.0, 8.0, 8.0]]))
    with pytest.raises(ValueError, match="one \\(low, high\\) pair per stride"):
        FCOSAssigner(strides=(8, 16), scale_ranges=((0, 64),))
    with pytest.raises(ValueError, match="center_radius must be > 0"):
        FCOSAssigner(strides=(8,), center_radius=0)
    with pytest.raises(ValueError, match=r"strides must increase strictly .* got \[16, 8\]"):
        FCOSAssigner(strides=(16, 8))  # the default ranges grow with the level


def overlapping_tiny_boxes(seed, count=6):
    """``count`` boxes of 1 to 13 px sides piled into a 37 px square of a 64 x 64 input: many share their
    only FCOS point with a smaller box, or have none."""
    gen = torch.Generator().manual_seed(seed)
    xy = 16 + torch.rand(count, 2, generator=gen) * 24
    wh = 1 + torch.rand(count, 2, generator=gen) * 12
    return torch.cat([xy, xy + wh], dim=1)


def test_every_box_of_overlapping_tiny_boxes_trains_a_point():
    """200 crowded scenes (84 points, 6 boxes): every box owns a point, and where the assigner departs from
    the FCOS rules it only gives one point to each box the rules leave without any."""
    assigner = FCOSAssigner(strides=(8, 16, 32))
    points, point_strides = grid((8, 16, 32), 64)
    ranges = dict(zip((8, 16, 32), assigner.scale_ranges))
    for seed in range(200):
        boxes = overlapping_tiny_boxes(seed)
        assigned = assigner.assign(points, point_strides, boxes)
        missing = set(range(len(boxes))) - set(assigned.tolist())
        assert not missing, f"scene {seed}: boxes {sorted(missing)} of {boxes.tolist()} own no point"
        expected = reference_assign(points, point_strides, boxes, 2.5, ranges)
        unmatched = set(range(len(boxes))) - set(expected.tolist())
        assert sorted(assigned[assigned != expected].tolist()) == sorted(unmatched), f"scene {seed}"


def test_a_smaller_box_never_takes_the_only_point_of_a_larger_one():
    assigner = FCOSAssigner(strides=(8,))
    points, point_strides = grid((8,), 32)
    large, small = [10.0, 10.0, 14.5, 14.5], [12.5, 12.5, 13.5, 13.5]  # (12, 12): the large box's only point,
    assigned = assigner.assign(points, point_strides, torch.tensor([large, small]))  # and nearest the small one
    assert points[assigned == 0].tolist() == [[12.0, 12.0]]
    assert points[assigned == 1].tolist() == [[20.0, 12.0]]  # the next nearest free point
