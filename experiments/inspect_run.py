"""Inspect a trained run: Figure-1-style behaviour plots and the world model's reward predictions.

    python -m experiments.inspect_run --workdir=runs/reproduce/point_robot_mamba_s3 \
        [--seed_index=0] [--tasks=100] [--out=results/inspect/point_robot_mamba]

Writes, for the held-out task set of ``experiments.reproduce`` (never used in training):

* ``<out>_figure1.png``: the trained agent's deterministic meta-episodes on four held-out tasks,
  one colour per sub-episode (as in the paper's Figure 1; 2D tasks only).
* ``<out>_agent.gif``: for MuJoCo (MJX) tasks, the agent's deterministic meta-episode on the first
  held-out task, rendered headless with ``envs.render_mujoco`` (every ``--gif_stride``-th step).
* ``<out>_reward.png`` and ``<out>_reward.json``: how well the world model predicts reward
  (the paper's Figure-2 question: does the model know where the reward is once it has seen it?).
  For meta-episodes of the trained agent and, where one exists, of the scripted
  explore-then-exploit policy, per sub-episode: the true return, the return the model predicts
  from its posterior (filtering: the reward is also an input, so this is a consistency check),
  and the return it predicts open-loop ``k`` steps ahead (imagination from the posterior at t-k
  along the actions actually taken, k = the config's imagination horizon), which is what the
  actor is trained on. Also the mean k-step prediction at steps with and without true reward.
* ``<out>_value.png`` and ``critic`` in the JSON: the critic's value at each step against the
  discounted return-to-go actually collected from there (does the value know what lies ahead?).
* ``behaviour`` in the JSON: per sub-episode, how often the policy finds the reward and after how
  many steps, also conditioned on whether sub-episode 1 found it (the explore-then-exploit
  signature in behaviour rather than return; ``summarise_behaviour``).
"""
from __future__ import annotations

import argparse
import json
import os

from mamba_jax import memory

memory.configure_process()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.reproduce import HELD_OUT_SEED  # noqa: E402
from mamba_jax import actor_critic  # noqa: E402
from mamba_jax.behaviour import summarise_behaviour  # noqa: E402
from mamba_jax import collect as collect_lib  # noqa: E402
from mamba_jax import rssm as rssm_lib  # noqa: E402
from mamba_jax import run as run_lib  # noqa: E402
from mamba_jax import trainer  # noqa: E402


def load_trained(workdir: str, seed_index: int = 0, step=None):
    """(setup, run, train) of a run folder: ``run_lib.load_run``'s setup and run state (latest
    checkpoint, or checkpoint ``step``, a round count), and the train state of agent
    ``seed_index`` (the agent is per seed in a multi-seed run)."""
    setup, run, _ = run_lib.load_run(workdir, step)
    train = run.train
    if setup.config.num_seeds > 1:
        train = jax.tree.map(lambda x: x[seed_index], train)
    return setup, run, train


def held_out_rollout(setup, policy, carry, tasks, keep_states: bool = False):
    """One meta-episode of ``policy`` on each held-out task of ``tasks`` (leaves [E, ...]) with
    the fixed held-out key, so every inspection of a run sees the same meta-episodes."""
    n = jax.tree.leaves(tasks)[0].shape[0]
    rollout, _ = jax.jit(lambda k: collect_lib.collect(setup.meta, policy, carry, k, n, tasks=tasks,
                                                       keep_states=keep_states))(
        jax.random.PRNGKey(HELD_OUT_SEED + 1))
    return rollout


def reward_predictions(wm, params, data: dict, key: jax.Array, k: int):
    """World-model reward predictions along recorded meta-episodes.

    data: replay-format dict with leaves [E, T, ...] ('action' [E, T, A] is the action that led to
    step t). Returns (filtered [E, T], open_loop [E, T], post): filtered[:, t] = reward head at the
    posterior of step t; open_loop[:, t] = reward predicted for step t by imagining k prior steps
    from the posterior at t-k with the recorded actions (NaN for t < k); post = the posterior
    states those come from (leaves [E, T, ...]), for other heads to read the same sample.
    """
    e, t = data["reward"].shape
    k_obs, k_img = jax.random.split(key)
    embed = wm.embed(params, data)
    post, _, _ = rssm_lib.observe(wm.rssm, params["rssm"], embed, data["action"],
                                  data["is_first"], k_obs)
    filtered = wm.reward(params, rssm_lib.feat(post))
    n = t - k
    state = jax.tree.map(lambda x: x[:, :n].reshape((e * n,) + x.shape[2:]), post)
    actions = jnp.stack([data["action"][:, j + 1:j + 1 + n] for j in range(k)])  # [k, E, n, A]
    actions = actions.reshape((k, e * n) + actions.shape[3:])

    def step(s, inp):
        a, kk = inp
        s, _ = wm.img_step(params, s, a, kk)
        return s, None

    state, _ = jax.lax.scan(step, state, (actions, jax.random.split(k_img, k)))
    ahead = wm.reward(params, rssm_lib.feat(state)).reshape(e, n)
    open_loop = jnp.concatenate([jnp.full((e, k), jnp.nan), ahead], axis=1)
    return filtered, open_loop, post


