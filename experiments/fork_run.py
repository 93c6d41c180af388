"""Branch a training run: continue one of its checkpoints under a changed config.

    python -m experiments.fork_run --src=runs/sparse_tr_9800 --step=98 \
        --dst=runs/fork/point_robot_mamba_s1_train_ratio=0.1_agent.behavior_batch_length=64 \
        --set=agent.behavior_batch_length=64

A one-change experiment from the middle of a run: the branch keeps the checkpoint's parameters,
optimiser states, replay buffer, counters and RNG key, so it and the original's own continuation
differ only by the ``--set`` fields. Fields that change the checkpoint's arrays (network sizes, K,
H) are refused with the arrays named; changes that only leave arrays unused (no window heads:
``--set=agent.reconstruction_window=0``) need ``--drop_unused``. ``--src`` is only read.

Continue the branch with ``experiments.reproduce``, given the same ``--set`` flags and a
``--workdir`` in which its run folder is ``--dst`` (it names them
``<workdir>/<task>_<variant>_s<seeds>_<FIELD>=<VALUE>...`` and resumes any that holds a
checkpoint), or from Python with ``run.train(run.load_config(DST), DST, resume=True)``.
"""
from __future__ import annotations

import argparse
import json
import sys

from mamba_jax import memory

memory.configure_process()

from experiments.reproduce import apply_overrides  # noqa: E402
from mamba_jax import checkpointing, run as run_lib  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="run folder to branch from (only read)")
    p.add_argument("--dst", required=True, help="new run folder (must not exist or be empty)")
    p.add_argument("--step", type=int, default=None, help="checkpoint (round) to branch at; "
                   "default: the latest")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="config change of the branch (repeatable), e.g. "
                        "--set=agent.behavior_batch_length=64")
    p.add_argument("--drop_unused", action="store_true",
                   help="allow changes that leave checkpoint arrays unused (e.g. "
                        "--set=agent.reconstruction_window=0 drops the window heads)")
    args = p.parse_args(argv)
    if not args.set:
        p.error("give at least one --set=FIELD=VALUE: a fork without a change is a copy")
    try:
        config = run_lib.load_config(args.src)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for kv in args.set:
        if kv.partition("=")[0] in ("variant", "num_seeds"):
            print(f"error: --set {kv!r}: {kv.partition('=')[0]} cannot change in a fork (it "
                  "selects the method / the number of agents, not one setting)", file=sys.stderr)
            return 2
    apply_overrides(config, args.set)
    try:
        record = run_lib.fork_run(args.src, args.dst, config, args.step, args.drop_unused)
    except (ValueError, checkpointing.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(record, indent=2, default=str))
    print(f"forked {args.src} at round {record['step']} ({record['updates']} updates) into "
          f"{args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
