"""Frame-driven schedules (spec 5.2, 7.3, 7.4)."""
import numpy as np

from mamba_jax import schedule


def test_wm_horizon_matches_spec_table():
    # rooms with K=3: 100 at 1e6 logger frames, 300 at 5e6; reacher K=3,H=300: 220 / 475 / 900.
    assert int(schedule.wm_horizon(1e6, 300, 50, 5e6)) == 100
    assert int(schedule.wm_horizon(5e6, 300, 50, 5e6)) == 300
    assert int(schedule.wm_horizon(1e6, 900, 50, 5e6)) == 220
    assert int(schedule.wm_horizon(2.5e6, 900, 50, 5e6)) == 475
    assert int(schedule.wm_horizon(9e9, 900, 50, 5e6)) == 900
    assert int(schedule.wm_horizon(0, 400, 50, 15e6)) == 50
    assert int(schedule.wm_horizon(5e6, 400, 50, 15e6)) == 167  # humanoid
    assert int(schedule.wm_horizon(123, 300, 300, 0)) == 300  # no schedule


def test_logger_frames_double_counts_after_prefill():
    assert schedule.logger_frames(7500 + 3000, 7500, True) == 7500 + 6000
    assert schedule.logger_frames(7500 + 3000, 7500, False) == 10500
    np.testing.assert_equal(int(schedule.logger_frames(100, 7500, True)), 100)


def test_updates_per_round():
    assert schedule.updates_per_round(0.01, 10, 100) == 10  # halfcircle
    assert schedule.updates_per_round(0.2, 10, 60) == 120  # escaperoom
    assert schedule.updates_per_round(0.03, 10, 200) == 60  # humanoid
