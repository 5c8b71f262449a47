#!/usr/bin/env bash
# The image's entrypoint (see Dockerfile).
#   no arguments: dvc pull, dvc repro, dvc push against the configured remote (YOLOPIPE_DVC_REMOTE picks
#                 another), credentials from GOOGLE_APPLICATION_CREDENTIALS or AWS_* in the environment
#   train:        what SageMaker runs; the Training Job entry (yolopipe box sagemaker)
#   anything else runs as given: bash, make test, yolopipe ...
set -euo pipefail

case "${1:-}" in
    "") ;;
    train) shift; exec yolopipe box sagemaker "$@" ;;
    *) exec "$@" ;;
esac

key=${GOOGLE_APPLICATION_CREDENTIALS:-}
if [ -n "$key" ] && [ ! -r "$key" ]; then
    echo "yolopipe image: GOOGLE_APPLICATION_CREDENTIALS=$key is not a readable file inside the container;" \
         "mount it: -v ~/keys/yolopipe-ci.json:$key:ro" >&2
    exit 1
fi
remote=()
if [ -n "${YOLOPIPE_DVC_REMOTE:-}" ]; then remote=(--remote "$YOLOPIPE_DVC_REMOTE"); fi

yolopipe remote check --read-only "${remote[@]}"  # a readable reason before any GPU-hour
dvc pull --allow-missing "${remote[@]}"
dvc repro
dvc push "${remote[@]}"
echo "yolopipe image: done; commit dvc.lock, which names the pushed outputs" \
     "(with the clone mounted at /opt/yolopipe it is in your clone)"
