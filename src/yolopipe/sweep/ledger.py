"""What became of each trial, as Tune's driver saw it, and a clean-up for trials whose worker died."""

from __future__ import annotations

from ray.tune import Callback

from yolopipe.sweep.trial import TrialJob, reap, trial_dir


class TrialLedger(Callback):
    """Keeps every ended trial (its id, config, last result and error) for the sweep's summary."""

    def __init__(self, job: TrialJob) -> None:
        self.job = job
        self.ended: dict[str, object] = {}

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.ended[trial.trial_id] = trial

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        # A dead worker may leave its `dvc exp run` running. On this machine, stop it now; on another
        # node, the trial's retry stops it (yolopipe.sweep.trial.reap) before starting again.
        reap(trial_dir(self.job, trial.trial_id))
        self.ended[trial.trial_id] = trial
