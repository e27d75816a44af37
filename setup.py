"""Packaging for Pet solver. Ranges are permissive for users; `make` pins exact versions."""
from setuptools import find_packages, setup

setup(
    name="pet-solver",
    version="0.1.0",
    description="A PyTorch training solver for detection and classification, driven by yacs configs",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pet", "pet.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.6",
        "torchvision>=0.21",
        "yacs>=0.1.8",
        "PyYAML>=5.4",
        "numpy",
        "scikit-learn>=1.0",  # the bundled digits data set
        "tensorboard>=2.10",
        "tqdm>=4.60",
        "matplotlib>=3.5",  # tools/plot_schedule.py
        "pycocotools>=2.0.6",  # COCO annotations and box mAP
    ],
    extras_require={
        "test": ["pytest>=7"],
        "optimizers": ["schedulefree>=1.3", "lion-pytorch>=0.2"],  # SOLVER.OPTIMIZER.TYPE as an import path
        "timm": ["timm>=1.0.20"],  # timm's optimizers: Muon on convolution kernels, Lamb, ...
        "bench": ["mmengine>=0.10", "timm>=1.0"],
        # TRAIN.LOGGERS trackers; SQLAlchemy and Alembic open the default SQLite store in OUTPUT_DIR
        "mlflow": ["mlflow-skinny>=2.10", "sqlalchemy>=1.4", "alembic>=1.8"],
        "wandb": ["wandb>=0.17"],  # offline runs only: `wandb sync` uploads them
        "tune": ["optuna>=3.6"],  # tools/tune.py: hyperparameter search
        "onnx": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"],  # export_weights --format onnx; runs it
    },
)
