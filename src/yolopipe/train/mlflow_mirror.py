"""The optional MLflow mirror (`train.mlflow_uri`): the training's params, per-epoch metrics and weights go to
a tracking server, for teams that already run one. DVC stays the record; the mirror must never slow or fail a
training, so every call runs in one background thread, and the first failure prints one warning and turns the
mirror off for the rest of the run. (Ultralytics' own MLflow callback stays off: see yolopipe.ultra.)"""

from __future__ import annotations

import os
import queue
import threading
import time
import urllib.request
from pathlib import Path

EXPERIMENT = "yolopipe"
CLOSE_TIMEOUT_S = 120  # the longest a finished training waits for its uploads before it gives up on them
# MLflow retries a failed request 7 times with exponential backoff (minutes); a mirror would rather give up.
QUICK_FAILURE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class MlflowMirror:
    """One MLflow run per training, fed from a queue by a daemon thread."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.run_id: str | None = None
        self.failure: str | None = None
        self._client = None
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="mlflow-mirror", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, uri: str | None, params: dict, tags: dict[str, str]) -> MlflowMirror | None:
        """None when `uri` is None (off); else a mirror that starts its run in the background."""
        if uri is None:
            return None
        for name, value in QUICK_FAILURE.items():  # the user's own settings win
            os.environ.setdefault(name, value)
        mirror = cls(uri)
        mirror._jobs.put((mirror._start, (params, tags)))
        return mirror

    def log_epoch(self, metrics: dict[str, float], step: int) -> None:
        self._jobs.put((self._log_metrics, (dict(metrics), step)))

    def close(self, artifacts: list[Path], status: str, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Upload `artifacts` (files that exist), end the run with `status` (FINISHED, FAILED, KILLED) and wait
        for the queue to drain, at most `timeout` seconds."""
        self._jobs.put((self._finish, ([p for p in artifacts if p.is_file()], status)))
        self._jobs.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._warn(f"still uploading after {timeout:.0f} s; giving up (the files stay in models/)")
        elif self.failure is None:
            print(f"yolopipe train: mirrored to MLflow at {self.uri} (run {self.run_id})", flush=True)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self.failure is not None:
                continue
            function, args = job
            try:
                function(*args)
            except Exception as exc:  # noqa: BLE001 - whatever the server or network does, training goes on
                self.failure = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                self._warn(f"off for this run ({self.failure}); training goes on")

    def _warn(self, what: str) -> None:
        print(f"yolopipe train: warning: MLflow mirror at {self.uri} {what}", flush=True)

    def _start(self, params: dict, tags: dict[str, str]) -> None:
        if self.uri.startswith(("http://", "https://")):  # fail in seconds, not after MLflow's retries
            with urllib.request.urlopen(f"{self.uri.rstrip('/')}/health", timeout=10):
                pass
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.uri)
        experiment = self._client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else self._client.create_experiment(EXPERIMENT)
        self.run_id = self._client.create_run(experiment_id, tags=tags, run_name="train").info.run_id
        self._client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())])

    def _log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def _finish(self, artifacts: list[Path], status: str) -> None:
        for path in artifacts:
            self._client.log_artifact(self.run_id, str(path), artifact_path="model")
        self._client.set_terminated(self.run_id, status)
