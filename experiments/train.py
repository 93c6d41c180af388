"""Train MAMBA from the command line.

    python -m experiments.train --config=experiments/configs/point_robot.py \
        --config.seed=3 --workdir=runs/pr [--resume] [--wandb_mode=online]

Any config field can be overridden with ``--config.<field>=<value>``; an unknown field or a bad
value fails before anything is compiled, with a message naming the field.
"""
from __future__ import annotations

import os
import sys

from mamba_jax import memory  # does not import jax

memory.use_compilation_cache()  # reuse compiled programs across runs (resume, sweeps)

if __name__ == "__main__":
    memory.relaunch_with_huge_pages()  # 2 MiB pages for XLA's per-call temp buffers (mamba_jax.memory)

memory.configure_process()  # before JAX's CPU backend exists: lean scheduler, 2 malloc arenas

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/point_robot.py",
                                          "Run config file (ml_collections).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (default runs/<env>_seed<seed>).")
_RESUME = flags.DEFINE_boolean("resume", False, "Continue the run in --workdir from its last checkpoint.")
_WANDB = flags.DEFINE_enum("wandb_mode", None, ["offline", "online", "disabled"],
                           "Overrides config.wandb_mode (online needs WANDB_API_KEY).")
_MAX_ROUNDS = flags.DEFINE_integer("max_rounds", None, "Stop after this many rounds (time-boxing).")
_NO_PROGRESS = flags.DEFINE_boolean("no_progress", False, "Hide the progress bar.")
_DISTRIBUTED = flags.DEFINE_boolean(
    "distributed", False, "Call jax.distributed.initialize() (multi-host). Without the three flags "
    "below, the cluster is auto-detected (Cloud TPU, SLURM, Open MPI).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (manual setup).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (manual setup).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (manual setup).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file operation at INFO
    if _DISTRIBUTED.value:
        import jax

        # cross-process collectives for CPU devices (no effect on TPU/GPU devices)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                                   num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    from mamba_jax import checkpointing, run, trainer

    config = _CONFIG.value
    if _WANDB.value:
        config.wandb_mode = _WANDB.value
    workdir = _WORKDIR.value or os.path.join("runs", f"{config.env_name}_seed{config.seed}")
    try:
        summary, _ = run.train(config, workdir, resume=_RESUME.value,
                               progress=not _NO_PROGRESS.value, max_rounds=_MAX_ROUNDS.value)
    except (trainer.ConfigError, FileExistsError, checkpointing.CheckpointError,
            run.TrainingAborted, MemoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    ev = summary.get("final_eval") or {}
    print(f"done: {summary['frames']} frames, {summary['updates']} updates in "
          f"{summary['wall_seconds']:.0f} s; eval return {ev.get('eval/return', float('nan')):.2f}; "
          f"run folder {workdir}")


if __name__ == "__main__":
    app.run(main)
