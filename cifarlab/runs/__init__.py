"""Run folders and what follows a run: its files, checkpoints and trackers.

folder.py      RunDir: config.json, metrics.jsonl, summary.json, figures, the lock
checkpoint.py  checkpoints: self-contained, written atomically, loaded safely
tracking.py    TensorBoard and MLflow, as one Tracking object a run is given
mlflow_log.py  the MLflow side of tracking (the optional extra)
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "RunDir": "folder",
        "Tracking": "tracking",
        "load_checkpoint": "checkpoint",
        "save_checkpoint": "checkpoint",
    },
)
