"""Training options: one dataclass field per option, their checks, and resolving a run's
config from its model's recipe (cifarlab.config.recipes), a file and flags.

Each field of TrainConfig carries its type (a `Literal` for a choice), default, help text
and bounds. Everything else is generated from the fields: the command-line options of
`train`, `sweep` and `seeds` (cli_options.py), the parsing of text (config_parse.py), the
type checks of config files, and validation. Adding an option is adding one field.

Precedence, lowest first: the model's recipe, then a --config file, then command-line flags.
"""

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from cifarlab.config.checks import DATASET_DETAILS, OPTIMIZER_OPTIONS, Option, validate
from cifarlab.config.checks import flag as flag  # the option's flag: --batch-size
from cifarlab.config.recipes import RECIPES
from cifarlab.errors import CifarlabError
from cifarlab.registry import did_you_mean

DATA_DIR_HELP = (
    "The dataset's folder (for CIFAR-10: cifar-10-batches-py or its parent; `cifarlab "
    "datasets` says what each expects). Default: for CIFAR-10 $CIFARLAB_DATA, else "
    "~/.cache/cifarlab, downloading there where torchvision can."
)


def option(
    default: Any,
    help: str,
    *,
    at_least: float | None = None,
    above: float | None = None,
    below: float | None = None,
    identity: bool = True,
    pair: bool = False,
) -> Any:
    """A TrainConfig field. at_least/above/below bound a number (below: exclusive);
    identity=False: the option says where or how fast, not what a run computes (it is
    left out of the run's cache key and cannot be swept); pair: two numbers in [0, 1),
    written B1,B2 (a string field)."""
    meta = dict(help=help, at_least=at_least, above=above, below=below, identity=identity)
    if pair:
        meta["pair"] = True
    return field(default=default, metadata=meta)


