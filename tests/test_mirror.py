"""The checkpoint mirror (YOLOPIPE_CHECKPOINT_DIR): what it copies, and that a workspace checkpoint wins."""

from yolopipe.train.mirror import CheckpointMirror


def test_mirror_then_restore_on_a_new_machine(tmp_path):
    last, live = tmp_path / "a" / "models" / "last.pt", tmp_path / "a" / "live"
    (live / "plots" / "metrics").mkdir(parents=True)
    (live / "plots" / "metrics" / "loss.tsv").write_text("step\tloss\n0\t1.0\n")
    last.parent.mkdir(parents=True)
    last.write_bytes(b"epoch 1")
    mirror = CheckpointMirror(tmp_path / "checkpoints")
    mirror.after_epoch(last, live)
    last.write_bytes(b"epoch 2")
    mirror.after_epoch(last, live)
    assert sorted(p.name for p in mirror.root.rglob("*") if p.is_file()) == ["last.pt", "loss.tsv"]  # no partials

    new_last, new_live = tmp_path / "b" / "models" / "last.pt", tmp_path / "b" / "live"
    assert mirror.restore(new_last, new_live)
    assert new_last.read_bytes() == b"epoch 2"
    assert (new_live / "plots" / "metrics" / "loss.tsv").read_text() == "step\tloss\n0\t1.0\n"


def test_a_checkpoint_in_the_workspace_is_not_replaced(tmp_path):
    mirror = CheckpointMirror(tmp_path / "checkpoints")
    assert not mirror.restore(tmp_path / "last.pt", tmp_path / "live")  # nothing mirrored yet
    mirror.root.mkdir()
    mirror.last.write_bytes(b"older")
    (tmp_path / "last.pt").write_bytes(b"newer")
    assert not mirror.restore(tmp_path / "last.pt", tmp_path / "live")
    assert (tmp_path / "last.pt").read_bytes() == b"newer"


def test_a_broken_mirror_warns_and_training_goes_on(trained, tmp_path, monkeypatch, capsys):
    from yolopipe.train import train

    monkeypatch.chdir(tmp_path)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the mirror directory should be")
    result = train(trained.params, trained.data_yaml, tmp_path / "models", tmp_path / "live", trained.scratch,
                   mirror_dir=blocked)
    assert result.epochs == trained.params.epochs and result.last.is_file()
    out = capsys.readouterr().out
    assert f"yolopipe train: warning: epoch 1 not mirrored to {blocked} (" in out
    assert "training goes on" in out
