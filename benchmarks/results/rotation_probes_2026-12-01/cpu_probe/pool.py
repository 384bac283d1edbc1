"""Fixed pools of 4-frame clips at 56×112, saved to pool.pt: 4,096 training clips from 400 worlds (stride 2–4)
and 256 held-out clips from 64 worlds from seed 1e9."""

import time

import numpy as np
import torch

from loger3d.train.clip import stack_clips
from loger3d.train.synthetic import HELD_OUT_SEED_OFFSET, ClipPlan, SyntheticSource


def pool(seed_offset: int, worlds: int, clips: int, seed: int) -> dict[str, torch.Tensor]:
    source = SyntheticSource(height=56, width=112, num_worlds=worlds, world_length=200, seed_offset=seed_offset,
                             stride=(2, 4), cache_size=worlds, workers=2)
    for index in range(worlds):
        source.prefetch(ClipPlan(index, 0, 1))
    made = []
    for i in range(0, clips, 64):
        made += source.sample_many([np.random.default_rng([seed, k]) for k in range(i, min(clips, i + 64))], 4)
    source.close()
    batch = stack_clips(made)
    return {"images": batch.images, "points": batch.local_points, "poses": batch.poses, "valid": batch.valid}


if __name__ == "__main__":
    started = time.perf_counter()
    torch.save({"train": pool(0, 400, 4096, 1), "test": pool(HELD_OUT_SEED_OFFSET, 64, 256, 2)}, "pool.pt")
    print(f"pool.pt in {time.perf_counter() - started:.0f} s")
