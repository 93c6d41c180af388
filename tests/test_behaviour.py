"""mamba_jax.behaviour: the per-sub-episode behaviour summary."""
import numpy as np
import pytest

from mamba_jax.behaviour import found_in, summarise_behaviour


def test_behaviour_summary_counts_finds_first_hits_and_the_conditional_returns():
    # 3 meta-episodes, K=2 sub-episodes of 4 transitions each
    sub = np.array([[0, 0, 0, 0, 1, 1, 1, 1]] * 3)
    r = np.zeros((3, 8))
    r[0, [2, 3]] = 1.0   # finds at step 3 of sub-episode 1 ...
    r[0, [4, 5, 6, 7]] = 1.0  # ... and goes straight there in sub-episode 2 (step 1)
    r[1, 3] = 0.5        # finds at step 4, then misses in sub-episode 2
    r[2, 6] = 1.0        # misses sub-episode 1, finds at step 3 of sub-episode 2
    r[2, 1] = -0.1       # a penalty is not a find
    b = summarise_behaviour(r, sub, K=2)
    s0, s1 = b["sub_episodes"]
    assert b["tasks"] == 3
    assert s0["found_rate"] == pytest.approx(2 / 3)
    assert s0["first_hit_step"] == pytest.approx((3 + 4) / 2)
    assert s0["rewarded_steps"] == pytest.approx(3 / 3)
    assert s1["found_rate"] == pytest.approx(2 / 3)
    assert s1["first_hit_step"] == pytest.approx((1 + 3) / 2)
    assert s1["found_rate_given_found_first"] == pytest.approx(1 / 2)
    assert s1["found_rate_given_missed_first"] == pytest.approx(1.0)
    assert s1["first_hit_step_given_found_first"] == pytest.approx(1.0)
    assert s1["return_given_found_first"] == pytest.approx((4.0 + 0.0) / 2)
    assert s1["return_given_missed_first"] == pytest.approx(1.0)
    # only task 0 found the goal in both: first hit at step 3, then at step 1
    assert b["first_hit_speedup_later_vs_first"] == pytest.approx(3.0)
    # found_in works on any leading axes (here a seed axis of 2 over the 3 tasks)
    np.testing.assert_array_equal(found_in(np.stack([r, 0 * r]), np.stack([sub, sub]), 1),
                                  [[True, False, True], [False, False, False]])
    never = summarise_behaviour(np.zeros((2, 8)), sub[:2], K=2)
    assert never["sub_episodes"][0]["first_hit_step"] is None
    assert never["sub_episodes"][1]["found_rate_given_found_first"] is None
    assert never["first_hit_speedup_later_vs_first"] is None


def test_scripted_search_on_the_point_robot_shows_the_signature():
    """On real rollouts of the scripted explore-then-exploit policy (transition layout from
    ``collect``): every sub-episode finds the goal, the later ones far sooner, and the
    conditional returns add up to the per-sub-episode returns ``collect`` reports."""
    import jax

    from envs import scripted
    from envs.meta import make_meta
    from mamba_jax import collect as collect_lib

    K, H, n = 3, 100, 16
    meta = make_meta("point_robot", K=K, H=H)
    policy, init = scripted.scripted_for("point_robot", meta)
    rollout, _ = jax.jit(lambda k: collect_lib.collect(meta, policy, init(n), k, n))(
        jax.random.PRNGKey(3))
    b = summarise_behaviour(np.asarray(rollout.rewards), np.asarray(rollout.sub_idx), K)
    returns = np.asarray(collect_lib.sub_episode_returns(rollout, K)).mean(0)  # [K]
    for k, sub in enumerate(b["sub_episodes"]):
        assert sub["found_rate"] == 1.0, k
        if k:
            assert sub["found_rate_given_found_first"] == 1.0
            assert sub["return_given_found_first"] == pytest.approx(returns[k], rel=1e-5)
            assert sub["first_hit_step"] < 0.6 * b["sub_episodes"][0]["first_hit_step"]
    assert b["first_hit_speedup_later_vs_first"] > 1.5
