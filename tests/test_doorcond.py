"""Door-condition evaluation: fixed degradations and the clean-enrolment / degraded-visitor scoring."""
import numpy as np

from train.data import Pair
from train.doorcond import CONDITIONS, cross_report, degrade


def test_degradations_are_fixed_and_change_the_crop():
    crops = np.random.default_rng(0).integers(0, 255, (3, 48, 48, 3), dtype=np.uint8)
    for cond in CONDITIONS:
        a, b = degrade(crops, cond, seed=1), degrade(crops, cond, seed=1)
        assert a.dtype == np.uint8 and a.shape == crops.shape and np.array_equal(a, b)
        assert np.array_equal(a, crops) == (cond == "clean")
    grey = degrade(crops, "grey_ir")
    assert np.array_equal(grey[..., 0], grey[..., 2])
    assert degrade(crops, "low_light").mean() < 0.5 * crops.mean()


def test_cross_report_scores_clean_against_degraded():
    keys = ["a/1", "a/2", "b/1", "b/2"]
    persons = ["a", "a", "b", "b"]
    clean = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], np.float32)
    pairs = [Pair("a/1", "a/2", True, 0), Pair("a/1", "b/1", False, 0), Pair("b/1", "b/2", True, 1),
             Pair("a/2", "b/2", False, 1)]
    assert cross_report(clean, clean, keys, persons, pairs)["accuracy"] == 1.0
    # A degradation that makes every visitor look like person a: b's genuine pair now fails.
    assert cross_report(clean, np.tile([[1, 0]], (4, 1)).astype(np.float32), keys, persons, pairs)["accuracy"] < 1.0
