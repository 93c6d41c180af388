"""Does the world model's one-step return point the actor at the goal? (point-robot tasks)

    python -m experiments.probe_actor_gradient --workdir=<run folder> [--tasks=20] [--seed_index=0] \
        [--step=<checkpoint step>] [--out=results/inspect/<name>_actor_gradient.json]

The point robot's actor is trained by dynamics backpropagation with imagination horizon I = 2
(spec 6.6): its objective at a start state is (R_0 - v_0) / S with R_0 = r_1 + c_1 v_1, where
s_1 = img_step(s_0, a_0), so the only signal the actor's mean receives is the gradient
dG/da of G(a) = r_1 + c_1 v_1 (the model's one-step return) with respect to the action, times the
tanh slope of the mean. This script measures that signal at every posterior state of the trained
agent's deterministic meta-episodes on held-out tasks (the ``experiments.reproduce`` set):

* ``model_gradient_norm``: |dG/da| (mean), and ``cos_model_gradient_to_goal``: the cosine
  between dG/da and the direction from the robot to the goal (mean, and the fraction > 0). For the
  dense reward 1 - d the true one-step reward gradient points exactly at the goal inside the goal
  disc, which must then cover every reachable point (``env_kwargs.goal_radius`` >= 16: per-component
  clipping lets the robot move 0.1 * sqrt 2 per step, 15.1 from the goal after 100 steps); beyond
  the disc the reward is 0, above the disc's outer ring (``beyond_goal_radius_fraction``). With
  the sparse reward it is zero outside the goal disc, so there a positive cosine can only come
  from the critic.
* ``cos_action_to_goal``: the cosine between the agent's deterministic action and the goal
  direction (is the policy heading for the goal?).
* ``reward_term`` / ``critic_term``: the same gradient figures for the two terms of dG/da apart,
  dr_1/da and d(c_1 v_1)/da (which of them points the actor where).
* ``reward_fit``: the model's r_1 at the taken action against the true next reward (correlation,
  mean absolute error), next to the same figures for copying the current reward (an input of the
  posterior): a reward head that only copies its input is accurate and gives no action gradient.
  Also r_1 against the reward head at the next step's posterior (``model_r1_corr_next_posterior``,
  and the two predictions' changes from step t, ``model_r1_change_corr_posterior_change``):
  does the imagined step land where the next observation puts the model?
* ``posterior_reward_fit``: the reward head at the posterior of each step against the reward
  observed there (correlation, mean absolute error, mean signed error ``bias``, mean reward):
  is a poor ``reward_fit`` the reward head's or the imagined step's? And
  ``posterior_reward_by_distance_from_start``: the same by distance from the start, with the
  head's shrink towards 0 (does it flatter the rarely visited far states?).
* ``decoder_reward_fit``: the decoder's reconstruction of the observed reward at each
  posterior, next to the reward head there, against the reward, inside sub-episodes, with their
  standard deviations: does the posterior carry the reward the head misreads?
* ``dynamics_fit``: is a weak dr_1/da the imagined step's or the reward head's? The decoder's
  position at s_0 (the posterior) and at s_1 = img_step(s_0, a), and its Jacobian dp_1/da, against
  the true step p + 0.1 a (Jacobian 0.1 I): ``jacobian_diag_mean`` / ``jacobian_offdiag_abs_mean``
  / ``jacobian_rel_error``, the imagined step's gain and cosine against 0.1 a, and the decoded
  positions' errors. ``dense_reward_through_model_step``: the gradient figures of
  d(1 - |p_1 - goal|)/da through the model's step, i.e. the dense reward's true function read off
  the decoded p_1 (0.1 times the goal direction with a perfect step), with
  ``reward_term_cos_to_it`` and ``reward_term_norm_ratio`` (|dr_1/da| over its norm, means): a
  right step with a small ratio blames the reward head. ``decoder_r1_fit`` / ``decoder_r1_term``:
  the decoder's observed reward at s_1 (the model's other estimate of r_1) as a predictor of the
  next reward (``reward_fit``'s figures) and its action gradient (``reward_term``'s figures).
* ``bayes_reference``: what the history allows. The goals consistent with every (position,
  reward) the meta-episode has observed so far (the reward is deterministic), the arc they span,
  and the one-step reward gradient of an exact Bayesian agent with that belief, with dr_1/da's
  cosine and norm ratio to it (per sub-episode too): a small ratio where the arc is pinned blames
  the model, not missing information. ``bayes_reference_coarse``: the same for an agent that reads
  each reward only to +-0.05. Meaningful for the noise-free point robot (not wind).
* ``meta_return`` / ``return_per_sub_episode``: what the probed meta-episodes scored.
* ``tanh_saturated_fraction``: the fraction of action components whose pre-tanh mean has
  |mu| > 2 (tanh slope < 0.07: the gradient reaching the actor is 14x smaller or less), and
  ``std_mean``, the policy's mean standard deviation.

Each figure is given for the whole meta-episode and per sub-episode.
"""
from __future__ import annotations

