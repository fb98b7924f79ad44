"""Every fixed list of choices an option takes outside TrainConfig, defined once.

The library checks its arguments against these lists and the command line builds its
`click.Choice`s from them; this module imports nothing, so the command line reads it
without loading torch. (TrainConfig's own choices live on its fields: `options.choices`.)
"""

# a trained model: evaluate, predict, explain, export
CHECKPOINTS = ("last", "best")  # --checkpoint: the last epoch's weights or --early-stop's best
SPLITS = ("test", "val", "full-test")  # evaluate --split
EXPORT_FORMATS = ("onnx", "torchscript")  # export --format
EXPORT_INPUTS = ("normalized", "raw")  # export --input: what the exported model takes

# many runs: sweep, seeds, study, tune, compare
EXECUTORS = ("local", "ray")  # --executor
BACKENDS = ("gloo", "nccl")  # train --backend under torchrun (besides "auto")
COMPARE_METRICS = ("test_acc", "val_acc", "test_loss")  # compare --metric
COMPARE_TESTS = ("t", "mann-whitney", "permutation")  # compare --test
TUNE_SAMPLERS = ("tpe", "random", "grid")  # tune --sampler
TUNE_PRUNERS = ("median", "asha", "hyperband", "none")  # tune --pruner
TUNE_METRICS = {"val_acc": "maximize", "val_loss": "minimize"}  # tune --metric, its direction

# the data: audit
AUDIT_SPACES = ("features", "pixels")  # audit --space: the model's features, or the pixels
