"""Reproduction runner: train MAMBA and baselines for several seeds and compare with references.

    python -m experiments.reproduce --task=point_robot --seeds=3 [--frames=1000000] \
        [--variants=mamba,dreamer] [--out=results] [--workdir=runs/reproduce]

For each variant, all seeds train in ONE program (``config.num_seeds``: vmap over a seed axis).
Afterwards every trained agent is evaluated on the same fixed held-out task set
(``--final_eval_tasks`` tasks from a seed no training run uses), together with the scripted
reference policy where one exists. Writes ``<out>/<task>.json`` (returns per sub-episode and per
meta-episode: mean and 95% CI over seeds (Student t), frames real and in the official logger's
double-counted units, wall time, machine) and ``<out>/<task>.png`` (learning curves with
reference lines). Interrupted runs resume from their checkpoints when started again.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import time

from mamba_jax import memory

memory.use_compilation_cache()  # a resumed run or a second stage reuses the compiled programs

if __name__ == "__main__":
    memory.relaunch_with_huge_pages()  # 2 MiB pages for XLA's per-call temp buffers (mamba_jax.memory)

memory.configure_process()  # before JAX's CPU backend exists

import jax  # noqa: E402
import numpy as np

from mamba_jax import logger as logger_lib
from mamba_jax import run as run_lib
from mamba_jax import trainer
from mamba_jax.behaviour import summarise_behaviour

HELD_OUT_SEED = 987654  # final-evaluation tasks; never used by training or periodic evaluation
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Student t 97.5% quantiles for n-1 degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_ci(values) -> dict:
    """Mean and 95% confidence half-width over seeds (t-interval; 0 for a single seed)."""
    v = np.asarray(values, np.float64)
    n = v.size
    half = 0.0 if n < 2 else _T975.get(n - 1, 1.96) * v.std(ddof=1) / math.sqrt(n)
    return {"mean": float(v.mean()), "ci95": float(half), "n": int(n), "values": v.tolist()}


def load_references(task: str) -> dict:
    with open(os.path.join(REPO, "experiments", "paper_numbers.json")) as f:
        return json.load(f).get(task, {"lines": {}})


def final_evaluation(setup, run_state, num_tasks: int):
    """On the held-out tasks: (returns [S, E, K] per seed, task and sub-episode, behaviour: one
    ``behaviour.summarise_behaviour`` dict per seed)."""
    tasks = trainer.sample_tasks(setup, HELD_OUT_SEED, num_tasks)
    key = jax.random.PRNGKey(HELD_OUT_SEED + 1)
    ev = trainer.compile_phases(setup).evaluate(run_state.train, tasks, key)
    returns, reward, sub = (np.asarray(ev[k]) for k in ("returns", "rewards", "transition_sub_idx"))
    if returns.ndim == 2:  # one seed: no seed axis
        returns, reward, sub = returns[None], reward[None], sub[None]
    K = setup.config.K
    return returns, [summarise_behaviour(reward[s], sub[s], K) for s in range(returns.shape[0])]


def behaviour_over_seeds(per_seed: list) -> dict:
    """Seed means and 95% CIs of the behaviour summaries' numbers (seeds where a number is
    undefined, e.g. no find in sub-episode 1, are left out of it), plus the per-seed dicts."""
    def agg(values):
        values = [v for v in values if v is not None]
        return mean_ci(values) if values else None

    K = len(per_seed[0]["sub_episodes"])
    subs = []
    for k in range(K):
        keys = per_seed[0]["sub_episodes"][k].keys()
        subs.append({name: agg([p["sub_episodes"][k][name] for p in per_seed]) for name in keys})
    return {"sub_episodes": subs,
            "first_hit_speedup_later_vs_first": agg(
                [p["first_hit_speedup_later_vs_first"] for p in per_seed]),
            "per_seed": per_seed}


def scripted_evaluation(setup, num_tasks: int):
    from envs import scripted

    made = scripted.scripted_for(setup.config.env_name, setup.meta)
    if made is None:
        return None
    policy, init = made
    tasks = trainer.sample_tasks(setup, HELD_OUT_SEED, num_tasks)
    from mamba_jax import collect as collect_lib

    rollout, _ = jax.jit(lambda k: collect_lib.collect(setup.meta, policy, init(num_tasks), k,
                                                        num_tasks, tasks=tasks))(
        jax.random.PRNGKey(HELD_OUT_SEED + 1))
    K = setup.config.K
    behaviour = summarise_behaviour(np.asarray(rollout.rewards), np.asarray(rollout.sub_idx), K)
    return np.asarray(collect_lib.sub_episode_returns(rollout, K)), behaviour  # [E, K], dict


def curve(metrics_path: str):
    """(frames, per-seed eval returns [n, S]) from a run's metrics.jsonl."""
    rows = [r for r in logger_lib.read_metrics(metrics_path) if "eval/return" in r]
    frames = np.array([r["frames"] for r in rows])
    per_seed = np.array([r.get("eval/return/per_seed", [r["eval/return"]]) for r in rows])
    return frames, per_seed