import argparse
import json
import os

from mamba_jax import memory

memory.configure_process()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from envs.point_robot import STEP_SIZE  # noqa: E402
from experiments.inspect_run import correlation, held_out_rollout, load_trained, reward_predictions  # noqa: E402
from experiments.reproduce import HELD_OUT_SEED  # noqa: E402
from mamba_jax import collect as collect_lib  # noqa: E402
from mamba_jax import config as config_lib  # noqa: E402
from mamba_jax import distributions as dist  # noqa: E402
from mamba_jax import rssm as rssm_lib  # noqa: E402
from mamba_jax import trainer  # noqa: E402

# the exact Bayesian agent, and one that reads each reward only to +-0.05
BAYES_RESOLUTIONS = {"bayes_reference": 0.0, "bayes_reference_coarse": 0.05}
SATURATED = 2.0  # |pre-tanh mean| above which tanh' = 1 - tanh^2 < 0.071


def one_step_return_terms(agent, params, state: rssm_lib.State, action: jax.Array,
                          key: jax.Array, samples: int = 4):
    """dG/da of G(a) = r_1 + discount * cont_1 * v_1 at s_1 = img_step(state, a), and its reward
    term dr_1/da alone (so dG/da - dr_1/da is the critic term's), from one imagined step.

    state: posterior states, leaves [N, ...]; action [N, A]. Returns (dG/da [N, A], dr_1/da [N, A],
    r_1 [N]), each averaged over ``samples`` draws of the stochastic latent of s_1
    (straight-through, as in imagination).
    """
    wm, ac, c = agent.wm, agent.ac, agent.config

    def outputs(a, k):
        nxt, _ = wm.img_step(params["wm"], state, a, k)
        f = rssm_lib.feat(nxt)
        r = wm.reward(params["wm"], f)
        g = r + c.discount * wm.cont_prob(params["wm"], f) * ac.value(params["critic"], f)
        return jnp.stack([jnp.sum(g), jnp.sum(r)]), r

    jac, rewards = jax.vmap(lambda k: jax.jacrev(outputs, has_aux=True)(action, k))(
        jax.random.split(key, samples))  # jac [samples, 2, N, A]
    jac = jac.mean(0)
    return jac[0], jac[1], rewards.mean(0)


def one_step_decoded(agent, params, state: rssm_lib.State, action: jax.Array, key: jax.Array,
                     samples: int = 4):
    """What the decoder reads at s_1 = img_step(state, a), and its gradient with respect to a,
    in the environment's units, averaged over the same ``samples`` latent draws as
    ``one_step_return_terms``: the position (symexp of the decoder's ``state``; the point robot
    observes its position) and the observed reward (symexp of its ``reward`` plus
    ``agent.obs_reward_shift``), which at s_1 is the model's other estimate of r_1.

    state: leaves [N, ...]; action [N, A]. Returns (p_1 [N, P], dp_1/da [N, P, A],
    decoded r_1 [N], d(decoded r_1)/da [N, A]).
    """
    wm, shift = agent.wm, config_lib.obs_reward_shift(agent.config)

    def decoded(a, k):  # [N, P + 1]: the position, then the observed reward
        nxt, _ = wm.img_step(params["wm"], state, a, k)
        out = wm.apply_head(params["wm"], "decoder", rssm_lib.feat(nxt))
        return jnp.concatenate([dist.symexp(out["state"]), dist.symexp(out["reward"]) + shift], -1)

    def one(k):  # row n depends on row n of a only, so d(sum_n out)/da holds each row's
        return decoded(action, k), jnp.moveaxis(jax.jacrev(lambda a: decoded(a, k).sum(0))(action), 0, 1)

    out, jac = jax.vmap(one)(jax.random.split(key, samples))
    out, jac = out.mean(0), jac.mean(0)
    return out[:, :-1], jac[:, :-1], out[:, -1], jac[:, -1]


