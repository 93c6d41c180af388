#!/bin/bash
# usage: results/diag_dense/probe_series.sh <core> <seed> <meta_episode|window> <frames> <tag>
# Dense control run that keeps a checkpoint every 100 updates, then probes the actor's one-step
# return gradient (experiments.probe_actor_gradient --step) at its checkpoints: when does the
# reward head's action gradient turn towards the goal, and does the return turn with it?
# Environment: EXTRA="--set=..." adds overrides (e.g. EXTRA=--set=env_kwargs.reward_offset=9.0);
# EVERY=n probes every n-th checkpoint (default 1); SKIP_TRAIN=1 only probes.
set -e
cd "$(dirname "$0")/../.."
CORE=$1; SEED=$2; SEQ=$3; FRAMES=$4; TAG=$5
PY=".venv/bin/python"
W=runs/series/$TAG
COMMON="--task=point_robot --seeds=1 --variants=mamba --set=env_kwargs.goal_radius=10.0 --set=train_ratio=0.1 --compute_dtype=float32 --eval_every=50"
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  taskset -c $CORE $PY -m experiments.reproduce $COMMON --set=seed=$SEED --set=sequence=$SEQ \
    --set=checkpoint_every_updates=100 --set=keep_checkpoints=40 ${EXTRA:-} \
    --frames=$FRAMES --workdir=$W --name=$TAG --out=runs/series/scratch_$TAG
fi
RUN=$(ls -d $W/point_robot_mamba_s1_*)
gzip -c $RUN/metrics.jsonl > results/inspect/point_robot_dense_series_${TAG}.metrics.jsonl.gz
OUT=results/inspect/series_$TAG; mkdir -p $OUT
for STEP in $(ls $RUN/checkpoints | grep -E '^[0-9]+$' | sort -n); do
  [ $((STEP % ${EVERY:-1})) = 0 ] || continue
  [ -f $OUT/step$STEP.json ] && continue
  taskset -c $CORE $PY -m experiments.probe_actor_gradient --workdir=$RUN --step=$STEP --tasks=20 \
    --out=$OUT/step$STEP.json > /dev/null
done
echo DONE $TAG
