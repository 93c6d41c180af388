#!/bin/bash
# usage: results/diag_dense/swap600.sh <core> <seed> <from: meta_episode|window> <to: meta_episode|window> <tag>
# trains <from> for 600 updates, forks the run (experiments.fork_run --set=sequence=<to>),
# continues the fork with <to> to 1,500 updates.
set -e
cd "$(dirname "$0")/../.."
CORE=$1; SEED=$2; FROM=$3; TO=$4; TAG=$5
PY=".venv/bin/python"
COMMON="--task=point_robot --seeds=1 --variants=mamba --set=env_kwargs.goal_radius=10.0 --set=train_ratio=0.1 --compute_dtype=float32 --eval_every=50"
BASE=runs/swap600/base_$TAG; SW=runs/swap600/swap_$TAG
taskset -c $CORE $PY -m experiments.reproduce $COMMON --set=seed=$SEED --set=sequence=$FROM \
  --frames=25500 --workdir=$BASE --name=base_$TAG --out=runs/swap600/scratch
SRC=$(ls -d $BASE/point_robot_mamba_s1_*)
DST=$SW/$(basename $SRC | sed "s/sequence=$FROM/sequence=$TO/")
$PY -m experiments.fork_run --src=$SRC --dst=$DST --set=sequence=$TO
taskset -c $CORE $PY -m experiments.reproduce $COMMON --set=seed=$SEED --set=sequence=$TO \
  --frames=52500 --workdir=$SW --name=point_robot_dense_$TAG --out=results/diag_dense
gzip -c $DST/metrics.jsonl > results/inspect/point_robot_dense_${TAG}.metrics.jsonl.gz
echo DONE $TAG
