"""Where each stage reads and writes, relative to the repository root. dvc.yaml names the same paths."""

from pathlib import Path

STAGED_ROOT = Path("data/staged")  # the local copy training reads (a DVC output, never the source)
STAGE_DIR_ENV = "YOLOPIPE_STAGE_DIR"  # a machine's local staging disk; STAGED_ROOT then links into it
STOP_FILE_ENV = "YOLOPIPE_STOP_FILE"  # a sweep trial asks training to finish after this epoch by creating the file
EPOCH_GATE_ENV = "YOLOPIPE_EPOCH_GATE"  # training waits after each epoch until a sweep trial has judged it there
STAGE_MARKER = ".yolopipe-stage.json"  # the staged copy's trust marker; in .dvcignore (machine-specific mtimes)
CHECKPOINT_DIR_ENV = "YOLOPIPE_CHECKPOINT_DIR"  # a directory the platform syncs off the box (SageMaker's)
MODELS_DIR = Path("models")
BEST_WEIGHTS = MODELS_DIR / "best.pt"
LAST_WEIGHTS = MODELS_DIR / "last.pt"
RESULTS_DIR = Path("results")
VALIDATE_DIR = RESULTS_DIR / "validate"
TRAIN_DIR = RESULTS_DIR / "train"  # dvclive's directory
EVALUATE_DIR = RESULTS_DIR / "evaluate"
EXPORT_DIR = RESULTS_DIR / "export"
SCRATCH_DIR = Path(".yolopipe")  # Ultralytics' own run folders and settings; git-ignored
