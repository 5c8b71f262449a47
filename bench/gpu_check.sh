#!/usr/bin/env bash
# The GPU check: one run on a GPU box proves the CUDA path and gives the figures for the README.
#
#   bench/gpu_check.sh [WORKDIR]     (default /tmp/yolopipe-gpu-check, deleted at the end unless KEEP=1)
#
# Under 8 minutes on one GPU: each part has a time limit, 465 s together (not yet run on a GPU):
#   1. a synthetic dataset sized like COCO at 640 px (640x480 JPEGs), made by `yolopipe synth`;
#   2. CUDA training with AMP through yolopipe's own train(): epoch time, images/s, peak GPU memory
#      (torch.cuda.max_memory_allocated) and mean GPU utilisation (nvidia-smi sampled every 200 ms);
#   3. Ultralytics' data loader from the original location, the staged copy (in YOLOPIPE_STAGE_DIR when set)
#      and the copy pre-resized to 640, on 1920x1080 JPEGs (bench/stage.py's loader benchmark);
#   4. the ONNX export and its parity check, and CUDA ONNX Runtime latency when onnxruntime-gpu is installed;
#   5. on a box with 2+ GPUs only (at most 420 s more), bench/ddp_check.py: `train.device: auto` trains on every
#      GPU (torch DDP): epoch time on 1 GPU and on all, rank 0's outputs complete and written once, and a
#      SIGTERM mid-run that stops every rank and a rerun that resumes (not yet run on a GPU either).
# Sizes: TRAIN_IMAGES (default 8000), EPOCHS (4), BATCH (32, the global batch under DDP), LOADER_IMAGES (800),
# DDP_EPOCHS (3).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${1:-/tmp/yolopipe-gpu-check}
TRAIN_IMAGES=${TRAIN_IMAGES:-8000}
EPOCHS=${EPOCHS:-4}
BATCH=${BATCH:-32}
LOADER_IMAGES=${LOADER_IMAGES:-800}
DDP_EPOCHS=${DDP_EPOCHS:-3}
PY=${PYTHON:-python}

fail() { echo "gpu_check: $*" >&2; exit 1; }
command -v nvidia-smi >/dev/null || fail "no nvidia-smi: this check needs an NVIDIA GPU and its driver (none here)"
nvidia-smi --query-gpu=name --format=csv,noheader >/dev/null 2>&1 || fail "nvidia-smi finds no GPU"
cuda=$("$PY" -c 'import torch; print(torch.cuda.is_available(), torch.__version__, torch.version.cuda)') \
    || fail "cannot import torch with $PY (activate the venv: . .venv/bin/activate)"
[ "${cuda%% *}" = True ] || fail "torch sees no CUDA device (torch, CUDA: ${cuda#* }); check the driver (CUDA 13 needs 580+)"

echo "gpu_check: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1);" \
     "torch, CUDA: ${cuda#* }; $(nproc) CPU cores"
mkdir -p "$WORK"
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$WORK"' EXIT; fi
started=$SECONDS

part() {  # a time limit per part, so a hung step cannot eat the budget
    local limit=$1; shift
    echo; echo "== $1 (at most ${limit} s)"; shift
    timeout --signal=TERM "$limit" "$@" || fail "that part failed or ran out of time (exit $?)"
}

[ -f "$WORK/coco-like/data.yaml" ] || part 90 "synthetic dataset: $TRAIN_IMAGES 640x480 images" \
    "$PY" -m yolopipe.cli synth "$WORK/coco-like" --train "$TRAIN_IMAGES" --val 500 --test 50 --width 640 --height 480
part 210 "CUDA training" "$PY" bench/gpu_check.py train "$WORK/coco-like" "$WORK" --epochs "$EPOCHS" --batch "$BATCH"
[ -f "$WORK/loader-1080p/data.yaml" ] || part 45 "loader dataset: $LOADER_IMAGES 1920x1080 images" \
    "$PY" -m yolopipe.cli synth "$WORK/loader-1080p" --train "$LOADER_IMAGES" --val 10 --test 0 --width 1920 --height 1080
part 60 "data loader" "$PY" bench/gpu_check.py loader "$WORK/loader-1080p" "$WORK"
part 60 "ONNX export" "$PY" bench/gpu_check.py export "$WORK/coco-like" "$WORK"
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
if [ "$gpus" -ge 2 ]; then
    part 420 "every GPU: $gpus GPUs with train.device auto (DDP)" \
        "$PY" bench/ddp_check.py "$WORK/coco-like" "$WORK" --epochs "$DDP_EPOCHS" --batch "$BATCH"
else
    echo; echo "== every GPU (DDP): skipped, $gpus GPU on this box"
fi
echo; echo "gpu_check: done in $((SECONDS - started)) s"