def apply_overrides(config, assignments) -> dict:
    """Apply ``FIELD=VALUE`` strings to ``config`` (FIELD may be dotted, e.g. ``agent.actor_lr``),
    parsing VALUE as the field's current type. Returns {FIELD: parsed value}."""
    applied = {}
    for kv in assignments:
        field, sep, value = kv.partition("=")
        *parents, leaf = field.split(".")
        node = config
        for name in parents:
            node = node.get(name) if hasattr(node, "get") else None
        if not sep or not hasattr(node, "get") or leaf not in node:
            raise SystemExit(f"--set {kv!r}: expected FIELD=VALUE with FIELD one of the config's "
                             f"fields (e.g. train_ratio, agent.actor_lr)")
        if field == "num_seeds":
            raise SystemExit("--set num_seeds: use --seeds")
        old = node[leaf]
        if hasattr(old, "keys"):
            raise SystemExit(f"--set {kv!r}: {field} is a group; set one of its fields")
        if isinstance(old, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise SystemExit(f"--set {kv!r}: {field} is a bool (true/false)")
            parsed = value.lower() in ("true", "1")
        elif old is None:
            parsed = value
        else:
            try:
                parsed = type(old)(value)
            except ValueError:
                try:
                    number = float(value)
                except ValueError:
                    number = None
                if not (isinstance(old, int) and number is not None and number.is_integer()):
                    raise SystemExit(f"--set {kv!r}: {field} expects a {type(old).__name__}") from None
                parsed = int(number)  # 1e6 for an int field
        node[leaf] = parsed
        applied[field] = parsed
    return applied


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="point_robot", help="config module in experiments/configs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--frames", type=int, default=None, help="real frames (default: the config's)")
    p.add_argument("--variants", default="mamba,dreamer")
    p.add_argument("--final_eval_tasks", type=int, default=100)
    p.add_argument("--compute_dtype", default=None)
    p.add_argument("--eval_every", type=int, default=None,
                   help="periodic evaluation every N collected meta-episodes (default: config's)")
    p.add_argument("--out", default="results")
    p.add_argument("--name", default=None, help="output file stem (default: the task name)")
    p.add_argument("--workdir", default="runs/reproduce")
    p.add_argument("--no_progress", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field for every variant (repeatable; applied after "
                        "--frames/--compute_dtype/--eval_every), e.g. --set=train_ratio=0.1 or "
                        "--set=agent.actor_lr=1e-4; recorded in the result file and in the run "
                        "folder names, so runs with other overrides never resume each other")
    args = p.parse_args()
    stem = args.name or args.task
    module = importlib.import_module(f"experiments.configs.{args.task}")
    overrides = apply_overrides(module.get_config(), args.set)  # fail before any training
    suffix = "".join(f"_{k}={v}" for k, v in overrides.items())

    refs = load_references(args.task)
    result = {"task": args.task, "seeds": args.seeds, "variants": {},
              "held_out_tasks": args.final_eval_tasks, "held_out_seed": HELD_OUT_SEED,
              "machine": {"cpu": platform.processor() or platform.machine(),
                          "cores": os.cpu_count(), "jax": jax.__version__,
                          "devices": [str(d) for d in jax.devices()]},
              "references": refs, "overrides": overrides}
    curves = {}
    for variant in args.variants.split(","):
        config = module.get_config(variant)
        config.num_seeds = args.seeds
        config.wandb_mode = "disabled"
        if args.frames:
            config.total_frames = args.frames
        if args.compute_dtype:
            config.compute_dtype = args.compute_dtype
        if args.eval_every:
            config.eval_every_meta_episodes = args.eval_every
        apply_overrides(config, args.set)
        workdir = os.path.join(args.workdir, f"{args.task}_{variant}_s{args.seeds}{suffix}")
        resume = os.path.isdir(os.path.join(workdir, "checkpoints")) and os.listdir(
            os.path.join(workdir, "checkpoints"))
        t0 = time.time()
        summary, state = run_lib.train(config, workdir, resume=bool(resume),
                                       progress=not args.no_progress)
        setup = trainer.make_setup(config)
        returns, behaviour = final_evaluation(setup, state, args.final_eval_tasks)  # [S, E, K]
        per_seed_sub = returns.mean(1)  # [S, K]
        frames = summary["frames"]
        prefill = setup.prefill * setup.length
        result["variants"][variant] = {
            "workdir": workdir,
            "frames_real": frames,
            "frames_official_logger_units": prefill + 2 * max(frames - prefill, 0),
            "updates": summary["updates"],
            "compute_dtype": setup.config.compute_dtype,
            "wall_seconds_this_call": time.time() - t0,
            # rounds + evaluations over all calls (resumes included), compile excluded
            "train_wall_seconds": sum(r.get("round_seconds", 0.0) + r.get("eval/seconds", 0.0)
                                      for r in logger_lib.read_metrics(
                                          os.path.join(workdir, "metrics.jsonl"))),
            "meta_episode_return": mean_ci(per_seed_sub.sum(-1)),
            "sub_episode_returns": [mean_ci(per_seed_sub[:, k]) for k in range(config.K)],
            "behaviour": behaviour_over_seeds(behaviour),
        }
        curves[variant] = curve(os.path.join(workdir, "metrics.jsonl"))
        marks = {}
        for mark in (60_000, 120_000):
            fr, ps = curves[variant]
            if len(fr) and fr[-1] >= mark:
                marks[str(mark)] = mean_ci([np.interp(mark, fr, ps[:, s]) for s in range(ps.shape[1])])
        result["variants"][variant]["eval_return_at_real_frames"] = marks
    scripted_config = module.get_config()
    apply_overrides(scripted_config, args.set)
    scripted = scripted_evaluation(trainer.make_setup(scripted_config), args.final_eval_tasks)
    if scripted is not None:
        scripted, scripted_behaviour = scripted
        result["scripted_reference"] = {"meta_episode_return": float(scripted.sum(-1).mean()),
                                        "sub_episode_returns": scripted.mean(0).tolist(),
                                        "behaviour": scripted_behaviour}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{stem}.json"), "w") as f:
        json.dump(result, f, indent=2)
    plot(result, curves, os.path.join(args.out, f"{stem}.png"))
    print(json.dumps({v: r["meta_episode_return"] for v, r in result["variants"].items()}, indent=1))
    for v, r in result["variants"].items():
        print(f"{v}: " + behaviour_line(r["behaviour"]["sub_episodes"]))


def behaviour_line(subs) -> str:
    """One line of the seed-mean behaviour: found rate and first-hit step per sub-episode."""
    def fmt(x, spec):
        return "-" if x is None else format(x["mean"], spec)
    return ("found rate " + " / ".join(fmt(s["found_rate"], ".2f") for s in subs) +
            "; first hit at step " + " / ".join(fmt(s["first_hit_step"], ".1f") for s in subs) +
            " (per sub-episode, seed means)")


def plot(result, curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    colours = {"mamba": "tab:blue", "dreamer": "tab:orange", "no_local_recon": "tab:green",
               "no_wm_schedule": "tab:purple"}
    for variant, (frames, per_seed) in curves.items():
        if not len(frames):
            continue
        m = per_seed.mean(1)
        c = colours.get(variant, None)
        ax.plot(frames, m, label=f"{variant} ({per_seed.shape[1]} seeds)", color=c)
        if per_seed.shape[1] > 1:
            s = per_seed.std(1, ddof=1) / np.sqrt(per_seed.shape[1])
            ax.fill_between(frames, m - 2 * s, m + 2 * s, alpha=0.2, color=c)
    refs = []
    if "scripted_reference" in result:
        refs.append(("scripted explore-then-exploit", result["scripted_reference"]["meta_episode_return"]))
    for name, value in result["references"].get("lines", {}).items():
        if value is not None:
            refs.append((name, value))
    for name, value in refs:
        ax.axhline(value, color="gray", ls=":", lw=1)
        ax.text(0, value, f" {name}: {value:.1f}", va="bottom", fontsize=7, color="gray")
    for mark in result["references"].get("official_pytorch_points", []):
        ax.plot(mark["frames"], mark["return"], "kx")
    ax.set_xlabel("real environment frames")
    ax.set_ylabel("eval meta-episode return (20 fixed tasks)")
    ax.set_title(f"{result['task']}: MAMBA vs baselines")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
