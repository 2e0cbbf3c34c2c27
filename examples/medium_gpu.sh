#!/bin/bash
# The medium-scale study on one GPU: every seed of every family in its own process, all at once
# (under CUDA MPS where the machine has it, so that the small kernels of 15 processes overlap),
# then each family's records gathered into one folder and its report drawn from them.
#
#   bash examples/medium_gpu.sh [OUT]                 # default OUT: examples/results/medium
#   SCALE=medium16 bash examples/medium_gpu.sh        # the 16-mode medium scale -> examples/results/medium16
#
# Environment: SCALE (default medium), FAMILIES (default "diffreact ns2d dam_break"), SEEDS (default
# the scale's own), DEVICE (cuda),
# EXTRA (more options for every seed's run, e.g. "--set n_test=2" for a smoke test, or "--model-jobs 4" to train
# each seed's models side by side), SCRATCH (the per-seed folders and logs; default a fresh temporary folder,
# removed after a run without failures; one named here is kept, so that a run cut short leaves its finished seeds).
# The committed examples/results/medium/ came from this script on one NVIDIA H200 (15 seeds in 7 min).
# examples/results/medium16/ came from the same per-seed commands on one NVIDIA H100 (15 seeds in under 9 min),
# launched by a device wrapper that packed each finished record as it came but not the snapshots; their
# snapshot.npz files came later from `SCALE=medium16 SEEDS=10 bash examples/medium_gpu.sh /tmp/m16` on an H200
# (see the README), and examples/results/medium/'s from `SCALE=medium SEEDS=0 DEVICE=cpu bash examples/medium_gpu.sh
# /work/scratch/m8` on a 2-core CPU.
# examples/results/small16x2d4ex2/{ns2d,dam_break}/ came from
# `SCALE=small16x2d4ex2 FAMILIES="ns2d dam_break" bash examples/medium_gpu.sh /tmp/ex2` on one NVIDIA H200
# (10 seeds in 7.7 min), their records and snapshots copied in and each report redrawn by its results.md command.
set -euo pipefail
scale=${SCALE:-medium}
out=${1:-examples/results/$scale}
families=${FAMILIES:-diffreact ns2d dam_break}
seeds=${SEEDS:-$(python -c "from neuralop_merge.study.config import scale_seeds; print(*scale_seeds('$scale'))")}
device=${DEVICE:-cuda}
scratch=${SCRATCH:-$(mktemp -d)}
mkdir -p "$scratch"
if [[ $device == cuda* ]] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=$scratch/mps CUDA_MPS_LOG_DIRECTORY=$scratch/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  # The daemon may be gone by the end (seen on an H200): its absence must not fail a finished run.
  nvidia-cuda-mps-control -d && trap 'echo quit | nvidia-cuda-mps-control || true' EXIT
fi
# Copy a file into a folder without overwriting one already there (cp -n warns on newer coreutils and
# --update=none is unknown to older ones); fails when the file is missing.
keep() { [[ -f $1 ]] && { [[ -e $2/${1##*/} ]] || cp "$1" "$2/"; }; }
pids=()
for family in $families; do
  for seed in $seeds; do
    # One folder per seed: each process writes its own records and report, never another's.
    OMP_NUM_THREADS=1 python examples/"$family".py --scale "$scale" --device "$device" --seed "$seed" --no-progress \
      --out "$scratch/$family-s$seed" ${EXTRA:-} > "$scratch/$family-s$seed.log" 2>&1 &
    pids+=($!)
  done
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
for family in $families; do
  mkdir -p "$out/$family/records"
  complete=1
  for seed in $seeds; do
    if ! keep "$scratch/$family-s$seed/records/seed_$seed.json.gz" "$out/$family/records"; then
      echo "$family seed $seed did not finish; its log: $scratch/$family-s$seed.log" >&2; failed=1; complete=0
    fi
  done
  # The snapshot figure shows the first seed, as a run of all seeds in one folder would.
  first=${seeds%% *}
  keep "$scratch/$family-s$first/snapshot.npz" "$out/$family" || true
  # With every record there, this run only draws results.json, results.md and the figures (with one
  # missing it would train that seed here, on the CPU: rerun the script instead).
  if [[ $complete == 1 ]]; then
    python examples/"$family".py --scale "$scale" --no-progress --out "$out/$family" $(printf -- '--seed %s ' $seeds) ${EXTRA:-} | tail -n 4
  fi
done
[[ $failed == 0 && -z ${SCRATCH:-} ]] && rm -rf "$scratch"  # on failure the logs stay for reading
exit $failed
