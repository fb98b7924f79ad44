"""Training one run: the Trainer (model, optimizer, schedule, data) and its epoch loop.

loop.py          train(): a Trainer and a RunDir, epoch by epoch, resumable
trainer.py       Trainer: one run's computation and nothing of files
summary.py       what a run says and leaves behind: its History, summary and lines
evaluation.py    loss, accuracy and confusion of a model over batches (with TTA)
optim.py         the optimizers (SGD, Muon, Adam(W)), schedules, Lookahead
regularizers.py  MixUp, CutMix, random erasing of a batch on the device
early_stop.py    --early-stop
pruning.py       --prune-easy: well-learned images left out of an epoch (InfoBatch)
batches.py       batches on the training device, augmented there
hardware.py      the device of a run, its precision (and why), determinism
precision.py     Precision: a dtype, its autocast and its (fp16-scaled) optimizer step
distributed.py   torchrun: the process group, collectives, synchronized BatchNorm
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "train": "loop",
        "Trainer": "trainer",
        "Hardware": "hardware",
        "Precision": "precision",
        "evaluate": "evaluation",
    },
)
