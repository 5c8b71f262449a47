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
        if name not in ("synth", "report", "remote", "lockdiff"):  # the ones that read no params.yaml
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
    return parser


def _synth(args) -> None:
    from yolopipe.synth import synthesize

    result = synthesize(args.out, {"train": args.train, "val": args.val, "test": args.test},
                        args.width, args.height, args.seed)
    print(f"wrote {sum(result.images.values())} images ({result.instances} objects) to {result.root}")


def _validate(args) -> int:
    from yolopipe.validate import failure_message, validate

    # On its own (`yolopipe validate PATH` outside a project) it runs with the default policy.
    params = load_params(args.params) if args.dataset is None or args.params.is_file() else Params()
    dataset = args.dataset or params.data.root
    out = args.out or (paths.VALIDATE_DIR if args.dataset is None else None)
    result = validate(dataset, params.validate_, out)
    print(result.summary)
    if not result.passed:
        print(failure_message(result), file=sys.stderr)
        return 1
    return 0


def _stage(args) -> None:
    from yolopipe.stage import stage

    params = load_params(args.params)
    stage_dir = os.environ.get(paths.STAGE_DIR_ENV) or None
    print(stage(params.data.root, paths.STAGED_ROOT, params.stage, Path(stage_dir) if stage_dir else None).summary)


def _train(args) -> int:
    from yolopipe.train import train
    from yolopipe.train.resume import TrainingInterrupted

    params = load_params(args.params)
    stop_file = os.environ.get(paths.STOP_FILE_ENV) or None  # set by `yolopipe sweep` for its trials
    try:
        result = train(params.train, paths.STAGED_ROOT / "data.yaml", paths.MODELS_DIR, paths.TRAIN_DIR,
                       paths.SCRATCH_DIR, Path(stop_file) if stop_file else None)
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

    print(write_report(args.base, args.exp, args.out).summary)


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


if __name__ == "__main__":
    sys.exit(main())
