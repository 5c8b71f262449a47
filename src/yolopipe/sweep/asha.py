"""ASHA's decisions as clean, short experiments.

Tune stops a trial by ending its actor: the `dvc exp run` inside would be cut off mid-stage and leave no
experiment. So the scheduler here records every decision, stop or go on, on a small Ray actor; the trial
waits for the decision on each epoch it reported, touches the stop file its training watches
(YOLOPIPE_STOP_FILE) on a stop, and only then lets training past the epoch (yolopipe.train.sweep_control).
Training ends after that epoch like a `train.max_hours` budget (best weights kept, `stopped_early: 1`),
evaluate and export run, and the experiment is recorded with the epochs it had. Works across nodes: the
actor lives with the driver.
"""

from __future__ import annotations

import ray
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler


@ray.remote(num_cpus=0)
class StopRequests:
    """The last epoch ASHA judged for each trial, and the trials it asked to stop (with the epoch)."""

    def __init__(self) -> None:
        self.judged: dict[str, int] = {}
        self.requested: dict[str, int] = {}

    def judge(self, trial_id: str, epoch: int, stop: bool) -> None:
        if stop:
            self.requested.setdefault(trial_id, epoch)
        self.judged[trial_id] = max(epoch, self.judged.get(trial_id, 0))

    def decision(self, trial_id: str, epoch: int) -> bool | None:
        """True: stop; False: go on; None: `epoch` not judged yet."""
        if self.judged.get(trial_id, 0) < epoch:
            return None
        return trial_id in self.requested

    def all(self) -> dict[str, int]:
        return dict(self.requested)


class FinishingAsha(AsyncHyperBandScheduler):
    """ASHA that lets a stopped trial finish its experiment instead of killing it."""

    def __init__(self, board, max_t: int, **kwargs) -> None:
        super().__init__(time_attr="epoch", max_t=max_t, **kwargs)
        self.board, self.max_epochs = board, max_t

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        epoch = int(result.get("epoch", 0))
        self.board.judge.remote(trial.trial_id, epoch, decision == TrialScheduler.STOP and epoch < self.max_epochs)
        return TrialScheduler.CONTINUE  # the trial ends when its experiment is recorded
