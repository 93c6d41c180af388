"""What a policy does on held-out meta-episodes, read from its rewards: does it search, and does it
use what it found? (The explore-then-exploit signature of a Bayes-optimal meta-RL policy, in
behaviour rather than return.) Plain NumPy, for analysis scripts and the reproduction runner."""
from __future__ import annotations

import numpy as np


def found_in(reward, sub_idx, k: int):
    """Whether sub-episode ``k`` meets a positive reward: reward, sub_idx [..., T] per transition
    (as in ``summarise_behaviour``) -> bool [...]. Works on any leading axes (tasks, seeds)."""
    return ((np.asarray(reward) > 0) & (np.asarray(sub_idx) == k)).any(-1)


def summarise_behaviour(reward: np.ndarray, sub_idx: np.ndarray, K: int) -> dict:
    """Does the policy search, and does it use what it found? Behaviour per sub-episode, from the
    rewards alone, so it applies to every task whose reward is positive only at the goal.

    reward, sub_idx: [E, T] per TRANSITION: the reward transition t produced and the sub-episode
    it belongs to (``collect.Rollout.rewards`` / ``.sub_idx``; each sub-episode has H of them). Not
    the observed layout of ``data['reward']``, which starts with the reset's 0 and lacks the last
    transition. "Found" means at least one positive reward in the sub-episode;
    ``first_hit_step`` counts the sub-episode's transitions up to and including the first positive
    reward (1 = its first action was rewarded). For k >= 2, ``*_given_found_first`` are taken over
    the tasks where sub-episode 1 found the reward (``first_hit_step_given_found_first`` also
    needs sub-episode k to find it), ``*_given_missed_first`` over the others.
    ``first_hit_speedup_later_vs_first``: over the sub-episodes k >= 2, the mean of
    median(first hit in sub-episode 1) / median(first hit in sub-episode k) on the tasks found in
    both. The explore-then-exploit signature is a speed-up well above 1 with found rates close
    to 1 after a find in sub-episode 1.
    """
    reward, sub = np.asarray(reward, np.float64), np.asarray(sub_idx)
    pos = reward > 0
    found, first, ret, rewarded = [], [], [], []
    for k in range(K):
        m = sub == k
        hits = pos & m
        step = np.cumsum(m, axis=1)  # 1-based step within sub-episode k (where m)
        found.append(found_in(reward, sub, k))
        first.append(np.where(found[k], np.where(hits, step, np.iinfo(np.int64).max).min(1),
                              np.nan))
        ret.append((reward * m).sum(1))
        rewarded.append(hits.sum(1))

    def mean(x):
        x = np.asarray(x, np.float64)
        x = x[~np.isnan(x)]
        return float(x.mean()) if x.size else None

    f0 = found[0]
    out = {"tasks": int(reward.shape[0]), "sub_episodes": []}
    for k in range(K):
        row = {"found_rate": float(found[k].mean()),
               "first_hit_step": mean(first[k]),
               "rewarded_steps": float(rewarded[k].mean())}
        if k > 0:
            row["found_rate_given_found_first"] = float(found[k][f0].mean()) if f0.any() else None
            row["found_rate_given_missed_first"] = float(found[k][~f0].mean()) if (~f0).any() else None
            row["first_hit_step_given_found_first"] = mean(first[k][f0])
            row["return_given_found_first"] = mean(ret[k][f0])
            row["return_given_missed_first"] = mean(ret[k][~f0])
        out["sub_episodes"].append(row)
    both = [found[0] & found[k] for k in range(1, K)]
    if K > 1 and any(b.any() for b in both):
        # on tasks found in sub-episode 1 and again in sub-episode k: how much sooner?
        ratios = [np.median(first[0][b]) / max(np.median(first[k][b]), 1.0)
                  for k, b in zip(range(1, K), both) if b.any()]
        out["first_hit_speedup_later_vs_first"] = float(np.mean(ratios))
    else:
        out["first_hit_speedup_later_vs_first"] = None
    return out
