"""The epoch gate between a sweep trial and its training: training waits at each epoch until the trial has
passed on the scheduler's decision, so a stop lands at the epoch it was decided at on any load."""

import threading
import time
from pathlib import Path
from types import SimpleNamespace

from yolopipe import paths
from yolopipe.train.sweep_control import SweepControl


def _trainer(epoch: int, epochs: int = 4) -> SimpleNamespace:
    """The three attributes of Ultralytics' trainer the callback reads: 0-based epoch, epochs, stop."""
    return SimpleNamespace(epoch=epoch - 1, epochs=epochs, stop=False)


def _later(seconds: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


def test_training_waits_for_the_decision_then_stops_at_that_epoch(tmp_path, capsys):
    control = SweepControl(tmp_path / "stop", tmp_path / "gate")
    trainer = _trainer(epoch=1)
    writer = _later(0.3, lambda: (control.stop_file.write_text("ASHA\n"), control.gate_file.write_text("1\n")))
    started = time.monotonic()
    control.after_epoch(trainer)
    writer.join()
    assert time.monotonic() - started >= 0.3  # it did wait: without the gate it would race on
    assert trainer.stop is True
    assert "stopping after epoch 1" in capsys.readouterr().out


def test_a_go_on_decision_lets_training_continue(tmp_path):
    control = SweepControl(tmp_path / "stop", tmp_path / "gate")
    trainer = _trainer(epoch=2)
    control.gate_file.write_text("1\n")  # the previous epoch's decision does not release epoch 2
    writer = _later(0.3, lambda: control.gate_file.write_text("2\n"))
    started = time.monotonic()
    control.after_epoch(trainer)
    writer.join()
    assert time.monotonic() - started >= 0.3
    assert trainer.stop is False


def test_no_wait_on_the_last_epoch_or_after_a_stop_or_without_a_gate(tmp_path):
    control = SweepControl(tmp_path / "stop", tmp_path / "gate", timeout_s=30)
    control.after_epoch(_trainer(epoch=4, epochs=4))  # nothing left to decide
    stopped = _trainer(epoch=2)
    stopped.stop = True  # patience, the time budget or the final validation call
    control.after_epoch(stopped)
    ungated = SweepControl(tmp_path / "stop")
    trainer = _trainer(epoch=1)
    ungated.after_epoch(trainer)  # a sweep without a scheduler: the stop file alone
    assert trainer.stop is False
    (tmp_path / "stop").touch()
    ungated.after_epoch(trainer)
    assert trainer.stop is True


def test_a_silent_sweep_does_not_hold_training_forever(tmp_path, capsys):
    control = SweepControl(tmp_path / "stop", tmp_path / "gate", timeout_s=0.2)
    control.gate_file.write_text("not a number")  # torn or foreign content counts as nothing judged
    trainer = _trainer(epoch=1)
    control.after_epoch(trainer)
    assert trainer.stop is False
    assert "no sweep decision on epoch 1 after 0 s" in capsys.readouterr().out


def test_read_from_the_environment_the_trial_sets():
    assert SweepControl.from_env({}) is None
    control = SweepControl.from_env({paths.STOP_FILE_ENV: "/t/stop", paths.EPOCH_GATE_ENV: "/t/gate"})
    assert control == SweepControl(Path("/t/stop"), Path("/t/gate"))
    assert SweepControl.from_env({paths.STOP_FILE_ENV: "/t/stop"}).gate_file is None
