"""One normalization on every path: training, evaluation, prediction and export."""

from __future__ import annotations

import torch

from cifarlab.data import load_cifar10, make_splits
from cifarlab.evaluate import export
from cifarlab.evaluate import trained as inference
from cifarlab.training.trainer import Trainer
from tests.conftest import run_config


def test_one_normalization_for_training_evaluation_prediction_and_export(base_run, tmp_path):
    """What the model sees of the same uint8 images is identical (bit for bit) when the
    Trainer evaluates and trains, when `evaluate` and `predict` run a checkpoint, and the
    exported model with raw uint8 input computes the same logits."""
    run = base_run
    cfg = run_config(run).replace(precision="fp32")
    data = load_cifar10(cfg.data_dir)
    splits = make_splits(data, **cfg.split_args())
    images = splits.test.images
    seen: dict[str, list[torch.Tensor]] = {}

    def watch(model: torch.nn.Module, key: str) -> None:
        hook = lambda m, args: seen.setdefault(key, []).append(args[0].detach().clone())  # noqa: E731
        model.register_forward_pre_hook(hook)

    trainer = Trainer(cfg, splits)
    watch(trainer.model, "trainer")
    trainer.evaluate("test")
    t = inference.load_trained(run, "cpu", "fp32")
    watch(t.model, "evaluate")
    inference.evaluate_trained(t, data, "test")
    evaluate_input = torch.cat(seen["evaluate"])
    watch(t.model, "predict")
    inference.predict_tensor(t, images)
    for key in ("trainer", "predict"):
        assert torch.equal(torch.cat(seen[key]), evaluate_input), key
    # the training batches: the training images (shuffled) normalized as predict would
    trainer = Trainer(cfg.replace(batch_size=len(splits.train)), splits)
    watch(trainer.model, "train")
    trainer.train_epoch()
    expected = t.normalize(splits.train.images)
    for row in seen["train"][0]:
        assert any(torch.equal(row, ref) for ref in expected)
    out = tmp_path / "raw.onnx"
    export.export_trained(t.ckpt, "onnx", out, "raw")
    exported = export.run_exported(out.read_bytes(), "onnx", images)
    with torch.no_grad():
        expected = t.model(evaluate_input.contiguous())
    assert torch.allclose(exported, expected, atol=1e-4)
