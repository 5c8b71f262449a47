#!/usr/bin/env bash
# Set up a bare Ubuntu GPU box and run the pipeline: Python 3.11 and the locked venv (`make .venv/.installed`),
# DVC credentials (untracked .dvc/config.local, or the environment), YOLOPIPE_STAGE_DIR on the best local disk,
# then `dvc pull`, `dvc repro`, `dvc push`.
#
#   scripts/bootstrap.sh [--key FILE] [--dry-run] [--only STEP]
#
#   --key FILE   the default remote's key: a GCS service-account JSON or an AWS credentials file; without it,
#                GOOGLE_APPLICATION_CREDENTIALS / AWS_* from the environment, or the machine's own role
#   --dry-run    print what would be done, change nothing
#   --only STEP  one step: system, venv, credentials, check, stage-dir, pipeline
#
# Idempotent: a second run (after a reboot or a spot kill) finds the venv installed, writes the same
# config.local, keeps the staging directory it picked first (.yolopipe/stage-dir), and `dvc repro` redoes only
# what is missing: training continues from models/last.pt.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
KEY=""
ONLY=""
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
STEPS="system venv credentials check stage-dir pipeline"
PICKED=.yolopipe/stage-dir  # the first run's choice, so a re-run stages into the same place

usage() { sed -n '2,12s/^# \{0,1\}//p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --key) KEY=${2:?--key needs a file}; shift ;;
        --only) ONLY=${2:?--only needs a step: $STEPS}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bootstrap: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$ONLY" ] && ! grep -qw -- "$ONLY" <<<"$STEPS"; then
    echo "bootstrap: unknown step '$ONLY'; steps: $STEPS" >&2
    exit 2
fi

say() { echo "bootstrap: $*"; }
fail() { echo "bootstrap: error: $*" >&2; exit 1; }
# Run a command, or under --dry-run print it (shell-quoted, so it can be pasted).
act() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '  would run:'; printf ' %q' "$@"; printf '\n'
    else
        printf '+'; printf ' %q' "$@"; printf '\n'
        "$@"
    fi
}
wanted() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }
as_root() { if [ "$(id -u)" = 0 ]; then act "$@"; else act sudo "$@"; fi; }
export PATH="$PWD/$VENV/bin:$PATH"
[ "${VENV#/}" != "$VENV" ] && export PATH="$VENV/bin:$PATH"  # an absolute VENV

step_system() {
    local missing=()
    command -v "$PYTHON" >/dev/null && "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
        || missing+=("$PYTHON" "$PYTHON-venv")
    command -v make >/dev/null || missing+=(make)
    command -v git >/dev/null || missing+=(git)
    if [ ${#missing[@]} = 0 ]; then
        say "system: $("$PYTHON" --version), make and git present"
    else
        say "system: installing ${missing[*]}"
        as_root apt-get update -q
        if [[ " ${missing[*]} " == *" $PYTHON "* ]] && ! apt-cache show "$PYTHON" >/dev/null 2>&1; then
            # Ubuntu 24.04 ships 3.12 only; the lock is for 3.11.
            as_root apt-get install -y -q software-properties-common
            as_root add-apt-repository -y ppa:deadsnakes/ppa
            as_root apt-get update -q
        fi
        as_root apt-get install -y -q "${missing[@]}"
    fi
    if command -v nvidia-smi >/dev/null; then
        say "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
    else
        say "GPU: no nvidia-smi (no NVIDIA driver): training runs on the CPU"
    fi
}

step_venv() {
    local locked
    locked=$(sed -n '1s/.*with Python \([0-9]*\.[0-9]*\).*/\1/p' requirements.lock)
    if command -v "$PYTHON" >/dev/null; then
        local have
        have=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        [ "$have" = "$locked" ] || fail "$PYTHON is Python $have; requirements.lock is for $locked (PYTHON=python$locked)"
    fi
    if make -q "VENV=$VENV" "$VENV/.installed" 2>/dev/null; then
        say "venv: $VENV is up to date with requirements.lock"
    else
        say "venv: $VENV from requirements.lock (Python $locked), the Makefile's install"
        act make "VENV=$VENV" "PYTHON=$PYTHON" "$VENV/.installed"
    fi
}

default_remote() {
    if command -v dvc >/dev/null; then dvc remote default; else sed -n 's/^ *remote *= *//p' .dvc/config; fi
}

step_credentials() {
    local remote
    remote=$(default_remote)
    if [ -n "$KEY" ]; then
        [ -f "$KEY" ] || fail "key file $KEY not found"
        KEY=$(cd "$(dirname "$KEY")" && pwd)/$(basename "$KEY")
        say "credentials: $KEY for remote '$remote', in .dvc/config.local (git-ignored)"
        act dvc remote modify --local "$remote" credentialpath "$KEY"
    elif [ -n "${GOOGLE_APPLICATION_CREDENTIALS:-}" ]; then
        say "credentials: GOOGLE_APPLICATION_CREDENTIALS from the environment; nothing written"
    elif [ -n "${AWS_ACCESS_KEY_ID:-}${AWS_PROFILE:-}" ]; then
        say "credentials: AWS_* from the environment; nothing written"
    else
        say "credentials: none given (--key, GOOGLE_APPLICATION_CREDENTIALS, AWS_*): the machine's own role, if any"
    fi
}

step_check() {
    say "check: the remote is reachable and the credentials can read it, before any GPU-hour"
    act yolopipe remote check --read-only
}

step_stage_dir() {
    if [ -n "${YOLOPIPE_STAGE_DIR:-}" ]; then
        say "stage-dir: YOLOPIPE_STAGE_DIR=$YOLOPIPE_STAGE_DIR from the environment"
    elif [ -s "$PICKED" ]; then
        YOLOPIPE_STAGE_DIR=$(cat "$PICKED")
        say "stage-dir: $YOLOPIPE_STAGE_DIR, picked by the first run ($PICKED)"
    else
        # Reading the mount table changes nothing, so --dry-run shows the real choice too.
        local why
        why=$(mktemp)
        if command -v yolopipe >/dev/null; then
            YOLOPIPE_STAGE_DIR=$(yolopipe box pick-stage-dir 2>"$why")
        else  # before the venv exists (a dry run on a bare box): the picker needs only the standard library
            YOLOPIPE_STAGE_DIR=$(PYTHONPATH=src python3 -m yolopipe.box.stagedir 2>"$why")
        fi
        sed 's/^/bootstrap: stage-dir: /' "$why"
        rm -f "$why"
        if [ -z "$YOLOPIPE_STAGE_DIR" ]; then
            say "stage-dir: none; data/staged stays inside the repository"
            return
        fi
        act mkdir -p "$(dirname "$PICKED")" "$YOLOPIPE_STAGE_DIR"
        if [ "$DRY_RUN" = 1 ]; then echo "  would record it in $PICKED"; else echo "$YOLOPIPE_STAGE_DIR" >"$PICKED"; fi
    fi
    export YOLOPIPE_STAGE_DIR
}

step_pipeline() {
    say "pipeline: pull what the remote has, reproduce what is missing or changed, push the results" \
        "(YOLOPIPE_STAGE_DIR=${YOLOPIPE_STAGE_DIR:-unset})"
    act dvc pull --allow-missing
    act dvc repro
    act dvc push
    say "done: commit the dvc.lock that names the new outputs: git add dvc.lock && git commit -m 'train: ...' && git push"
}

[ "$DRY_RUN" = 1 ] && say "dry run: nothing is installed, written or run"
for step in $STEPS; do
    if wanted "$step"; then
        "step_${step//-/_}"
    fi
done
