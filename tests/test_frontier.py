"""costmodel/frontier.py: the Pareto frontier of (interactivity, tokens/s) and log-linear reading along it,
checked against values worked out by hand."""
import math

import pytest

from costmodel.frontier import (bracket, curves, interactivity_range, interpolate, pareto, point_at,
                                point_frontier)
from costmodel.workload_economics import WorkloadPoint, workload_economics


def test_pareto_drops_dominated_points_and_keeps_the_rest_by_rising_x():
    pts = [(1, 100), (2, 40), (2, 30), (1.5, 20), (3, 25), (0.5, 90), (3, 25)]
    # (2, 30): same x as (2, 40), lower y; (1.5, 20): beaten by (2, 40); (0.5, 90): beaten by (1, 100)
    assert pareto(pts) == [(1, 100), (2, 40), (3, 25)]


def test_pareto_of_nothing_and_of_one():
    assert pareto([]) == []
    assert pareto([(2.0, 10.0)]) == [(2.0, 10.0)]


def test_log_linear_interpolation_by_hand():
    front = [(1.0, 100.0), (3.0, 25.0)]
    # x = 2: t = 1/2, log y = (log 100 + log 25) / 2: y = sqrt(2500) = 50 (a straight line would give 62.5)
    assert interpolate(front, 2.0) == pytest.approx(50.0, rel=1e-12)
    # x = 1.5: t = 1/4: y = 100 x (25/100)^(1/4) = 100 / sqrt(2) = 70.7107
    assert interpolate(front, 1.5) == pytest.approx(100 / math.sqrt(2), rel=1e-12)
    # on the points themselves: the points
    assert interpolate(front, 1.0) == 100.0
    assert interpolate(front, 3.0) == 25.0


def test_three_point_frontier_reads_between_the_right_neighbours():
    front = pareto([(10, 800), (20, 400), (40, 100), (15, 300)])  # (15, 300) is dominated by (20, 400)
    assert front == [(10, 800), (20, 400), (40, 100)]
    # x = 30: between (20, 400) and (40, 100), t = 1/2: sqrt(400 x 100) = 200
    assert interpolate(front, 30) == pytest.approx(200.0)
    # x = 15 now reads the frontier, not the dropped point: t = 1/2 of (10, 800)-(20, 400): sqrt(320000)
    assert interpolate(front, 15) == pytest.approx(math.sqrt(800 * 400))


def test_outside_the_range_is_none_never_extrapolated():
    front = [(1.0, 100.0), (3.0, 25.0)]
    assert interpolate(front, 0.999) is None
    assert interpolate(front, 3.001) is None
    assert interpolate(front, float("nan")) is None
    assert interpolate([], 1.0) is None


def test_a_single_point_answers_only_at_its_own_interactivity():
    front = [(2.0, 10.0)]
    assert interpolate(front, 2.0) == 10.0
    assert interpolate(front, 1.999) is None
    assert interpolate(front, 2.001) is None


def test_bracket():
    assert bracket([1.0, 2.0, 4.0], 3.0) == (1, 2, 0.5)
    assert bracket([1.0, 2.0, 4.0], 2.0) == (1, 1, 0.0)
    assert bracket([1.0, 2.0, 4.0], 5.0) is None


def _p(c, u, total, output=None, fits=True, **kw):
    return WorkloadPoint(device="h200", model="m", precision="bf16", isl=256, osl=64, concurrency=c,
                         engine_model="chunked-prefill", source="measured", total_tokens_per_s=total,
                         output_tokens_per_s=output, interactivity=u, fits=fits, **kw)


def test_workload_point_frontier_skips_points_that_do_not_fit_or_have_no_interactivity():
    pts = [_p(1, 40.0, 50.0), _p(4, 30.0, 160.0), _p(16, 10.0, 400.0), _p(64, 2.0, None, fits=False),
           _p(8, None, 900.0), _p(2, 35.0, 40.0)]  # C=2 is dominated by C=1
    front = point_frontier(pts)
    assert [p.concurrency for p in front] == [16, 4, 1]
    assert interactivity_range(pts) == (10.0, 40.0)


def test_point_at_reads_total_and_output_at_the_same_fraction():
    pts = [_p(1, 40.0, 50.0, 10.0), _p(4, 20.0, 200.0, 40.0)]
    got = point_at(pts, 30.0)  # t from the low (u = 20) neighbour = 1/2
    assert got.total_tokens_per_s == pytest.approx(100.0)  # sqrt(200 x 50)
    assert got.output_tokens_per_s == pytest.approx(20.0)  # sqrt(40 x 10)
    assert got.input_tokens_per_s is None
    assert got.between == "between concurrency 1 and 4"
    assert point_at(pts, 45.0) is None
    on = point_at(pts, 40.0)
    assert on.exact and on.total_tokens_per_s == 50.0 and on.between == "at concurrency 1"
    # its economics are the InferenceX formula at the interpolated rate: $1.41/h / (100 x 3600 / 1e6)
    econ = workload_economics(got.as_point(), 1.41, 1.73)
    assert econ.cost_per_mtok_total == pytest.approx(1.41 / (100 * 3600 / 1e6))
    assert econ.tokens_per_s_per_mw == pytest.approx(100 * 1000 / 1.73)
    assert "interpolated between concurrency 1 and 4" in got.as_point().note


def test_curves_group_by_device_precision_workload_and_engine_model():
    a = _p(1, 40.0, 50.0)
    b = _p(4, 20.0, 200.0)
    c = WorkloadPoint(**{**a.to_dict(), "engine_model": "prefill-then-decode"})
    d = WorkloadPoint(**{**a.to_dict(), "precision": "fp8"})
    groups = curves([b, a, c, d])
    assert [len(v) for v in groups.values()] == [2, 1, 1]
    assert [p.concurrency for p in next(iter(groups.values()))] == [1, 4]
