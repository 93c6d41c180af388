#!/usr/bin/env bash
# Train MAMBA on one multi-GPU node (data parallel over its GPUs).
# Run from the repository root (on the node, or on a workstation with --host); see usage().
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/gpu_node.sh --workdir=PATH [options] [-- extra experiments.train flags]

Two ways to use the node's GPUs (the trainer shards num_envs and batch_size over all devices, so
both must be divisible by the number of GPUs):
  --procs=1 (default)  one Python process drives every visible GPU; no jax.distributed needed.
  --procs=N            N processes, one per GPU, started by Open MPI's mpirun with --distributed
                       (jax.distributed.initialize() reads the rank and coordinator from
                       Open MPI 4's environment and pins each process to its local GPU).

options:
  --workdir=PATH     run folder (local disk, a shared file system, or gs://...) (required)
  --config=PATH      run config (default: experiments/configs/point_robot.py)
  --gpus=LIST        CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 (default: every GPU)
  --procs=N          processes (default: 1, see above)
  --host=HOST        run on HOST over ssh (repository at --repo there) instead of here
  --repo=DIR         repository checkout on --host (default: mamba-jax, in $HOME)
  --python=BIN       Python to run (default: python; e.g. .venv/bin/python)
  --resume           continue the run in --workdir from its latest checkpoint
  --background       detach with nohup (log: train_node.log, pid: train_node.pid, in the repo)
  --dry-run          print the exact command instead of running it
  -h, --help         this text

examples:
  launch/gpu_node.sh --dry-run --workdir=runs/pr_s0 --gpus=0,1
  launch/gpu_node.sh --workdir=runs/pr_s0 --procs=4 --python=.venv/bin/python -- --config.seed=1
EOF
}

die() { echo "gpu_node.sh: $*" >&2; echo "run launch/gpu_node.sh --help for usage" >&2; exit 2; }

quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./=:,@%+-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}
join_quoted() {
  local out="" w
  for w in "$@"; do out+="${out:+ }$(quote "$w")"; done
  printf '%s' "$out"
}

workdir=""
config="experiments/configs/point_robot.py"
gpus=""
procs=1
host=""
repo="mamba-jax"
python="python"
resume=0
background=0
dry_run=0
extra=()

while (($#)); do
  case "$1" in
    --workdir=*) workdir="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --gpus=*) gpus="${1#*=}" ;;
    --procs=*) procs="${1#*=}" ;;
    --host=*) host="${1#*=}" ;;
    --repo=*) repo="${1#*=}" ;;
    --python=*) python="${1#*=}" ;;
    --resume) resume=1 ;;
    --background) background=1 ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option: $1" ;;
  esac
  shift
done

[[ -n "$workdir" ]] || die "--workdir=PATH is required"
[[ "$procs" =~ ^[1-9][0-9]*$ ]] || die "--procs must be a positive integer, got: $procs"
[[ -z "$gpus" || "$gpus" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--gpus must look like 0,1,2, got: $gpus"

cmd=()
[[ -n "$gpus" ]] && cmd+=(env "CUDA_VISIBLE_DEVICES=$gpus")
if ((procs > 1)); then
  # -x forwards the variables every rank needs; --bind-to none leaves CPU placement to the OS.
  cmd+=(mpirun -np "$procs" --bind-to none -x PATH -x LD_LIBRARY_PATH)
  [[ -n "$gpus" ]] && cmd+=(-x CUDA_VISIBLE_DEVICES)
fi
cmd+=("$python" -m experiments.train "--config=$config" "--workdir=$workdir" --no_progress)
((procs > 1)) && cmd+=(--distributed)
((resume)) && cmd+=(--resume)
cmd+=("${extra[@]}")

line="$(join_quoted "${cmd[@]}")"
if ((background)); then
  line="nohup $line > train_node.log 2>&1 < /dev/null & echo \$! > train_node.pid"
fi

if [[ -n "$host" ]]; then
  full=(ssh "$host" "cd $(quote "$repo") && $line")
  if ((dry_run)); then join_quoted "${full[@]}"; echo; exit 0; fi
  exec "${full[@]}"
fi

if ((dry_run)); then
  echo "$line"
  exit 0
fi
if ((procs > 1)) && ! command -v mpirun >/dev/null 2>&1; then
  die "--procs=$procs needs Open MPI's mpirun on PATH (or use --procs=1: one process, all GPUs)"
fi
exec bash -c "$line"
