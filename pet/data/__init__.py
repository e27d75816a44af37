"""Data: the embedded digits, a user's image folders, torchvision's FakeData, COCO-format detection data, the
generated shapes, and the resumable batch order."""
from pet.data.build import build_dataset, build_train_loader, build_val_loader
from pet.data.coco import CocoDetection, collate_detection
from pet.data.digits import DigitsDataset
from pet.data.image_folder import ImageFolderDataset
from pet.data.sampler import ResumableBatchSampler
from pet.errors import DataError

__all__ = ["CocoDetection", "DataError", "DigitsDataset", "ImageFolderDataset", "ResumableBatchSampler",
           "build_dataset", "build_train_loader", "build_val_loader", "collate_detection"]
