"""Every section of the config but SOLVER: the run's outputs, model, data, training and test keys (the README's
training-config table), and the names of the data sets of each task."""
from pet.config.rules import BOOL, NON_NEGATIVE, PATH, Rule, int_at_least, is_int, is_number, one_of
from pet.config.schema import Key, Section
from pet.imports import is_import_path

CLASSIFICATION_DATASETS = ("digits", "image_folder", "fake")
DETECTION_DATASETS = ("shapes", "coco")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
TRACKERS = ("tensorboard", "mlflow", "wandb")  # TRAIN.LOGGERS: where the scalars of metrics.json also go
LOGGER_NAMES = Rule(lambda v: isinstance(v, (list, tuple)) and all(isinstance(n, str) and n in TRACKERS for n in v)
                    and len(set(v)) == len(v),
                    f"a tuple of distinct names from {' | '.join(TRACKERS)} (e.g. ('tensorboard', 'mlflow')), or ()")

RUN: Section = {
    "OUTPUT_DIR": Key("output", Rule(lambda v: isinstance(v, str) and v != "", "a non-empty folder path"),
                      "where a run writes its files"),
    "SEED": Key(0, Rule(lambda v: is_int(v) and 0 <= v < 2 ** 32, "an integer in [0, 2**32)"),
                "seed of model init, data split and data order"),
    "MODEL": {
        "NAME": Key("resnet18", Rule(lambda v: isinstance(v, str) and v != "",
                                     "a torchvision classification or detection model name"),
                    "any torchvision classification model (`resnet50`, `mobilenet_v3_small`, `efficientnet_b0`, "
                    "`swin_t`, `vit_b_16`, ...), split into `backbone` + `head`; or a detector (see "
                    "[Detection](#detection)); or the import path of your own builder (`my_pkg.models:build_net`, "
                    "called with the config)"),
        "NUM_CLASSES": Key(10, int_at_least(2, high=10 ** 6), "classifiers: outputs of the head, >= 2 and at least the data's "
                                                "classes; detectors: categories + 1 (the background)"),
        "WEIGHTS": Key("", Rule(lambda v: isinstance(v, str), "a file or folder path, or \"\""),
                       "weights to start from (fine-tuning): a checkpoint of this project (`.pth` or an FSDP "
                       "folder) or a plain state dict such as torchvision's; tensors of another shape (a new head) "
                       "stay initialised; no optimizer state or iteration is taken (that is `--resume`)"),
        "NORM": Key("BN", one_of(("BN", "GN", "FROZEN_BN", "SyncBN")),
                    "`BN` keeps torchvision's BatchNorm2d; `GN` (GroupNorm) or `FROZEN_BN` (FrozenBatchNorm2d) "
                    "replace every BatchNorm2d; `SyncBN` makes them SyncBatchNorm (statistics over all processes, "
                    "GPUs only)"),
        "SMALL_INPUT": Key(False, BOOL, "stride-1 stem without max pool for 8-64 pixel images (ResNet, MobileNet, "
                                        "EfficientNet families)"),
        "CHANNELS_LAST": Key(False, BOOL, "keep the model's weights (and so its activations) in the channels-last "
                                          "memory format (NHWC), which some convolution kernels run faster; "
                                          "checkpoints are the same either way"),
        "DETECTION": {
            "MIN_SIZE": Key(800, int_at_least(32), "detectors resize each image so that its short side is this many "
                                                   "pixels ..."),
            "MAX_SIZE": Key(1333, int_at_least(32), "... and its long side at most this many"),
        },
    },
    "DATA": {
        "DATASET": Key("digits", Rule(lambda v: v in CLASSIFICATION_DATASETS + DETECTION_DATASETS or is_import_path(v),
                                      " | ".join(CLASSIFICATION_DATASETS + DETECTION_DATASETS)
                                      + " | the import path of your builder (my_pkg.data:build_my_set)"),
                       "classification: `digits` (scikit-learn's bundled 8x8 digits, no download), `image_folder`, "
                       "`fake` (torchvision FakeData); detection: `shapes` (generated), `coco`; or the import path "
                       "of your own builder, called with the config and the split (`train` / `val`)"),
        "ROOT": Key("", Rule(lambda v: isinstance(v, str), "a folder path"),
                    "`image_folder`: a folder with `train/<class>/*` and `val/<class>/*`; `coco`: the folder "
                    "`DATA.COCO` paths are relative to; `shapes`: where the set is written (`\"\"`: `datasets/`)"),
        "IMAGE_SIZE": Key(0, Rule(lambda v: is_int(v) and (v == 0 or 8 <= v <= 10 ** 5), "0, or an integer in [8, "
                                                                                        "100000]"),
                          "image side for `image_folder` (CIFAR-style padded crops up to 64, ImageNet-style resized "
                          "crops above), `fake` and `shapes`; 0: the data set's own (digits 8, image folders and "
                          "`fake` 224, `shapes` 128; COCO images keep theirs)"),
        "VAL_FRACTION": Key(0.2, Rule(lambda v: is_number(v) and 0 < v < 1, "a number in (0, 1)"),
                            "`digits`: share held out for validation, stratified per class"),
        "FAKE_SIZE": Key(256, int_at_least(1, high=10 ** 7), "`fake`: images per split"),
        "NUM_WORKERS": Key(0, int_at_least(0, high=256), "data loader worker processes"),
        "CHECK_IMAGES": Key(True, BOOL, "`image_folder`: decode every image before training, so a broken or "
                                        "truncated file stops the run at once (minutes for ImageNet: turn it off "
                                        "there)"),
        "SHAPES": {
            "NUM_TRAIN": Key(1000, int_at_least(1), "`shapes`: training images"),
            "NUM_VAL": Key(200, int_at_least(1), "`shapes`: validation images"),
            "MAX_SHAPES": Key(3, int_at_least(1), "`shapes`: at most this many shapes per image (at least one)"),
        },
        "COCO": {
            "TRAIN_IMAGES": Key("train2017", PATH, "`coco`: the training images folder"),
            "TRAIN_JSON": Key("annotations/instances_train2017.json", PATH, "`coco`: the training annotation file"),
            "VAL_IMAGES": Key("val2017", PATH, "`coco`: the validation images folder"),
            "VAL_JSON": Key("annotations/instances_val2017.json", PATH, "`coco`: the validation annotation file"),
        },
    },
    "TRAIN": {
        "BATCH_SIZE": Key(32, int_at_least(1, high=10 ** 6), "images per micro-batch per process"),
        "CHECKPOINT_PERIOD": Key(1000, int_at_least(1), "iterations between checkpoints"),
        "CHECKPOINTS_TO_KEEP": Key(3, int_at_least(1), "periodic checkpoints kept (`model_final.pth` always stays)"),
        "WRITER_PERIOD": Key(20, int_at_least(1), "iterations between console, `metrics.json` and TensorBoard "
                                                  "writes"),
        "LOGGERS": Key(("tensorboard",), LOGGER_NAMES,
                       "experiment trackers that get the scalars of `metrics.json` at each write: `tensorboard` "
                       "(event files in OUTPUT_DIR), `mlflow`, `wandb` (offline; both extras: `pip install -e "
                       ".[mlflow]`); `()`: `metrics.json` only; see [Trackers](#trackers)"),
        "MLFLOW_URI": Key("", Rule(lambda v: isinstance(v, str) and v.strip() == v, "an MLflow tracking URI, or \"\""),
                          "`mlflow`: where runs are kept (`sqlite:///runs.db`, `http://host:5000`, ...); `\"\"`: "
                          "the SQLite store `OUTPUT_DIR/mlflow.db` with artifacts in `OUTPUT_DIR/mlartifacts`"),
        "EVAL_PERIOD": Key(0, int_at_least(0, " (0: only at the end)"),
                           "iterations between evaluations; 0: only at the end"),
        "MAX_CONSECUTIVE_SKIPS": Key(20, int_at_least(0, " (0: never stop)"),
                                     "stop with an error after this many skipped updates in a row, saving "
                                     "`model_last_good.pth`; 0 never stops"),
        "BEST_METRIC": Key("", Rule(lambda v: isinstance(v, str), "an evaluation result name, or \"\""),
                           "keep `model_best.pth`, the checkpoint of the best evaluation by this result (e.g. "
                           "`val/accuracy`, `val/mAP`, `val/loss`); a NaN or inf score is never the best; "
                           "`\"\"`: off"),
        "BEST_MODE": Key("", Rule(lambda v: v in ("", "max", "min"), "\"\" | max | min"),
                         "whether `BEST_METRIC` is best high (`max`) or low (`min`); `\"\"`: `min` for a loss "
                         "(`val/loss`, `val/loss_cls`), else `max`; the log says which"),
        "EARLY_STOP": {
            "PATIENCE": Key(0, int_at_least(0, " (0: off)"),
                            "stop training after this many evaluations in a row (every `EVAL_PERIOD`, which must be "
                            "> 0) without improvement, saving `model_final.pth`, whose final evaluation is the one that "
                            "stopped the run; a NaN score is no improvement; 0: off"),
            "METRIC": Key("", Rule(lambda v: isinstance(v, str), "an evaluation result name, or \"\""),
                          "the result that must improve (e.g. `val/accuracy`, `val/loss`); `\"\"`: `BEST_METRIC`"),
            "MIN_DELTA": Key(0.0, NON_NEGATIVE, "an improvement is a change by more than this, in the better "
                                                "direction"),
            "MODE": Key("", Rule(lambda v: v in ("", "max", "min"), "\"\" | max | min"),
                        "whether `METRIC` is better high (`max`) or low (`min`); `\"\"`: `BEST_MODE` when the "
                        "metric is `BEST_METRIC`, else `min` for a loss and `max` for the rest"),
        },
        "ASYNC_CHECKPOINT": Key(False, BOOL, "write periodic checkpoints from a copy of the state taken between two "
                                             "updates, in the background, while training goes on (the next one waits "
                                             "for it; the final one is written at once); a kill mid-write leaves the "
                                             "previous checkpoint intact, as without"),
        "COMPILE": Key(False, BOOL, "run the model through `torch.compile` (its first update compiles: minutes on "
                                    "a CPU, logged once and left out of the ETA); a model that cannot be compiled "
                                    "runs eagerly after one warning; checkpoints are the same either way"),
        "COMPILE_MODE": Key("default", one_of(COMPILE_MODES, case_sensitive=True),
                            "`torch.compile`'s mode (`reduce-overhead` adds CUDA graphs, `max-autotune` tries "
                            "more kernels and compiles longer)"),
        "KEEP_FREED_MEMORY": Key(True, BOOL, "on CPU, keep the memory a step frees for the next one (glibc "
                                             "`mallopt`) instead of returning it to the OS every update: fewer page "
                                             "faults, about a fifth faster; the process's memory does not shrink"),
    },
    "TEST": {
        "BATCH_SIZE": Key(128, int_at_least(1, high=10 ** 6), "evaluation batch per process"),
    },
    "DISTRIBUTED": {
        "TIMEOUT_S": Key(1800.0, Rule(lambda v: is_number(v) and 1 <= v <= 86400, "a number of seconds in [1, 86400]"),
                         "a collective operation that waits longer than this for another process fails the run with "
                         "an error naming the process, instead of hanging"),
        "STRATEGY": Key("DDP", one_of(("DDP", "FSDP")), "`DDP`: every process holds the whole model, gradients "
                                                         "and optimizer state; `FSDP`: torch's FSDP2 "
                                                         "(`fully_shard`) shards all three over the processes, "
                                                         "with sharded checkpoint folders"),
        "FSDP": {
            "RESHARD_AFTER_FORWARD": Key(True, BOOL, "`FSDP`: free the gathered parameters after the forward pass "
                                                     "(less memory, one more all-gather in backward)"),
            "PARAM_DTYPE": Key("float32", one_of(("float32", "bfloat16"), case_sensitive=True),
                               "`FSDP`: the dtype of the gathered parameters in forward and backward; gradients "
                               "are reduced and the update is done in float32"),
        },
    },
}
