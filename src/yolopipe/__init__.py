"""yolopipe: a data-versioned, reproducible YOLO training pipeline built on DVC and Ultralytics."""

__version__ = "0.1.0"
