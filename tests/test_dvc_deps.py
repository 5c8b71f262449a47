"""dvc.yaml's code deps are exactly the code each stage runs, so a code change never skips a stage that
should rerun, and editing code a stage does not run never reruns it (a retrain on a GPU box).

A stage's code is what its CLI handler imports (`yolopipe <stage>` -> cli._<stage>), followed through every
`import` of our package, function-level ones included, walked with `ast`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from yolopipe import cli

from conftest import REPO

SRC = REPO / "src"
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def module_path(name: str) -> Path | None:
    """The file of module `name` (yolopipe.x.y) under src/, or None if it is not one of ours."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(nodes: list[ast.AST], module: str, is_package: bool) -> set[str]:
    """Our modules imported anywhere inside `nodes` (which belong to `module`)."""
    found = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import submodule`
    return {name for name in found if name.split(".")[0] == "yolopipe" and module_path(name)}


def closure(roots: set[str]) -> set[Path]:
    """Every file of ours that importing `roots` runs: the modules, what they import, and their packages."""
    seen: set[Path] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            path = module_path(".".join(parts[:depth]))
            if path is None or path in seen:
                continue
            seen.add(path)
            todo += imports_of([ast.parse(path.read_text())], _module_name(path), path.name == "__init__.py")
    return seen


def stage_code(stage: str) -> set[Path]:
    """The files `dvc repro` runs for a stage: its CLI handler's imports, followed."""
    command = STAGES[stage]["cmd"].split()[1]
    handler = _handlers()[command]
    tree = ast.parse(Path(cli.__file__).read_text())
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == handler)
    # Names the handler uses that cli.py imports at module level (load_params, paths, ...).
    used = {node.id for node in ast.walk(function) if isinstance(node, ast.Name)}
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("yolopipe"):
            top_level |= {f"{node.module}.{a.name}" if module_path(f"{node.module}.{a.name}") else node.module
                          for a in node.names if (a.asname or a.name) in used}
    return closure(imports_of([function], "yolopipe.cli", False) | top_level)


def _handlers() -> dict[str, str]:
    parser = cli._parser()
    subcommands = next(a for a in parser._actions if a.choices and "train" in a.choices).choices
    return {name: sub.get_default("run").__name__ for name, sub in subcommands.items()
            if sub.get_default("run") is not None}


def code_deps(stage: str) -> list[Path]:
    return [REPO / dep for dep in STAGES[stage].get("deps", []) if str(dep).startswith("src/")]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_module_a_stage_runs_is_a_dep(stage):
    deps = code_deps(stage)
    missing = sorted(str(path.relative_to(REPO)) for path in stage_code(stage)
                     if not any(path == dep or dep in path.parents for dep in deps))
    assert missing == [], f"dvc.yaml: stage '{stage}' runs these files but does not list them in deps"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_lists_no_code_it_does_not_run(stage):
    code = stage_code(stage)
    for dep in code_deps(stage):
        files = sorted(dep.rglob("*.py")) if dep.is_dir() else [dep]
        unused = [str(f.relative_to(REPO)) for f in files if f not in code]
        # A folder is listed only when the stage runs all of it; else name the files it runs.
        assert unused == [], f"dvc.yaml: stage '{stage}' lists {dep.relative_to(REPO)} but does not run {unused}"


def test_the_walk_follows_function_level_and_package_imports():
    """The walk itself: train imports the remote package only inside a function of checkpoints.py's chain,
    and stage reaches resize only through sync."""
    train = {str(p.relative_to(SRC)) for p in stage_code("train")}
    assert {"yolopipe/__init__.py", "yolopipe/train/__init__.py", "yolopipe/train/checkpoints.py",
            "yolopipe/remote/__init__.py", "yolopipe/params.py"} <= train
    assert "yolopipe/remote/check.py" not in train
    assert "yolopipe/stage/resize.py" in {str(p.relative_to(SRC)) for p in stage_code("stage")}