def return_to_go(reward: np.ndarray, discount: float) -> np.ndarray:
    """What the critic estimates at step t, from the recorded rewards: [E, T] -> [E, T],
    G_t = sum_{j>=1} discount^(j-1) r_{t+j}, truncated at the end of the meta-episode (the
    critic is trained without a terminal there, so late steps' G_t fall short of its target).
    The critic's own lambda-return with lambda = 1 and a zero bootstrap (float32)."""
    r = jnp.asarray(reward, jnp.float32).T  # [T, E], time-major
    g = actor_critic.lambda_returns(r, jnp.full_like(r, discount), jnp.zeros_like(r), 1.0)
    return np.concatenate([np.asarray(g).T, np.zeros_like(reward[:, :1], np.float32)], 1)


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two flat arrays; None where either is constant."""
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None


def summarise_values(rollout, values, discount: float, K: int, H: int) -> dict:
    """The critic against the discounted return-to-go of the same meta-episodes, on the steps whose
    return-to-go spans at least the critic's effective horizon within the meta-episode (the first
    sub-episode, so truncation matters least)."""
    rew = np.asarray(rollout.data["reward"], np.float64)
    g = return_to_go(rew, discount)
    v = np.asarray(values, np.float64)
    first = slice(0, H)
    gv, vv = g[:, first].ravel(), v[:, first].ravel()
    return {"discount": discount,
            "value_mean_first_sub_episode": float(vv.mean()),
            "return_to_go_mean_first_sub_episode": float(gv.mean()),
            "value_to_return_ratio": float(vv.mean() / gv.mean()) if gv.mean() > 0 else None,
            "correlation_first_sub_episode": correlation(gv, vv),
            "value_mean_per_sub_episode": [float(v[:, k * H:(k + 1) * H].mean()) for k in range(K)],
            "return_to_go_mean_per_sub_episode": [float(g[:, k * H:(k + 1) * H].mean())
                                                  for k in range(K)]}


def summarise(rollout, filtered, open_loop, K: int) -> dict:
    """Per-sub-episode true / filtered / k-step returns (means over meta-episodes)."""
    rew = np.asarray(rollout.data["reward"])  # reward observed at step t (from the transition t-1 -> t)
    sub_obs = np.asarray(collect_lib.observed_sub_idx(rollout))  # the reward observed at t
    f, o = np.asarray(filtered), np.asarray(open_loop)
    out = {"sub_episodes": []}
    for k in range(K):
        m = sub_obs == k
        valid = m & ~np.isnan(o)
        out["sub_episodes"].append({
            "true_return": float((rew * m).sum(1).mean()),
            "filtered_return": float((f * m).sum(1).mean()),
            "open_loop_return": float(np.where(valid, o, 0).sum(1).mean()),
        })
    hit = (rew > 0) & ~np.isnan(o)
    miss = (rew == 0) & ~np.isnan(o)
    out["open_loop_mean_at_reward_steps"] = float(o[hit].mean()) if hit.any() else None
    out["true_mean_at_reward_steps"] = float(rew[hit].mean()) if hit.any() else None
    out["open_loop_mean_at_zero_steps"] = float(o[miss].mean()) if miss.any() else None
    out["reward_steps_fraction"] = float(hit.mean())
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--seed_index", type=int, default=0, help="which agent of a multi-seed run")
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--out", default=None, help="output stem (default: <workdir>/inspect)")
    p.add_argument("--gif_stride", type=int, default=2, help="MJX tasks: GIF frame every n steps")
    args = p.parse_args()
    out = args.out or os.path.join(args.workdir, "inspect")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    setup, run, train = load_trained(args.workdir, args.seed_index)
    c = setup.config
    agent, wm = setup.agent, setup.agent.wm
    tasks = trainer.sample_tasks(setup, HELD_OUT_SEED, args.tasks)
    k = int(c.agent.imag_horizon)

    policies = {"agent": (collect_lib.agent_policy(agent, train, mode=True),
                          agent.initial_carry(train, args.tasks))}
    from envs import scripted

    made = scripted.scripted_for(c.env_name, setup.meta)
    if made is not None:
        policies["scripted"] = (made[0], made[1](args.tasks))

    report = {"workdir": args.workdir, "frames": int(np.asarray(run.frames).reshape(-1)[0]),
              "updates": int(np.asarray(run.updates).reshape(-1)[0]), "k": k,
              "tasks": args.tasks, "held_out_seed": HELD_OUT_SEED, "policies": {}}
    traces = {}
    mujoco_task = hasattr(setup.meta.env, "mj_model")
    for name, (policy, carry) in policies.items():
        rollout = held_out_rollout(setup, policy, carry, tasks,
                                   keep_states=mujoco_task and name == "agent")
        filtered, open_loop, post = jax.jit(lambda d: reward_predictions(
            wm, train.params["wm"], d, jax.random.PRNGKey(0), k))(rollout.data)
        report["policies"][name] = summarise(rollout, filtered, open_loop, c.K)
        # the critic at the same posterior sample the reward predictions filter with
        values = np.asarray(jax.jit(agent.ac.value)(train.params["critic"], rssm_lib.feat(post)))
        report["policies"][name]["critic"] = summarise_values(
            rollout, values, float(c.agent.discount), c.K, c.H)
        report["policies"][name]["behaviour"] = summarise_behaviour(
            np.asarray(rollout.rewards), np.asarray(rollout.sub_idx), c.K)
        traces[name] = (rollout, np.asarray(filtered), np.asarray(open_loop), values)
        print(name, json.dumps(report["policies"][name]), flush=True)

    with open(out + "_reward.json", "w") as f:
        json.dump(report, f, indent=2)
    _plot_rewards(traces, c, out + "_reward.png", report)
    _plot_values(traces, c, out + "_value.png", report)
    env = setup.meta.env
    if hasattr(env, "positions"):
        _plot_figure1(setup, traces["agent"][0], tasks, out + "_figure1.png", report)
    if mujoco_task:
        _write_gif(setup, traces["agent"][0], out + "_agent.gif", args.gif_stride)
    print(f"wrote {out}_reward.json, {out}_reward.png, {out}_value.png" +
          (f", {out}_figure1.png" if hasattr(env, "positions") else "") +
          (f", {out}_agent.gif" if mujoco_task else ""))


def _write_gif(setup, rollout, path, stride):
    """The agent's meta-episode on held-out task 0 as a GIF (MuJoCo frames, goals drawn)."""
    from envs import render_mujoco

    ok, why = render_mujoco.rendering_available()
    if not ok:
        print(f"no GIF: {why}")
        return
    first = jax.tree.map(lambda x: np.asarray(x)[0, ::stride], rollout.env_states)
    render_mujoco.render_rollout(setup.meta.env, first, path, fps=20)