def one_step_return_gradient(agent, params, state: rssm_lib.State, action: jax.Array,
                             key: jax.Array, samples: int = 4):
    """(dG/da [N, A], r_1 [N]) of ``one_step_return_terms``."""
    grad, _, r1 = one_step_return_terms(agent, params, state, action, key, samples)
    return grad, r1


def _cos(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    nu, nv = np.linalg.norm(u, axis=-1), np.linalg.norm(v, axis=-1)
    return np.sum(u * v, -1) / np.maximum(nu * nv, 1e-12)


def inside_sub_episodes(sub: np.ndarray) -> np.ndarray:
    """sub [E, T] -> [E, T] bool: False at each sub-episode's first step (whose observed reward
    is the reset's), True at the steps after it."""
    return np.concatenate([np.zeros((sub.shape[0], 1), bool), sub[:, 1:] == sub[:, :-1]], 1)


def reward_fit(r1: np.ndarray, reward: np.ndarray, sub: np.ndarray,
               filtered: np.ndarray | None = None) -> dict:
    """How the model's r_1 at the taken action predicts the next reward, against copying the
    current one. r1, reward, sub [E, T]; pairs (t, t + 1) inside one sub-episode. With
    ``filtered`` [E, T] (the reward head at each step's posterior) also how r_1 matches the head
    at the next step's posterior: r_1 far from the truth but close to it blames the head; far
    from both, with the posterior close to the truth, blames the imagined (prior) step."""
    same = inside_sub_episodes(sub)[:, 1:].ravel()  # pairs (t, t + 1) of one sub-episode
    pred, now, nxt = r1[:, :-1].ravel()[same], reward[:, :-1].ravel()[same], reward[:, 1:].ravel()[same]
    fit = {"model_r1_corr_next_reward": correlation(pred, nxt),
           "model_r1_abs_error": float(np.abs(pred - nxt).mean()),
           "copy_current_reward_corr_next_reward": correlation(now, nxt),
           "copy_current_reward_abs_error": float(np.abs(now - nxt).mean())}
    if filtered is not None:
        post_now, post_next = filtered[:, :-1].ravel()[same], filtered[:, 1:].ravel()[same]
        fit["model_r1_corr_next_posterior"] = correlation(pred, post_next)
        fit["model_r1_abs_error_next_posterior"] = float(np.abs(pred - post_next).mean())
        # the posterior head against the truth on the same pairs: unlike posterior_fit, this
        # leaves out each sub-episode's first step (whose observed reward is the reset's)
        fit["next_posterior_corr_next_reward"] = correlation(post_next, nxt)
        # the imagined step's change against the posterior's own change, both from step t:
        # does the prior move the reward the way the next observation does?
        fit["model_r1_change_corr_posterior_change"] = correlation(pred - post_now, post_next - post_now)
    return fit


def posterior_fit(filtered: np.ndarray, reward: np.ndarray) -> dict:
    """How the reward head at the posterior of step t fits the reward observed at t (which the
    posterior has seen): filtered, reward [E, T]. Next to ``reward_fit`` it separates a reward
    head that misreads states from an imagined step that lands in the wrong state. Every step
    counts, each sub-episode's first too, whose observed reward is the reset's 0: where the
    reward is far from 0 elsewhere (``reward_offset``), those few steps can dominate ``corr``;
    ``reward_fit``'s ``next_posterior_corr_next_reward`` leaves them out."""
    a, b = filtered.ravel(), reward.ravel()
    return {"corr": correlation(a, b), "abs_error": float(np.abs(a - b).mean()), "bias": float((a - b).mean()),
            "reward_mean": float(b.mean())}


def decoder_fit(decoded: np.ndarray, filtered: np.ndarray, reward: np.ndarray, sub: np.ndarray) -> dict:
    """Does the posterior carry the observed reward, and does the reward head read it? decoded
    [E, T]: the decoder's reconstruction of the observed reward at each step's posterior (in
    reward units); filtered [E, T]: the reward head there; reward, sub [E, T]. Over the steps
    inside a sub-episode (each sub-episode's reset step left out, as in ``reward_fit``): each
    one's correlation with and mean absolute error to the reward, and the standard deviations
    (a head with ``head_std`` far below ``reward_std`` is flat: it predicts a level)."""
    inside = inside_sub_episodes(sub)
    d, f, r = decoded[inside], filtered[inside], reward[inside]
    return {"decoder_corr": correlation(d, r), "decoder_abs_error": float(np.abs(d - r).mean()),
            "head_corr": correlation(f, r), "head_abs_error": float(np.abs(f - r).mean()),
            "reward_std": float(r.std()), "decoder_std": float(d.std()), "head_std": float(f.std())}


def against(grad_r: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> dict:
    """dr_1/da against a reference gradient over the steps of ``mask``: the mean cosine and the
    ratio of mean norms. grad_r, ref [..., 2]; mask [...] bool."""
    return {"reward_term_cos_to_it": float(_cos(grad_r, ref)[mask].mean()),
            "reward_term_norm_ratio": float(np.linalg.norm(grad_r, axis=-1)[mask].mean()
                                            / max(np.linalg.norm(ref, axis=-1)[mask].mean(), 1e-12))}


def dynamics_fit(jac: np.ndarray, p1: np.ndarray, p0: np.ndarray, pos: np.ndarray,
                 action: np.ndarray, goal: np.ndarray, grad_r: np.ndarray, sub: np.ndarray,
                 step_size: float) -> dict:
    """The imagined step against the true one p' = p + step_size * a, through the decoder.

    jac [E, T, 2, 2]: dp_1/da; p1, p0 [E, T, 2]: the decoded position at s_1 and at the posterior
    s_0; pos [E, T, 2]: the true position; action [E, T, 2] (inside [-1, 1]: no clipping);
    goal [E, 2]; grad_r [E, T, 2]: dr_1/da; sub [E, T]. Every step counts except for
    ``next_position_abs_error``, over the pairs (t, t + 1) inside a sub-episode.
    """
    eye = step_size * np.eye(2)
    true_step = step_size * action
    model_step = p1 - p0
    to_goal = goal[:, None, :] - pos
    towards = goal[:, None, :] - p1
    unit = towards / np.maximum(np.linalg.norm(towards, axis=-1, keepdims=True), 1e-12)
    through = np.einsum("etij,eti->etj", jac, unit)  # d(1 - |p_1(a) - goal|)/da
    everywhere = np.ones(sub.shape, bool)
    same = inside_sub_episodes(sub)[:, 1:]
    return {"position_abs_error": float(np.linalg.norm(p0 - pos, axis=-1).mean()),
            "next_position_abs_error": float(np.linalg.norm(p1[:, :-1] - pos[:, 1:], axis=-1)[same].mean()),
            "jacobian_diag_mean": float(np.diagonal(jac, axis1=-2, axis2=-1).mean()),
            "jacobian_offdiag_abs_mean": float(np.abs(jac[..., [0, 1], [1, 0]]).mean()),
            "jacobian_rel_error": float((np.linalg.norm(jac - eye, axis=(-2, -1))
                                         / np.linalg.norm(eye)).mean()),
            # least-squares gain of the decoded step on the true step (1: right length)
            "step_gain": float(np.sum(model_step * true_step) / max(np.sum(true_step**2), 1e-12)),
            "step_cos": float(_cos(model_step, true_step).mean()),
            "dense_reward_through_model_step": gradient_figures(through, to_goal, everywhere),
            **against(grad_r, through, everywhere)}


def bayes_reference(pos: np.ndarray, action: np.ndarray, reward: np.ndarray, sub: np.ndarray,
                    goal: np.ndarray, grad_r: np.ndarray, goal_radius: float, reward_offset: float,
                    step_size: float, K: int, resolution: float = 0.0, grid: int = 3601) -> dict:
    """What the history allows: the one-step reward gradient of an exact Bayesian agent.

    The goal is (cos th, sin th), th ~ U[0, pi], and the reward at position p is
    1 - |p - goal| + reward_offset inside the goal disc (else 0), with no noise. Over a grid of
    th, the goals consistent with every (position, reward) the meta-episode has observed up to
    and including step t (each sub-episode's reset step, whose reward is 0 by convention, is left
    out) form the belief at t; its spread (``arc_deg``: max - min th, degrees) says how well the
    history pins the goal. ``resolution`` > 0 models an agent that reads each reward only to
    +-resolution (a goal is consistent if it predicts every observed reward that closely). The
    Bayesian gradient at t is the belief's mean of the true
    dr/da = step_size * (goal - p')/|goal - p'| (0 beyond the disc) at p' = p_t + step_size * a_t.

    pos, action, grad_r [E, T, 2]; reward, sub [E, T]; goal [E, 2] (only for the cosines).
    Returns figures over every step and per sub-episode: the Bayesian gradient's norm and cosine
    to the goal (``gradient_figures``), the mean arc and the fraction of steps with arc < 5
    degrees, and dr_1/da's mean cosine to the Bayesian gradient and mean-norm ratio to it.
    """
    th = np.linspace(0.0, np.pi, grid)
    cand = np.stack([np.cos(th), np.sin(th)], -1)  # [G, 2]
    step = th[1] - th[0]
    d = np.linalg.norm(pos[:, :, None, :] - cand, axis=-1)  # [E, T, G]
    # th is consistent with (p, r) if some goal within half a grid step of it gives r: its
    # distance from p is within slack = |p| step / 2 of d
    slack = 0.5 * step * np.linalg.norm(pos, axis=-1, keepdims=True)
    eps = 1e-4 + resolution
    r = reward[..., None]
    want = 1.0 + reward_offset - r  # the distance a reward r inside the disc means
    inside = (np.abs(d - want) <= slack + eps) & (want <= goal_radius + eps)
    outside = (np.abs(r) <= eps) & (d + slack > goal_radius)  # the disc's 0 beyond it
    fits = inside | outside | ~inside_sub_episodes(sub)[..., None]
    belief = np.cumprod(fits, axis=1).astype(bool)  # [E, T, G]: consistent with steps <= t
    count = belief.sum(-1)
    lo = np.where(belief, th, np.inf).min(-1)
    hi = np.where(belief, th, -np.inf).max(-1)
    arc = np.degrees(np.where(count > 0, hi - lo, np.nan))
    nxt = pos + step_size * np.clip(action, -1.0, 1.0)
    to = cand - nxt[:, :, None, :]  # [E, T, G, 2]
    dn = np.linalg.norm(to, axis=-1, keepdims=True)
    g = np.where(dn <= goal_radius, step_size * to / np.maximum(dn, 1e-12), 0.0)
    bayes = (g * belief[..., None]).sum(2) / np.maximum(count, 1)[..., None]  # [E, T, 2]
    to_goal = goal[:, None, :] - pos

    def block(m):
        m = m & (count > 0)
        return {**gradient_figures(bayes, to_goal, m),
                "arc_deg_mean": float(arc[m].mean()),
                "pinned_fraction": float((arc[m] < 5.0).mean()),
                **against(grad_r, bayes, m)}

    out = block(np.ones(sub.shape, bool))
    out["inconsistent_fraction"] = float((count == 0).mean())  # should be 0
    out["per_sub_episode"] = [block(sub == k) for k in range(K)]
    return out


DISTANCE_EDGES = (0.0, 1.0, 2.0, 4.0, 6.0, np.inf)  # distance from the sub-episode's start (0, 0)


def shrink_by_distance(filtered: np.ndarray, reward: np.ndarray, pos: np.ndarray,
                       edges=DISTANCE_EDGES) -> list:
    """The posterior reward head against the observed reward, by the robot's distance from its
    start: filtered, reward [E, T]; pos [E, T, 2]. Per bin: steps, mean reward, mean prediction
    and ``shrink`` = 1 - mean symlog(prediction) / mean symlog(reward), the fraction by which the
    head pulls its symlog-space mean towards 0 (0: unbiased; 1: predicts 0). Where the reward is
    negative, a shrink that grows with distance makes far states look better than they are."""
    symlog = lambda x: np.asarray(dist.symlog(x))
    dist_start = np.linalg.norm(pos, axis=-1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (dist_start >= lo) & (dist_start < hi)
        row = {"from": float(lo), "to": float(hi), "steps": int(m.sum())}
        if m.any():
            den = symlog(reward[m]).mean()
            row.update(reward_mean=float(reward[m].mean()), prediction_mean=float(filtered[m].mean()),
                       shrink=float(1.0 - symlog(filtered[m]).mean() / den) if abs(den) > 1e-3 else None)
        out.append(row)
    return out


def gradient_figures(grad: np.ndarray, to_goal: np.ndarray, mask: np.ndarray) -> dict:
    """|dG/da| and its cosine with the goal direction (mean, fraction > 0) over the states of
    ``mask``. grad, to_goal [..., 2]; mask [...] bool."""
    cos = _cos(grad, to_goal)[mask]
    return {"model_gradient_norm": float(np.linalg.norm(grad, axis=-1)[mask].mean()),
            "cos_model_gradient_to_goal": float(cos.mean()),
            "model_gradient_towards_goal_fraction": float((cos > 0).mean())}


def summarise(grad, action, mu, std, pos, goal, sub, K: int) -> dict:
    """grad/action/mu/std [E, T, 2]; pos [E, T, 2]; goal [E, 2]; sub [E, T] sub-episode index."""
    to_goal = goal[:, None, :] - pos
    cos_a = _cos(action, to_goal)
    sat = (np.abs(mu) > SATURATED).mean(-1)

    def block(m):
        return {**gradient_figures(grad, to_goal, m),
                "cos_action_to_goal": float(cos_a[m].mean()),
                "tanh_saturated_fraction": float(sat[m].mean()),
                "std_mean": float(std[m].mean()),
                "distance_to_goal_mean": float(np.linalg.norm(to_goal, axis=-1)[m].mean())}

    out = block(np.ones(sub.shape, bool))
    out["per_sub_episode"] = [block(sub == k) for k in range(K)]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--seed_index", type=int, default=0, help="which agent of a multi-seed run")
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--step", type=int, default=None,
                   help="checkpoint step (rounds) to probe; default: the latest")
    p.add_argument("--out", default=None, help="JSON path (default: <workdir>/actor_gradient.json)")
    args = p.parse_args()
    out = args.out or os.path.join(args.workdir, "actor_gradient.json")

    setup, run, train = load_trained(args.workdir, args.seed_index, args.step)
    c = setup.config
    if not c.env_name.startswith("point_robot"):
        raise SystemExit(f"probe_actor_gradient needs a point-robot run, got env {c.env_name!r}")
    agent = setup.agent
    tasks = trainer.sample_tasks(setup, HELD_OUT_SEED, args.tasks)
    rollout = held_out_rollout(setup, collect_lib.agent_policy(agent, train, mode=True),
                               agent.initial_carry(train, args.tasks), tasks)
    data = rollout.data
    e, t = data["reward"].shape

    @jax.jit
    def measure(data):
        filtered, _, post = reward_predictions(agent.wm, train.params["wm"], data,
                                               jax.random.PRNGKey(0), int(c.agent.imag_horizon))
        post = jax.tree.map(lambda x: x.reshape((e * t,) + x.shape[2:]), post)
        f = rssm_lib.feat(post)
        raw = agent.ac.actor.apply({"params": train.params["actor"]}, f)
        mu = jnp.split(raw.astype(jnp.float32), 2, -1)[0]
        mean, std = dist.normal_params(raw, c.agent.actor_min_std, c.agent.actor_max_std)
        grad, grad_r, r1 = one_step_return_terms(agent, train.params, post, mean,
                                                 jax.random.PRNGKey(1))
        # the decoder's reconstruction of the observed reward, back in the environment's units
        # and of the position (p0), from one decoder pass
        dec = agent.wm.apply_head(train.params["wm"], "decoder", f)
        decoded = dist.symexp(dec["reward"]) + config_lib.obs_reward_shift(c.agent)
        p0 = dist.symexp(dec["state"])
        p1, jac, dec_r1, dec_grad = one_step_decoded(agent, train.params, post, mean,
                                                     jax.random.PRNGKey(1))
        return (grad, mean, mu, std, r1, grad_r, filtered, decoded, p0, p1,
                jac.reshape(e * t, -1), dec_r1, dec_grad)

    (grad, mean, mu, std, r1, grad_r, filtered, decoded, p0, p1, jac, dec_r1,
     dec_grad) = (np.asarray(x).reshape(e, t, -1) for x in measure(data))
    jac = jac.reshape(e, t, 2, 2)
    pos = np.asarray(setup.meta.env.positions(np.asarray(data["state"])))
    goal = np.asarray(tasks["goal"])
    sub = np.asarray(collect_lib.observed_sub_idx(rollout))
    to_goal, everywhere = goal[:, None, :] - pos, np.ones(sub.shape, bool)
    rew = np.asarray(data["reward"])
    report = {"workdir": args.workdir, "frames": int(np.asarray(run.frames).reshape(-1)[0]),
              "updates": int(np.asarray(run.updates).reshape(-1)[0]), "tasks": args.tasks,
              "env_kwargs": c.env_kwargs.to_dict(),
              # the probed deterministic meta-episodes' returns (mean over tasks; per sub-episode)
              "meta_return": float(rew.sum(1).mean()),
              # steps beyond the goal disc, where the reward is 0: with goal_radius 10 a robot
              # running diagonally away at full speed (reach 1 + 100 * 0.1 * sqrt 2 = 15.1) gets
              # there, and 0 beats the 1 - d of the disc's outer ring
              "beyond_goal_radius_fraction": float(
                  (np.linalg.norm(to_goal, axis=-1) > setup.meta.env.goal_radius).mean()),
              "return_per_sub_episode": [float((rew * (sub == k)).sum(1).mean()) for k in range(c.K)],
              **summarise(grad, mean, mu, std, pos, goal, sub, c.K),
              "reward_fit": reward_fit(r1[..., 0], rew, sub, filtered[..., 0]),
              "posterior_reward_fit": posterior_fit(filtered[..., 0], rew),
              "decoder_reward_fit": decoder_fit(decoded[..., 0], filtered[..., 0], rew, sub),
              "dynamics_fit": dynamics_fit(jac, p1, p0, pos, mean, goal, grad_r, sub, STEP_SIZE),
              **{name: bayes_reference(pos, mean, rew, sub, goal, grad_r, setup.meta.env.goal_radius,
                                       setup.meta.env.reward_offset, STEP_SIZE, c.K, resolution)
                 for name, resolution in BAYES_RESOLUTIONS.items()},
              # the decoder's observed reward at s_1: the model's other r_1, and its gradient
              "decoder_r1_fit": reward_fit(dec_r1[..., 0], rew, sub),
              "decoder_r1_term": gradient_figures(dec_grad, to_goal, everywhere),
              "posterior_reward_by_distance_from_start": shrink_by_distance(filtered[..., 0], rew, pos),
              # the two terms of dG/da: the reward head's and the critic's (discount * cont * v_1)
              "reward_term": gradient_figures(grad_r, to_goal, everywhere),
              "critic_term": gradient_figures(grad - grad_r, to_goal, everywhere)}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(report, fh, indent=2)
    print(json.dumps({k: v for k, v in report.items() if k != "per_sub_episode"}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
