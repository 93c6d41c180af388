#!/usr/bin/env bash
# Train MAMBA on every worker of a Cloud TPU VM pod (one process per host, jax.distributed).
# Run from the repository root on your workstation; see usage() or the README section "TPU pod".
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/tpu_pod.sh --workdir=gs://BUCKET/PATH [options] [-- extra experiments.train flags]

Starts `python3 -m experiments.train --distributed` on every worker of the TPU VM pod through
`gcloud compute tpus tpu-vm ssh $TPU_NAME --zone=$ZONE --worker=all --command=...`.
All hosts share one run folder, which must be on shared storage.

options:
  --tpu=NAME         TPU VM name (default: $TPU_NAME)
  --zone=ZONE        its zone (default: $ZONE)
  --project=ID       GCP project (default: $PROJECT, else gcloud's configured project)
  --workdir=gs://..  shared run folder (required): a gs:// path, or an absolute path on a file
                     system every worker mounts at the same place (Filestore, gcsfuse)
  --config=PATH      run config (default: experiments/configs/point_robot.py)
  --repo=DIR         the repository checkout on each worker (default: mamba-jax, in $HOME)
  --setup=GIT_URL    first clone/update GIT_URL into --repo on every worker and install it with
                     jax[tpu] at the version pinned in setup.py
  --python=BIN       Python on the workers (default: python3)
  --resume           continue the run in --workdir from its latest checkpoint
  --background       detach with nohup on every worker (log: <repo>/train_worker.log,
                     pid: <repo>/train_worker.pid) so the run survives the ssh session
  --stop             send SIGTERM to a --background run on every worker (it checkpoints, then
                     exits; continue later with --resume)
  --dry-run          print the exact commands instead of running them
  -h, --help         this text

examples:
  TPU_NAME=my-pod ZONE=us-central2-b launch/tpu_pod.sh --dry-run --workdir=gs://my-bucket/pr_s0
  launch/tpu_pod.sh --tpu=my-pod --zone=us-central2-b --setup=https://github.com/ORG/mamba-jax \
      --workdir=gs://my-bucket/pr_s0 --background -- --config.seed=0 --wandb_mode=offline
EOF
}

die() { echo "tpu_pod.sh: $*" >&2; echo "run launch/tpu_pod.sh --help for usage" >&2; exit 2; }

# Shell-quote one word for display and for the remote command line.
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

tpu="${TPU_NAME:-}"
zone="${ZONE:-}"
project="${PROJECT:-}"
workdir=""
config="experiments/configs/point_robot.py"
repo="mamba-jax"
setup_url=""
python="python3"
resume=0
background=0
stop=0
dry_run=0
extra=()

while (($#)); do
  case "$1" in
    --tpu=*) tpu="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --repo=*) repo="${1#*=}" ;;
    --setup=*) setup_url="${1#*=}" ;;
    --python=*) python="${1#*=}" ;;
    --resume) resume=1 ;;
    --background) background=1 ;;
    --stop) stop=1 ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option: $1" ;;
  esac
  shift
done

[[ -n "$tpu" ]] || die "no TPU name: pass --tpu=NAME or set TPU_NAME"
[[ -n "$zone" ]] || die "no zone: pass --zone=ZONE or set ZONE"
if ((!stop)); then
  [[ -n "$workdir" ]] || die "--workdir=gs://BUCKET/PATH is required"
  [[ "$workdir" == gs://* || "$workdir" == /* ]] \
    || die "--workdir must be shared by all hosts (gs://... or an absolute path on a shared mount), got: $workdir"
fi

ssh_base=(gcloud compute tpus tpu-vm ssh "$tpu" "--zone=$zone")
[[ -n "$project" ]] && ssh_base+=("--project=$project")
ssh_base+=(--worker=all)

run() {
  if ((dry_run)); then
    join_quoted "$@"
    echo
  else
    "$@"
  fi
}

if ((stop)); then
  remote="cd $(quote "$repo") && test -f train_worker.pid && kill -TERM \"\$(cat train_worker.pid)\""
  run "${ssh_base[@]}" "--command=$remote"
  exit 0
fi

if [[ -n "$setup_url" ]]; then
  jax_version="$(sed -n 's/.*"jax==\([0-9][0-9.]*\)".*/\1/p' setup.py 2>/dev/null | head -n1)"
  [[ -n "$jax_version" ]] || die "cannot read the pinned jax version from ./setup.py (run from the repo root)"
  r="$(quote "$repo")"
  setup_cmd="set -e; if [ -d $r/.git ]; then git -C $r pull --ff-only; else git clone $(quote "$setup_url") $r; fi;"
  setup_cmd+=" cd $r && $(quote "$python") -m pip install -q -e . 'jax[tpu]==$jax_version'"
  run "${ssh_base[@]}" "--command=$setup_cmd"
fi

train=("$python" -m experiments.train "--config=$config" "--workdir=$workdir" --distributed --no_progress)
((resume)) && train+=(--resume)
train+=("${extra[@]}")

remote="cd $(quote "$repo") && "
if ((background)); then
  remote+="nohup $(join_quoted "${train[@]}") > train_worker.log 2>&1 < /dev/null & echo \$! > train_worker.pid"
else
  remote+="$(join_quoted "${train[@]}")"
fi
run "${ssh_base[@]}" "--command=$remote"
