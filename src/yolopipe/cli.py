"""The `yolopipe` command: one subcommand per pipeline stage. It parses, calls, and reports."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from yolopipe import paths
from yolopipe.errors import PipelineError
from yolopipe.params import Params, load_params


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except PipelineError as exc:
        print(f"yolopipe {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"yolopipe {args.command}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolopipe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        # the ones that read no params.yaml
        if name not in ("synth", "report", "remote", "lockdiff", "box", "promote", "fetch"):
            sub.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameter file")
        return sub

    synth = command("synth", _synth, "write a deterministic synthetic YOLO dataset")
    synth.add_argument("out", type=Path, help="a new, empty directory")
    for split, count in (("train", 200), ("val", 50), ("test", 50)):
        synth.add_argument(f"--{split}", type=int, default=count, help=f"{split} images (default {count})")
    synth.add_argument("--width", type=int, default=256)
    synth.add_argument("--height", type=int, default=256)
    synth.add_argument("--seed", type=int, default=0)

    validate = command("validate", _validate, "check a YOLO dataset before any training")
    validate.add_argument("dataset", type=Path, nargs="?", help="dataset directory or data.yaml "
                          "(default: data.root from params.yaml)")
    validate.add_argument("--out", type=Path, default=None,
                          help=f"report directory (default: {paths.VALIDATE_DIR} for the params dataset)")
    command("stage", _stage, "copy the dataset onto local disk for training")
    pack = command("pack", _pack, "write a dataset as a few large tar shards plus an index, for `dvc add`")
    pack.add_argument("dataset", type=Path, help="dataset directory (or its data.yaml)")
    pack.add_argument("--out", type=Path, default=None, help="shards directory (default: DATASET.shards)")
    pack.add_argument("--repack", action="store_true", help="rewrite every shard, dropping dead bytes")
    command("train", _train, "train the detector on the staged dataset")
    command("evaluate", _evaluate, "score the trained model on the held-out split")
    command("export", _export, "export the model and check it against PyTorch")
    report = command("report", _report, "compare a baseline with experiments, commits or branches in markdown")
    report.add_argument("--base", help="baseline revision: a commit, branch, tag or experiment name")
    report.add_argument("--exp", nargs="+", default=[], metavar="REV",
                        help="revisions to compare with the baseline, `workspace` included "
                             "(default: the baseline's `dvc exp` experiments, or the workspace without --base)")
    report.add_argument("-o", "--out", type=Path, default=Path("report.md"),
                        help="markdown file; charts go to <name>_charts/ beside it (default: report.md)")
    report.add_argument("--registry-stage", default="prod",
                        help="show the registry's model in this stage beside the revisions (default: prod; "
                             "'' to leave it out)")
    promote = command("promote", _promote, "register a commit's model in the GTO registry and assign it a stage")
    promote.add_argument("--stage", required=True, help="registry stage (allowed: `stages` in .gto)")
    promote.add_argument("--version", help="semantic version like v1.2.0 (default: the next patch version)")
    promote.add_argument("--rev", help="commit, branch, tag or `dvc exp` experiment (default: the committed "
                                       "workspace)")
    promote.add_argument("--push", action="store_true", help="push the new git tags to origin")
    fetch = command("fetch", _fetch, "download the weights, ONNX export and model card of a registry stage")
    which = fetch.add_mutually_exclusive_group(required=True)
    which.add_argument("--stage", help="registry stage, e.g. prod")
    which.add_argument("--version", help="registered version, e.g. v1.2.0")
    fetch.add_argument("--repo", default=".", help="project path or git URL (default: this project)")
    fetch.add_argument("-o", "--out", type=Path, default=Path("model"), help="directory (default: model)")
    fetch.add_argument("-f", "--force", action="store_true", help="overwrite files already there")
    sweep = command("sweep", _sweep, "hyperparameter search on Ray Tune, every trial a DVC experiment")
    sweep.add_argument("sweep_file", type=Path, help="the search space and scheduler, e.g. sweep.yaml")
    command("lockdiff", _lockdiff, "after dvc repro: which outputs differ from the committed dvc.lock, and why")
    remote = command("remote", None, "DVC remote tools").add_subparsers(dest="action", required=True,
                                                                         metavar="ACTION")
    check = remote.add_parser("check", help="prove the remote is reachable, the credentials work and the bucket "
                                            "exists, before a long job")
    check.set_defaults(run=_remote_check)
    check.add_argument("-r", "--remote", help="remote name (default: the project's default remote)")
    check.add_argument("--read-only", action="store_true",
                       help="skip the write probe (for machines that only pull)")
    box = command("box", None, "set-up on a GPU machine: staging disk, SageMaker entry").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    pick = box.add_parser("pick-stage-dir", help="print the YOLOPIPE_STAGE_DIR for this machine (the local disk "
                                                 "with the most free space, NVMe first); why, on stderr")
    pick.set_defaults(run=_box_pick_stage_dir)
    pick.add_argument("--mounts", type=Path, default=Path("/proc/mounts"), help="the mount table to read")
    sagemaker = box.add_parser("sagemaker", help="run the pipeline as a SageMaker Training Job (/opt/ml layout; "
                                                 "the container's `train` command)")
    sagemaker.set_defaults(run=_box_sagemaker)
    sagemaker.add_argument("--channel", default="dataset", help="input channel holding the dataset "
                           "(absent: dvc pull)")
    sagemaker.add_argument("-r", "--remote", default=os.environ.get("YOLOPIPE_DVC_REMOTE") or None,
                           help="DVC remote to pull from and push to (default: $YOLOPIPE_DVC_REMOTE, else the "
                                "project's default remote)")
    sagemaker.add_argument("--no-push", action="store_true", help="leave out the final dvc push")
    return parser


def _synth(args) -> None:
    from yolopipe.synth import synthesize

    result = synthesize(args.out, {"train": args.train, "val": args.val, "test": args.test},
                        args.width, args.height, args.seed)
    print(f"wrote {sum(result.images.values())} images ({result.instances} objects) to {result.root}")


def _validate(args) -> int:
    from yolopipe.pack.index import is_packed
    from yolopipe.stage import stage
    from yolopipe.validate import failure_message, validate

    # On its own (`yolopipe validate PATH` outside a project) it runs with the default policy.
    params = load_params(args.params) if args.dataset is None or args.params.is_file() else Params()
    dataset = args.dataset or params.data.root
    out = args.out or (paths.VALIDATE_DIR if args.dataset is None else None)
    if is_packed(dataset):  # validate the copy training reads: extracted once (stage then finds it intact)
        dataset = stage(dataset, paths.STAGED_ROOT, params.stage, _stage_dir()).staged_root
    result = validate(dataset, params.validate_, out)
    print(result.summary)
    if not result.passed:
        print(failure_message(result), file=sys.stderr)
        return 1
    return 0


def _stage(args) -> None:
    from yolopipe.stage import stage

    params = load_params(args.params)
    print(stage(params.data.root, paths.STAGED_ROOT, params.stage, _stage_dir()).summary)


def _stage_dir() -> Path | None:
    stage_dir = os.environ.get(paths.STAGE_DIR_ENV) or None
    return Path(stage_dir) if stage_dir else None


def _pack(args) -> None:
    from yolopipe.pack.writer import pack

    params = load_params(args.params) if args.params.is_file() else Params()
    print(pack(args.dataset, params.pack, args.out, args.repack).summary)


def _train(args) -> int:
    from yolopipe.train import train
    from yolopipe.train.resume import TrainingInterrupted
    from yolopipe.train.sweep_control import SweepControl

    params = load_params(args.params)
    mirror_dir = os.environ.get(paths.CHECKPOINT_DIR_ENV) or None
    try:
        result = train(params.train, paths.STAGED_ROOT / "data.yaml", paths.MODELS_DIR, paths.TRAIN_DIR,
                       paths.SCRATCH_DIR, mirror_dir=Path(mirror_dir) if mirror_dir else None,
                       sweep=SweepControl.from_env())  # set by `yolopipe sweep` for its trials
    except TrainingInterrupted as stop:  # a spot instance's SIGTERM, or Ctrl-C: resumable, not an error
        print(f"yolopipe train: {stop}", file=sys.stderr)
        return stop.exit_code
    print(result.summary)
    return 0


def _evaluate(args) -> None:
    from yolopipe.evaluate import evaluate

    params = load_params(args.params)
    result = evaluate(params.evaluate, paths.BEST_WEIGHTS, paths.STAGED_ROOT / "data.yaml",
                      paths.EVALUATE_DIR, paths.SCRATCH_DIR)
    print(result.summary)


def _export(args) -> None:
    from yolopipe.export import export

    params = load_params(args.params)
    result = export(params.export, paths.BEST_WEIGHTS, paths.STAGED_ROOT / "data.yaml",
                    paths.MODELS_DIR, paths.EXPORT_DIR, paths.SCRATCH_DIR,
                    evaluation=paths.EVALUATE_DIR / "metrics.json", held_out=params.evaluate.split)
    print(result.summary)


def _report(args) -> None:
    from yolopipe.report import write_report

    print(write_report(args.base, args.exp, args.out, registry_stage=args.registry_stage or None).summary)


def _promote(args) -> None:
    from yolopipe.registry import promote

    print(promote(Path.cwd(), args.stage, args.version, args.rev, args.push).summary)


def _fetch(args) -> None:
    from yolopipe.registry import fetch

    print(fetch(args.repo, args.out, args.stage, args.version, args.force).summary)


def _sweep(args) -> int:
    from yolopipe.sweep import run_sweep

    result = run_sweep(args.sweep_file, Path.cwd(), args.params)
    print(result.summary)
    return 0 if result.best is not None else 1


def _lockdiff(args) -> None:
    from yolopipe.lockdiff import lock_diff

    print(lock_diff(Path.cwd()).summary)


def _remote_check(args) -> int:
    from yolopipe.remote.check import check_remote

    check = check_remote(Path.cwd(), args.remote, write=not args.read_only)
    print(check.report)
    return 0 if check.passed else 1


def _box_pick_stage_dir(args) -> None:
    from yolopipe.box.stagedir import pick_stage_dir, probe_mount

    choice = pick_stage_dir(args.mounts.read_text(), probe_mount)
    print(choice.report, file=sys.stderr)
    if choice.path is not None:
        print(choice.path)


def _box_sagemaker(args) -> int:
    from yolopipe.box.sagemaker import Layout, run_job

    result = run_job(Path.cwd(), Layout.from_env(os.environ, args.channel), args.remote, push=not args.no_push)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
