"""ASHA's decisions as clean, short experiments.

Tune stops a trial by ending its actor: the `dvc exp run` inside would be cut off mid-stage and leave no
experiment. So the scheduler here turns ASHA's STOP into a request on a small Ray actor; the trial sees it,
touches the stop file its training watches (YOLOPIPE_STOP_FILE), training ends after the epoch in progress
like a `train.max_hours` budget (best weights kept, `stopped_early: 1`), evaluate and export run, and the
experiment is recorded with the epochs it had. Works across nodes: the actor lives with the driver.
"""

from __future__ import annotations

import ray
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler


@ray.remote(num_cpus=0)
class StopRequests:
    """Trial ids ASHA asked to stop, with the epoch it decided at."""

    def __init__(self) -> None:
        self.requested: dict[str, int] = {}

    def request(self, trial_id: str, epoch: int) -> None:
        self.requested.setdefault(trial_id, epoch)

    def asked(self, trial_id: str) -> int | None:
        return self.requested.get(trial_id)

    def all(self) -> dict[str, int]:
        return dict(self.requested)


class FinishingAsha(AsyncHyperBandScheduler):
    """ASHA that lets a stopped trial finish its experiment instead of killing it."""

    def __init__(self, board, max_t: int, **kwargs) -> None:
        super().__init__(time_attr="epoch", max_t=max_t, **kwargs)
        self.board, self.max_epochs = board, max_t

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and result.get("epoch", 0) < self.max_epochs:
            self.board.request.remote(trial.trial_id, int(result["epoch"]))
        return TrialScheduler.CONTINUE  # the trial ends when its experiment is recorded
