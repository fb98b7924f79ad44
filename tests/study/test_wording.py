"""The study report's recipe line names each run's own optimizer and its settings."""

from __future__ import annotations

from cifarlab.config.options import TrainConfig
from cifarlab.study.wording import recipe_line

REST = "batch 32, 4 epochs, schedule constant, augmentation none, seed 0."


def test_an_sgd_run_reads_as_sgd():
    cfg = TrainConfig(momentum=0.9, nesterov=True, weight_decay=5e-4).to_dict()
    assert recipe_line(cfg) == (
        f"Recipe: SGD lr 0.03, momentum 0.9, Nesterov, weight decay 0.0005, {REST}"
    )


def test_a_muon_run_names_muon_for_the_filters_and_sgd_for_the_rest():
    cfg = TrainConfig(optimizer="muon", muon_lr=0.2, muon_momentum=0.5, momentum=0.85).to_dict()
    assert recipe_line(cfg) == (
        "Recipe: Muon lr 0.2, momentum 0.5 (Nesterov) for the conv filters and SGD lr 0.03, "
        f"momentum 0.85, weight decay 0.0 for the other weights, {REST}"
    )


def test_adamw_and_adam_runs_name_their_lr_betas_and_weight_decay():
    adamw = TrainConfig(optimizer="adamw", lr=0.001, weight_decay=0.05).to_dict()
    assert recipe_line(adamw) == (
        f"Recipe: AdamW lr 0.001, betas 0.9,0.999, weight decay 0.05, {REST}"
    )
    adam = TrainConfig(optimizer="adam", lr=0.002, betas="0.8,0.99").to_dict()
    assert recipe_line(adam) == f"Recipe: Adam lr 0.002, betas 0.8,0.99, weight decay 0.0, {REST}"


def test_a_run_from_before_the_optimizer_option_reads_as_sgd():
    cfg = TrainConfig().to_dict()
    del cfg["optimizer"], cfg["muon_lr"], cfg["muon_momentum"], cfg["betas"]
    assert recipe_line(cfg).startswith("Recipe: SGD lr 0.03, momentum 0.0, weight decay 0.0, ")
