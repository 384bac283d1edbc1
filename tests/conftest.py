import gc

import pytest
import torch

import loger3d
from loger3d.seeded import fill_seeded_


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
    gc.collect()


def seeded_model(preset: str, seed: int = 0) -> loger3d.LoGeR:
    """A model of ``preset`` with the seeded weights of EQUIVALENCE.md, in eval mode."""
    return fill_seeded_(loger3d.build_model(preset, device="meta"), seed).eval()


@pytest.fixture(scope="session")
def tiny_model():
    return seeded_model("tiny", 0)


def random_images(n: int, h: int = 42, w: int = 56, seed: int = 0, batch: int | None = None) -> torch.Tensor:
    shape = (n, 3, h, w) if batch is None else (batch, n, 3, h, w)
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))
