"""A small model with every kind of parameter the grouping rules distinguish."""
import torch
from torch import nn


class ToyBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, 4, 8))
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.embed = nn.Embedding(10, 8)
        self.ln = nn.LayerNorm(8)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)


class ToyHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.gn = nn.GroupNorm(2, 8)


class ToyModel(nn.Module):
    """cls_token at the root, a backbone, a head, a module shared under two names and a tied weight."""

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, 8))
        self.backbone = ToyBackbone()
        self.head = ToyHead()
        self.neck = self.head.fc  # the same module under a second name
        self.decoder = nn.Linear(8, 10)
        self.decoder.weight = self.backbone.embed.weight  # a parameter tied to the embedding


def toy_model(seed: int = 0) -> ToyModel:
    torch.manual_seed(seed)
    return ToyModel()


def fill_grads(model: nn.Module, seed: int = 1, scale: float = 1.0) -> None:
    """Give every trainable parameter a deterministic random gradient."""
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=generator) * scale
