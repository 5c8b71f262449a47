# yolopipe on any GPU box: the locked environment, the repository and `dvc` on PATH.
#
#   docker build -t yolopipe .
#   docker run --gpus all -v "$PWD":/opt/yolopipe -v ~/keys/yolopipe-ci.json:/secrets/key.json:ro \
#     -e GOOGLE_APPLICATION_CREDENTIALS=/secrets/key.json yolopipe      # dvc pull, dvc repro, dvc push
#
# SageMaker starts the same image as `docker run IMAGE train`: scripts/docker-entrypoint.sh runs the job entry.
# Build from a clone: the image keeps .git, which DVC needs (a git worktree's .git points outside the context).
#
# Base: plain Python, not nvidia/cuda. The CUDA build of torch in requirements.lock brings its CUDA 13 libraries
# as pip packages (nvidia-cublas, nvidia-cudnn-cu13, nvidia-nccl-cu13, ...), and `--gpus` (the NVIDIA container
# toolkit) mounts the host's driver (libcuda); a CUDA runtime image would only add a second copy of the same
# libraries (gigabytes). The host needs an NVIDIA driver that supports CUDA 13 (580 or newer).
# The Python version is the one requirements.lock was resolved with (its first line); tests/test_docker.py keeps
# them, and the install commands below and the Makefile's, in step.
FROM python:3.11.7-slim-bookworm

# OpenCV (Ultralytics) loads libGL and glib; DVC runs git; make for the Makefile's verbs; tini as PID 1 reaps
# orphans and hands SIGTERM (a spot notice) to the whole process group (-g), so training saves its checkpoint.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git make libgl1 libglib2.0-0 tini \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*'

# The venv lives outside the repository, so a clone mounted over /opt/yolopipe keeps it.
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1
WORKDIR /opt/yolopipe

# The locked wheels in a layer of their own: a code change does not reinstall them.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock

COPY . .
RUN /opt/venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
    && touch /opt/venv/.installed

# Nothing downloads at run time: pip has no index, Ultralytics is offline (src/yolopipe/ultra.py sets it too).
ENV PIP_NO_INDEX=1 YOLO_OFFLINE=true YOLO_AUTOINSTALL=false
ENTRYPOINT ["tini", "-g", "--", "scripts/docker-entrypoint.sh"]