Augment = Literal["none", "flip-crop", "flip", "flip-translate"]
Schedule = Literal["constant", "cosine", "onecycle", "triangle"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
ValFrom = Literal["test", "train", "none"]
TestTimeAugment = Literal["none", "flip", "flip-translate"]
Labels = Literal["fine", "coarse"]
Optimizer = Literal["sgd", "muon", "adamw", "adam"]
CompileMode = Literal["none", "default", "reduce-overhead", "max-autotune"]


@dataclass
class TrainConfig:
    """Every option of a training run. Checked when made: an invalid config cannot exist."""

    model: str = option(
        "base",
        "Model: a name (`cifarlab models`; its recipe sets the defaults), or your own as "
        "path/to/file.py:function or package.module:function.",
    )
    dataset: str = option(
        "cifar10",
        "Dataset (`cifarlab datasets`): cifar10, cifar100, mnist, fashion-mnist or imagefolder.",
    )
    labels: Labels = option("fine", "CIFAR-100: the 100 fine classes or the 20 coarse ones.")
    image_size: int = option(
        32, "ImageFolder: images are resized to this many pixels square.", at_least=8
    )
    test_fraction: float = option(
        0.2,
        "ImageFolder without test/: this share of each class is the test set (seed 0).",
        above=0,
        below=1,
    )
    skip_bad_images: bool = option(
        False,
        "ImageFolder: leave out unreadable images (counted) instead of stopping.",
        identity=False,
    )
    epochs: int = option(4, "Passes over the training set.", at_least=1)
    lr: float = option(
        0.03, "Peak learning rate (of SGD, Adam or AdamW; with muon, of the SGD part).", above=0
    )
    batch_size: int = option(
        32, "Images per optimizer step (under torchrun: the global batch).", at_least=1
    )
    micro_batch: int = option(
        0,
        "Images per forward and backward pass (0: the whole batch): the step's gradient is "
        "summed over micro-batches of this size, so a large batch's step runs on a small "
        "batch's memory (on a CPU, a faster one: its activations stay in cache). BatchNorm "
        "then normalizes each micro-batch with its own statistics; its running averages, "
        "updated by each, move as far in a step as one update by the whole batch would.",
        at_least=0,
    )
    momentum: float = option(0.0, "SGD momentum.", at_least=0, below=1)
    nesterov: bool = option(False, "Nesterov momentum (needs a momentum above 0).")
    optimizer: Optimizer = option(
        "sgd",
        "sgd: SGD for every weight. muon: torch's Muon for the conv filters (--muon-lr, "
        "--muon-momentum), SGD (--lr, --momentum) for the rest. adamw: torch's AdamW "
        "(decoupled weight decay); adam: Adam (weight decay as L2 in the gradient); both "
        "with --lr, --betas, --weight-decay. --momentum and --nesterov are SGD's: given "
        "with adam(w), an error; a recipe's are dropped.",
    )
    muon_lr: float = option(0.24, "Muon's learning rate (--optimizer muon).", above=0)
    muon_momentum: float = option(
        0.6, "Muon's (Nesterov) momentum (--optimizer muon).", at_least=0, below=1
    )
    betas: str = option(
        "0.9,0.999",
        "Adam's and AdamW's betas B1,B2, each in [0, 1) (--optimizer adam|adamw; a sweep "
        "separates pairs with ';').",
        pair=True,
    )
    weight_decay: float = option(0.0, "L2 weight decay.", at_least=0)
    schedule: Schedule = option(
        "constant",
        "Learning-rate schedule per step: constant, cosine decay to 0, onecycle (linear "
        "warm-up, linear decay to 0), triangle (from 0.2 up to 1, down to 0.07).",
    )
    warmup_epochs: float = option(
        0.0,
        "Linear warm-up length, in epochs (with a shorter --epochs than the recipe's, the "
        "recipe's warm-up shrinks in proportion unless given).",
        at_least=0,
    )
    label_smoothing: float = option(
        0.0, "Label smoothing of the cross-entropy loss.", at_least=0, below=1
    )
    augment: Augment = option(
        "none",
        "Training augmentation: flip-crop (random flip, 4-pixel crop after zero padding), "
        "flip, flip-translate (random flip, shift by up to 2 pixels, reflect padding).",
    )
    train_crop: int = option(
        0,
        "Train on the central SIZE x SIZE pixels of each augmented image (0: the whole "
        "image) in the first --train-crop-share of the epochs: fewer pixels, fewer FLOPs a "
        "step. After flip-translate's 2-pixel shifts a crop of 28 of a 32-pixel image is a "
        "random crop of the original pixels only. Testing stays at the full size.",
        at_least=0,
    )
    train_crop_share: float = option(
        1.0,
        "The share of the epochs, the first ones, trained on --train-crop crops (rounded "
        "down to whole epochs: 0.5 of 8 is 4, of 1 none; 1: every epoch).",
        at_least=0,
    )
    freeze_from: float = option(
        0.0,
        "The share S of the epochs after which the network's blocks stop training, one "
        "after the other (0: never): the first block after round-down(S x epochs) epochs "
        "(at least 1), the others evenly spaced over the epochs left; the last block and "
        "the head train to the end. With 8 epochs and 3 blocks, 0.625 freezes the first "
        "block after epoch 5 and the second after epoch 6. A frozen block keeps its "
        "weights and asks for no gradient, so the backward pass stops above it and the "
        "late epochs run faster. For models made of blocks (fast, fast-muon, fast-cpu); "
        "not under torchrun.",
        at_least=0,
        below=1,
    )
    prune_easy: float = option(
        0.0,
        "InfoBatch's dynamic pruning (Qin et al., ICLR 2024) with ratio R (0: off): before "
        "each epoch from the second to --prune-until of the run, each training image "
        "whose loss, when last trained on, was below the mean is left out with probability "
        "R, and those below the mean that stay count 1/(1 - R) in the loss, so the "
        "gradient's expectation is unchanged. A pruned epoch keeps its number of steps with "
        "smaller batches (the schedule stays as it is; each step's gradient is scaled to a "
        "whole batch's) and trains in about the share of the images it kept; its train loss "
        "and accuracy are those of the kept images (the loss weighted). Not under torchrun.",
        at_least=0,
        below=1,
    )
    prune_until: float = option(
        0.875,
        "The share of the epochs, the first ones, that --prune-easy prunes (rounded down to "
        "whole epochs; the first epoch is never pruned): 0.875 (InfoBatch's) trains the "
        "last eighth on every image, 1 prunes every epoch from the second on.",
        above=0,
    )
    mixup: float = option(
        0.0,
        "MixUp (torchvision's) of each training batch, mixing weights from Beta(ALPHA, "
        "ALPHA); 0: off. With --cutmix too, each batch gets one of the two at random. The "
        "loss is against the mixed (soft) labels; train accuracy is the mixed label's "
        "weight on the predicted class (the lam-weighted accuracy against both labels).",
        at_least=0,
    )
    cutmix: float = option(
        0.0,
        "CutMix (torchvision's) of each training batch, box areas from Beta(ALPHA, ALPHA); "
        "0: off. Loss and train accuracy as --mixup's.",
        at_least=0,
    )
    random_erasing: float = option(
        0.0,
        "Random erasing (torchvision's RandomErasing): with this probability each training "
        "image gets a rectangle of 2-33% of its area set to the mean colour (0 after "
        "normalization), after --augment and before --mixup/--cutmix.",
        at_least=0,
    )
    seed: int = option(0, "Seed of weights, data order, augmentation and dropout.", at_least=0)
    split_seed: int = option(
        0, "Seed of the validation split (kept fixed across seeds).", at_least=0
    )
    val_from: ValFrom = option(
        "test", "Validation from half the test set (as the study), from train, or none."
    )
    val_size: int | None = option(
        None, "Validation images (default: half the test set, or 5000 of train).", at_least=1
    )
    early_stop: int = option(
        0,
        "Stop after this many epochs without a new best validation accuracy (0: off). The "
        "best epoch's weights are kept in best.pt beside checkpoint.pt and tested at the end.",
        at_least=0,
    )
    limit: int | None = option(None, "Use only the first N training images.", at_least=1)
    eval_limit: int | None = option(None, "Use at most N validation and N test images.", at_least=1)
    device: Device = option("auto", "Where to train; auto picks CUDA when available.")
    precision: Precision = option(
        "auto",
        "Autocast precision; auto: bf16 on CUDA and on CPUs with native bf16, fp16 on GPUs "
        "without bf16, else fp32.",
    )
    data_dir: str | None = option(None, DATA_DIR_HELP, identity=False)
    eval_batch_size: int = option(1000, "Images per evaluation batch.", at_least=1, identity=False)
    sync_bn: bool = option(False, "Under torchrun: BatchNorm statistics over the global batch.")
    alt_flip: bool = option(
        False, "Flip each image every other epoch (from a random start) instead of at random."
    )
    tta: TestTimeAugment = option("none", "Test-time augmentation of the final test evaluation.")
    tta_margin: float = option(
        1.0,
        "Test-time augmentation only for the images the model is unsure of: those whose two "
        "most likely classes differ in probability by less than this (1: every image).",
        at_least=0,
    )
    lookahead: bool = option(
        False,
        "Lookahead weight averaging: from 30% of training on, every 5 steps the weights "
        "move to a slow average of themselves.",
    )
    whiten: bool = option(
        True, "Models with a whitening layer: set it from the training patches, frozen."
    )
    bn_bias_lr_scale: float = option(1.0, "Learning-rate multiplier of BatchNorm biases.", above=0)
    compile: CompileMode = option(
        "none",
        "torch.compile the model's training forward: default, reduce-overhead (CUDA graphs "
        "on GPUs) or max-autotune; the first steps compile (seconds to minutes).",
        identity=False,
    )
    deterministic: bool = option(
        False,
        "Deterministic kernels (torch.use_deterministic_algorithms, cuDNN without autotuning): "
        "needed on CUDA for the same metrics from the same seed; CPU runs are without it.",
    )

    def __post_init__(self) -> None:
        for name, spec in OPTIONS.items():
            setattr(self, name, spec.coerce(getattr(self, name)))
        validate(self, OPTIONS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def dataset_args(self) -> dict[str, Any]:
        """The arguments of cifarlab.data.load_dataset for this run's data."""
        return dict(
            name=self.dataset,
            data_dir=self.data_dir,
            labels=self.labels,
            image_size=self.image_size,
            test_fraction=self.test_fraction,
            skip_bad_images=self.skip_bad_images,
        )

    @classmethod
    def for_model(cls, model: str = "base", **options: Any) -> "TrainConfig":
        """The model's recipe with `options` on top (as `cifarlab train --model ...`)."""
        return resolve(None, {"model": model, **options})

    def split_args(self) -> dict[str, Any]:
        """The options that make a run's data splits (cifarlab.data.make_splits)."""
        return dict(
            val_from=self.val_from,
            val_size=self.val_size,
            seed=self.split_seed,
            limit=self.limit,
            eval_limit=self.eval_limit,
        )


# Every option, as its field declares it: name, default, help, type, choices, bounds.
OPTIONS = {f.name: Option.of(f) for f in fields(TrainConfig)}
FIELD_NAMES = tuple(OPTIONS)
# Options stored under an older name by earlier cifarlab versions.
RENAMED = {"ema": "lookahead"}

AUGMENTS = OPTIONS["augment"].choices
FLIP_AUGMENTS = tuple(a for a in AUGMENTS if a.startswith("flip"))
TTA_MODES = OPTIONS["tta"].choices
DEVICES = OPTIONS["device"].choices
PRECISIONS = OPTIONS["precision"].choices


# ------------------------------------------------------------------- stored configs


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """A config stored by cifarlab (config.json, a checkpoint). Options it lacks, from an
    older cifarlab, take their defaults, which are what that version did."""
    if not isinstance(values, dict):
        raise CifarlabError("a stored config must be a mapping of option: value")
    values = {RENAMED.get(k, k): v for k, v in values.items()}
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise CifarlabError(f"the stored config has unknown options: {', '.join(unknown)}")
    return TrainConfig(**values)


def identity(cfg: TrainConfig) -> dict[str, Any]:
    """What makes two runs the same: every option that says what a run computes, and only
    those that differ from the defaults, so adding an option with a default keeps old
    identities."""
    default = TrainConfig()
    return {
        name: getattr(cfg, name)
        for name, spec in OPTIONS.items()
        if spec.identity and getattr(cfg, name) != getattr(default, name)
    }


def same_run(a: TrainConfig, b: TrainConfig) -> bool:
    """Whether two configs compute the same run (where the data lies does not matter)."""
    return identity(a) == identity(b)


def applies(cfg: TrainConfig, name: str) -> bool:
    """Whether option `name` means anything for this run: an optimizer's own options only
    with that --optimizer, a dataset's own options only for that dataset."""
    if name in OPTIMIZER_OPTIONS:
        return cfg.optimizer in OPTIMIZER_OPTIONS[name]
    if name in DATASET_DETAILS:
        return cfg.dataset == DATASET_DETAILS[name]
    return True


# ------------------------------------------------------------------------ recipes


def recipe(model: str) -> dict[str, Any]:
    """The default recipe of a model (the dataclass defaults for models without one)."""
    return {"model": model, **RECIPES.get(model, {})}


def scaled_warmup(recipe_values: dict[str, Any], epochs: int) -> float:
    """The recipe's warm-up for a run of `epochs` epochs: its share of a shorter run (the
    fast recipe warms up for 2.3 of 10 epochs, so 0.23 of 1), unchanged for a longer one."""
    warmup = float(recipe_values.get("warmup_epochs", OPTIONS["warmup_epochs"].default))
    full = int(recipe_values.get("epochs", OPTIONS["epochs"].default))
    return warmup if epochs >= full else round(warmup * epochs / full, 6)


# names other tools give an option, for "did you mean"
ALIASES = {"learning_rate": "lr", "bs": "batch_size", "wd": "weight_decay", "n_epochs": "epochs"}


def closest(name: str, known: list[str]) -> str:
    """' (did you mean 'lr'?)' for the known option `name` most likely means, or ''."""
    alias = ALIASES.get(name.replace("-", "_"))
    if alias in known:
        return f" (did you mean {alias!r}?)"
    return did_you_mean(name, known)


def unknown_names(names: list[str], known: list[str] | None = None) -> str:
    """Unknown option names, each with the known one it is closest to ('batch_szie (did you
    mean 'batch_size'?)'); where none is close, the list of known options."""
    known = FIELD_NAMES if known is None else known
    hints = [f"{n}{closest(n, known)}" for n in names]
    if all("did you mean" in h for h in hints):
        return ", ".join(hints)
    return f"{', '.join(hints)}; known: {', '.join(known)}"


def resolve(file_values: dict[str, Any] | None, flags: dict[str, Any]) -> TrainConfig:
    """Recipe < file < flags. `flags` holds only the options given on the command line."""
    merged = {**(file_values or {}), **{k: v for k, v in flags.items() if v is not None}}
    unknown = sorted(set(merged) - set(FIELD_NAMES))
    if unknown:
        raise CifarlabError(f"unknown train option(s) {unknown_names(unknown)}")
    defaults = recipe(merged.get("model", OPTIONS["model"].default))
    optimizer = merged.get("optimizer", defaults.get("optimizer", OPTIONS["optimizer"].default))
    # another optimizer than the recipe's: the recipe's options of its own optimizer go
    defaults = {
        k: v
        for k, v in defaults.items()
        if k not in OPTIMIZER_OPTIONS or optimizer in OPTIMIZER_OPTIONS[k]
    }
    values = {k: OPTIONS[k].coerce(v) for k, v in {**defaults, **merged}.items()}
    if "epochs" in merged and "warmup_epochs" not in merged:
        values["warmup_epochs"] = scaled_warmup(defaults, values["epochs"])
    return TrainConfig(**values)
