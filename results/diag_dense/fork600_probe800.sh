#!/bin/bash
# Same MAMBA seed-1 run at 600 updates, continued 200 updates with whole episodes or with chunks; probe both at 800.
set -e
# needs the seed-1 MAMBA base of results/diag_dense/swap600.sh (tag swap600_mamba2chunks_seed1_tr0.1)
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
COMMON="--task=point_robot --seeds=1 --variants=mamba --set=env_kwargs.goal_radius=10.0 --set=train_ratio=0.1 --compute_dtype=float32 --eval_every=50 --set=seed=1"
SRC=$(ls -d runs/swap600/base_swap600_mamba2chunks_seed1_tr0.1/point_robot_mamba_s1_*)
for TO in meta_episode window; do
  W=runs/swap600/p800_$TO; DST=$W/$(basename $SRC | sed "s/sequence=meta_episode/sequence=$TO/")
  rm -rf $W; mkdir -p $W
  if [ $TO = window ]; then $PY -m experiments.fork_run --src=$SRC --dst=$DST --set=sequence=window
  else cp -r $SRC $DST; fi  # the unchanged continuation: a plain copy (fork_run refuses no-change forks)
  taskset -c 1 $PY -m experiments.reproduce $COMMON --set=sequence=$TO --frames=31500 --workdir=$W --name=p800_$TO --out=runs/swap600/scratch
  taskset -c 1 $PY -m experiments.probe_actor_gradient --workdir=$DST --tasks=20 --out=results/inspect/point_robot_dense_fork600_${TO}_seed1_800_actor_gradient.json
  gzip -c $DST/metrics.jsonl > results/inspect/point_robot_dense_fork600_${TO}_seed1_to800.metrics.jsonl.gz
done
echo DONE
