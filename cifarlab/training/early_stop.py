"""Early stopping (--early-stop PATIENCE): a run stops after PATIENCE epochs without a new
best validation accuracy (strictly above every earlier epoch's). The Trainer holds one and
stores its state in every checkpoint, so a resumed run counts on where it left off; the
epoch loop (cifarlab.training.loop) keeps the best epoch's checkpoint as best.pt and tests
those weights at the end."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EarlyStop:
    """patience: epochs without a new best before stopping (0: off). best, best_epoch:
    the best validation accuracy so far and its epoch; since_best: epochs since then."""

    patience: int = 0
    best: float | None = None
    best_epoch: int | None = None
    since_best: int = 0

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    @property
    def stopped(self) -> bool:
        """Whether the run is to stop: PATIENCE epochs have passed without a new best."""
        return self.enabled and self.since_best >= self.patience

    def update(self, epoch: int, val_acc: float) -> bool:
        """After an epoch's validation: whether it is a new best (always False when off)."""
        if not self.enabled:
            return False
        if self.best is None or val_acc > self.best:
            self.best, self.best_epoch, self.since_best = val_acc, epoch, 0
            return True
        self.since_best += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "patience"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore state_dict()'s values (a checkpoint of an older cifarlab has none: the
        run had no early stopping, so there is nothing to restore)."""
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")
        self.since_best = int(state.get("since_best", 0))

    def describe(self) -> str:
        """'best (epoch 3)': which weights a finished run was tested with."""
        return f"best (epoch {self.best_epoch})"
