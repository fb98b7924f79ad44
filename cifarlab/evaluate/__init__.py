"""A trained model: its evaluation, predictions, calibration, robustness, explanations,
export, and the report `cifarlab evaluate` writes.

    trained.py      load a run's model, evaluate it on its data, predict image files
    report.py       what `cifarlab evaluate` writes
    calibration.py  can the model's confidence be trusted (temperature scaling)
    robustness.py   accuracy under corruptions and the official shift sets
    explain.py      Grad-CAM
    export.py       ONNX and TorchScript, checked against the model
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "load_trained": "trained",
        "evaluate_trained": "trained",
        "predict_files": "trained",
        "evaluate_run": "report",
        "export_trained": "export",
    },
)