def _plot_per_policy(traces, c, path, suptitle, ylabel, legend_loc, draw):
    """One panel per policy on its most rewarded meta-episode (so there is something to see),
    sub-episode boundaries dotted; ``draw(ax, trace, i, t)`` adds the lines."""
    names = list(traces)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.6 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        rew = np.asarray(traces[name][0].data["reward"])
        i = int(np.argmax(rew.sum(1)))
        draw(ax, traces[name], i, np.arange(rew.shape[1]))
        for b in range(1, c.K):
            ax.axvline(b * c.H, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{name} policy, held-out task {i}", fontsize=9)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, loc=legend_loc)
    axes[-1, 0].set_xlabel("meta-episode step")
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_rewards(traces, c, path, report):
    def draw(ax, trace, i, t):
        rollout, filtered, open_loop, _ = trace
        ax.plot(t, np.asarray(rollout.data["reward"])[i], color="k", lw=1.5, label="true reward")
        ax.plot(t, filtered[i], color="tab:orange", lw=1, label="model: filtered")
        ax.plot(t, open_loop[i], color="tab:purple", lw=1, ls="--",
                label=f"model: {report['k']}-step open loop")

    _plot_per_policy(traces, c, path, f"{c.env_name}: world-model reward predictions at "
                     f"{report['frames']} frames", "reward", "upper left", draw)


def _plot_values(traces, c, path, report):
    """Critic value vs the discounted return-to-go along the most rewarded meta-episode."""
    def draw(ax, trace, i, t):
        rollout, _, _, values = trace
        rtg = return_to_go(np.asarray(rollout.data["reward"])[i:i + 1], float(c.agent.discount))
        ax.plot(t, rtg[0], color="k", lw=1.5,
                label=f"discounted return-to-go ({c.agent.discount})")
        ax.plot(t, values[i], color="tab:green", lw=1, label="critic value")

    _plot_per_policy(traces, c, path, f"{c.env_name}: critic vs return at {report['frames']} "
                     f"frames, {report['updates']} updates", "value", "upper right", draw)


def _plot_figure1(setup, rollout, tasks, path, report):
    from envs import render

    env = setup.meta.env
    states = np.asarray(rollout.data["state"])
    sub = np.asarray(collect_lib.observed_sub_idx(rollout))
    returns = np.asarray(collect_lib.sub_episode_returns(rollout, setup.config.K))
    wide = env.name == "rooms"
    fig, axes = plt.subplots(1, 4, figsize=(16, 3) if wide else (14, 3.8))
    for j, ax in enumerate(axes):
        task = jax.tree.map(lambda x: np.asarray(x)[j], tasks)
        render.draw_meta_episode(ax, env, np.asarray(env.positions(states[j])), sub[j], task,
                                 legend=(j == 0))
        ax.set_title("returns " + " / ".join(f"{r:.0f}" for r in returns[j]), fontsize=9)
    fig.suptitle(f"{env.name}: trained agent on held-out tasks ({report['frames']} frames)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
