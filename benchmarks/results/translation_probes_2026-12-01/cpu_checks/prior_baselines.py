"""What trajectories that learn nothing from the images score on the held-out worlds the shipped model was
scored on (heldout_ate.py --worlds 9 --first 700, 1,000 frames): Sim(3)-aligned ATE as a share of the path,
beside the shipped model's (../../train_batch64_2026-12-01/heldout_shipped.json); then on the four worlds of
docs/ablation.md's table (seeds 1e9+500…503). Only the worlds' poses are built (no rendering). Run from the
repository root with PYTHONPATH=src:benchmarks:

    python prior_baselines.py

- ``straight``: a camera that moves along its optical axis at constant speed and never turns
  (``heldout_ate.straight_line``);
- ``true turns, constant speed``: the true rotations, moving a constant distance along the optical axis each
  frame (what a model with perfect rotation and a forward-motion prior would give);
- ``true directions, constant speed``: the true direction of every step, each step of the mean length (what
  perfect direction with no sense of speed gives).
"""

import json

import numpy as np
from heldout_worlds import ate, straight_line, test_worlds

from loger3d.train.synthetic import HELD_OUT_SEED_OFFSET
from loger3d.train.worlds.world import SyntheticWorld, WorldConfig

SHIPPED = "benchmarks/results/train_batch64_2026-12-01/heldout_shipped.json"


def poses_from(rotations: np.ndarray, positions: np.ndarray) -> np.ndarray:
    poses = np.tile(np.eye(4), (len(positions), 1, 1))
    poses[:, :3, :3], poses[:, :3, 3] = rotations, positions
    return poses


def baselines(family: str, kind: str, seed: int) -> dict:
    """The three trajectories' ATE (% of the path) on one 1,000-frame world."""
    gt = SyntheticWorld(WorldConfig(family=family, trajectory=kind, seed=seed, length=1000, height=126,
                                    width=224)).poses.double().numpy()
    steps = np.diff(gt[:, :3, 3], axis=0)
    lengths = np.linalg.norm(steps, axis=1)
    path = lengths.sum()
    speed = lengths.mean()
    straight = straight_line(gt)
    forward = gt[:-1, :3, 2] * speed  # each camera's optical axis in the world, one mean step long
    turns = poses_from(gt[:, :3, :3], np.vstack([np.zeros(3), np.cumsum(forward, axis=0)]))
    unit = steps / np.maximum(lengths[:, None], 1e-12) * speed
    directions = poses_from(gt[:, :3, :3], np.vstack([np.zeros(3), np.cumsum(unit, axis=0)]))
    return {"world": f"{family}-{kind}", "world_seed": seed, "path_m": path,
            **{name: 100 * ate(est, gt) / path for name, est in (("straight", straight),
                                                                 ("true_turns_constant_speed", turns),
                                                                 ("true_directions_constant_speed", directions))}}


def report(rows: list[dict], keys: tuple[str, ...]) -> None:
    for row in rows:
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}))
    means = {k: float(np.mean([r[k] for r in rows if r.get(k) is not None])) for k in keys}
    print("mean ATE % of path:", json.dumps({k: round(v, 2) for k, v in means.items()}))


KEYS = ("straight", "true_turns_constant_speed", "true_directions_constant_speed")
shipped = {r["world_seed"]: r["ate_pct_path"] for r in json.load(open(SHIPPED))["rows"] if r["align"] == "se3"}
print("held-out worlds 700-708 (heldout_ate.py)")
report([{**baselines(*world), "shipped_model": shipped.get(world[2])}
        for world in test_worlds(9, HELD_OUT_SEED_OFFSET + 700)], (*KEYS, "shipped_model"))
print("docs/ablation.md's four worlds")
report([baselines(family, kind, HELD_OUT_SEED_OFFSET + 500 + i)
        for i, (family, kind) in enumerate((("indoor", "walk"), ("street", "drive"), ("terrain", "orbit"),
                                            ("terrain", "walk")))], KEYS)
