import numpy as np
import pytest

from hwnas_pl.errors import ConfigError
from hwnas_pl.pareto import (
    hypervolume,
    hypervolume_improvement,
    is_non_dominated,
    kendall_tau,
    nadir_reference_point,
    non_dominated_fronts,
    normalized_hypervolume,
    pareto_ranks,
)

# (accuracy ↑, latency ↓): front 1 = {A, B}; C and E (E: A's accuracy, slower) trade off in front 2; D is last.
ACC_LAT = [[0.90, 2.0], [0.80, 1.0], [0.85, 3.0], [0.50, 5.0], [0.90, 4.0]]


def test_ranks_respect_directions():
    assert pareto_ranks(ACC_LAT, ["max", "min"]).tolist() == [1, 1, 2, 3, 2]
    assert is_non_dominated(ACC_LAT, ["max", "min"]).tolist() == [True, True, False, False, False]
    # Same data read as "minimise both": the slowest-and-worst point D is no longer last.
    assert pareto_ranks(ACC_LAT).tolist() != [1, 1, 2, 3, 2]


def test_fronts_satisfy_the_thesis_conditions():
    rng = np.random.default_rng(0)
    F = rng.random((60, 2))
    fronts = non_dominated_fronts(F)
    dominates = lambda a, b: np.all(a <= b) and np.any(a < b)  # noqa: E731
    for k, front in enumerate(fronts):
        for i in front:  # (3.3) nothing inside a front dominates another member
            assert not any(dominates(F[j], F[i]) for j in front)
        if k + 1 < len(fronts):
            nxt = fronts[k + 1]
            assert not any(dominates(F[j], F[i]) for i in front for j in nxt)  # (3.4)
            assert all(any(dominates(F[i], F[j]) for i in front) for j in nxt)  # (3.5)
    assert sorted(np.concatenate(fronts).tolist()) == list(range(60))


def test_hypervolume_by_hand_2d_and_3d():
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]) == pytest.approx(3 + 2 + 1)
    # two boxes of volume 2 overlapping in a unit cube
    assert hypervolume([[0, 1, 1], [1, 0, 1]], [2, 2, 2]) == pytest.approx(3.0)
    # a point beyond the reference point adds nothing
    assert hypervolume([[1, 3], [5, 0]], [4, 4]) == pytest.approx(3.0)
    # accuracy to maximise: ref (acc 0.5, lat 6): A covers 0.4*4, B adds 0.3*1 below A's latency
    assert hypervolume(ACC_LAT[:2], [0.5, 6.0], ["max", "min"]) == pytest.approx(0.4 * 4 + 0.3 * 1)


def test_normalized_hypervolume():
    front = [[1, 3], [2, 2], [3, 1]]
    assert normalized_hypervolume(front, front, [4, 4]) == 1.0
    assert normalized_hypervolume([[1, 3]], front, [4, 4]) == pytest.approx(3 / 6)


def test_hypervolume_improvement_is_exclusive_contribution():
    F = [[1, 3], [2, 2], [3, 1], [3, 3]]
    hvi = hypervolume_improvement(F, [4, 4])
    assert hvi.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.0])  # the dominated point adds nothing


def test_kendall_tau_b_with_ties_by_hand():
    # pairs: (0,1) tied in a; (0,2),(1,2) concordant -> (2 - 0) / sqrt((3 - 1) * (3 - 0))
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / np.sqrt(6))
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_reference_point_is_beyond_the_worst():
    ref = nadir_reference_point(ACC_LAT, ["max", "min"], margin=0.1)
    assert ref.tolist() == pytest.approx([0.5 - 0.04, 5.0 + 0.4])


@pytest.mark.parametrize(
    ("F", "directions", "match"),
    [
        ([[1, 2]], ["max"], "Objectives have 2 columns but 1 directions"),
        ([[1, 2]], ["max", "down"], "Unknown objective direction"),
        ([[1, np.nan]], None, "hold 1 NaN"),
        ([1, 2, 3], None, "must be a 2-D array"),
    ],
)
def test_bad_objectives(F, directions, match):
    with pytest.raises(ConfigError, match=match):
        pareto_ranks(F, directions)


def test_reference_point_of_wrong_length():
    with pytest.raises(ConfigError, match="reference point has 3 coordinates; expected 2"):
        hypervolume([[1, 2]], [3, 3, 3])
