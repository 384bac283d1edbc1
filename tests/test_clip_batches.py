"""A training step's clips drawn together (one render batch over many worlds) equal the clips drawn one by one."""

import importlib
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from loger3d.train.config import ConfigError
from loger3d.train.depth_filter import DepthFilter
from loger3d.train.mixture import ClipMixture
from loger3d.train.synthetic import SyntheticSource
from loger3d.train.worlds import SyntheticWorld, WorldConfig
from loger3d.train.worlds.world import render_worlds

render_module = importlib.import_module("loger3d.train.worlds.render")  # the package's ``render`` is the function
FIELDS = ("images", "depth", "valid", "intrinsics", "poses")


def test_worlds_rendered_together_equal_each_alone(monkeypatch):
    monkeypatch.setitem(render_module.RAYS_PER_BATCH, "cpu", 5 * 2 * 196)  # 5 frames a batch: batches span worlds
    worlds = [SyntheticWorld(WorldConfig(family=f, trajectory=t, seed=s, length=120, height=28, width=42))
              for f, t, s in [("indoor", "walk", 1), ("street", "drive", 2), ("terrain", "orbit", 3)]]
    requests = [(w, torch.arange(3 + i, 40 + i, 4)) for i, w in enumerate(worlds)]
    together = render_worlds(requests)
    for (world, frames), seq in zip(requests, together):
        alone = world.sample_frames(frames)
        assert all(torch.equal(getattr(alone, k), getattr(seq, k)) for k in (*FIELDS, "frames"))
        assert seq.valid.any() and seq.images.std() > 0.01  # real frames, not blanks


def test_worlds_of_different_sizes_are_refused():
    a = SyntheticWorld(WorldConfig(length=20, height=28, width=42))
    b = SyntheticWorld(WorldConfig(length=20, height=14, width=42))
    with pytest.raises(ValueError, match="one image size"):
        render_worlds([(a, torch.arange(2)), (b, torch.arange(2))])


def test_a_batch_of_slots_equals_the_slots_drawn_one_by_one(monkeypatch):
    monkeypatch.setitem(render_module.RAYS_PER_BATCH, "cpu", 7 * 3 * 196)
    synthetic = SyntheticSource(height=28, width=42, num_worlds=5, world_length=800, stride=(1, 3), revisit=0.5,
                                revisit_gap=60)
    other = SyntheticSource(height=28, width=42, families=("indoor",), num_worlds=3, world_length=300,
                            seed_offset=50, name="rooms")
    mixture = ClipMixture([synthetic, other], [2.0, 1.0], seed=3, depth_filter=DepthFilter(max_depth=30.0))
    slots = list(range(6))
    batch = mixture.sample_batch(4, slots, 10)
    assert len({c.source.split("/")[0] for c in batch}) == 2 and any("+" in c.source for c in batch)
    for slot, clip in zip(slots, batch):
        single = mixture.sample(4, slot, 10)
        assert clip.source == single.source
        assert all(torch.equal(getattr(clip, k), getattr(single, k)) for k in FIELDS)
    assert not torch.equal(batch[0].images, batch[1].images)
    assert max(float(c.depth.max()) for c in batch) <= 30.0  # the mixture's depth filter applies to each clip


def test_worlds_built_by_workers_equal_worlds_built_here():
    plain = SyntheticSource(height=14, width=28, num_worlds=3, world_length=200)
    pooled = SyntheticSource(height=14, width=28, num_worlds=3, world_length=200, workers=1)
    handed_over = 0
    try:
        for draw in range(3):
            plan = pooled.plan(np.random.default_rng([draw]), 8)
            pooled.prefetch(plan)
            handed_over += plan.index in pooled._pending  # built in the worker (unless cached already)
            a, b = pooled.sample(np.random.default_rng([draw]), 8), plain.sample(np.random.default_rng([draw]), 8)
            assert a.source == b.source and all(torch.equal(getattr(a, k), getattr(b, k)) for k in FIELDS)
    finally:
        pooled.close()
    assert handed_over >= 1


def test_a_killed_world_builder_changes_no_clip():
    """A worker killed mid-build (out of memory, say) is not a bad world: the world is built here instead, the
    clip is the same, and later prefetches get a fresh pool."""
    plain = SyntheticSource(height=14, width=28, num_worlds=2, world_length=200)
    pooled = SyntheticSource(height=14, width=28, num_worlds=2, world_length=200, workers=1)
    try:
        pooled.prefetch(pooled.plan(np.random.default_rng([0]), 8))
        for process in list(pooled._pool._processes.values()):
            os.kill(process.pid, signal.SIGKILL)
        a, b = pooled.sample(np.random.default_rng([0]), 8), plain.sample(np.random.default_rng([0]), 8)
        assert all(torch.equal(getattr(a, k), getattr(b, k)) for k in FIELDS)
        assert pooled._pool is None and not pooled._pending
    finally:
        pooled.close()


def test_a_pool_of_worlds_that_cannot_be_built_is_refused(monkeypatch):
    def grazing(config):
        raise RuntimeError("the path grazes a surface")

    monkeypatch.setattr("loger3d.train.synthetic._build_world", grazing)
    source = SyntheticSource(height=14, width=28, num_worlds=2, world_length=50)
    with pytest.warns(UserWarning, match="skipping"), pytest.raises(ConfigError, match="none of the 2 worlds"):
        source.sample(np.random.default_rng([0]), 4)


def test_the_batch_loader_gives_the_trainers_micro_batches_in_order():
    from loger3d.train.curriculum import Curriculum, Stage
    from loger3d.train.loader import BatchLoader

    source = SyntheticSource(height=14, width=28, families=("indoor",), num_worlds=2, world_length=200)
    mixture = ClipMixture([source], seed=1)
    curriculum = Curriculum([Stage(steps=3, frames=6, chunks=2, overlap=1)], seed=1)
    loader = BatchLoader(mixture, curriculum, lambda step: [[0, 1], [2, 3]], torch.device("cpu"), start=1)
    batch = loader.get(1, 0)
    expected = mixture.sample_batch(1, [0, 1], 6)
    assert batch.images.shape[:2] == (2, 6) and torch.equal(batch.images[1], expected[1].images)
    with pytest.raises(RuntimeError, match="in order"):
        loader.get(2, 0)  # micro-batch 1 of step 1 comes first
    assert torch.equal(loader.get(1, 1).images[0], mixture.sample(1, 2, 6).images)
    loader.close()


def _shading_inputs(cases, groups: int = 1):
    worlds = [SyntheticWorld(WorldConfig(family=f, trajectory=t, seed=s, length=120, height=28, width=42))
              for f, t, s in cases]
    stack = render_module.SceneStack.of([w.scene for w in worlds], [2] * len(worlds), torch.device("cpu"))
    poses = torch.cat([w.poses[[10, 50]] for w in worlds])
    k = torch.cat([w.intrinsics.expand(2, 3, 3) for w in worlds])
    cam = render_module.camera_rays(k, 28, 42)
    dirs = torch.einsum("fij,fhwj->fhwi", poses[:, :3, :3], cam).reshape(len(poses), groups, -1, 3)
    t, index = render_module.trace(stack, poses[:, :3, 3], dirs)
    return stack, poses[:, :3, 3], dirs, t, index, 1.0 / k[:, 0, 0]


def test_split_shading_equals_the_sparse_shading():
    """``shade_split`` (what ``shade_compiled`` compiles) shades misses and hits apart, each with every term for
    every ray; in eager mode it gives exactly ``shade``'s colours."""
    args = _shading_inputs([("indoor", "walk", 1), ("street", "drive", 2), ("terrain", "orbit", 3)])
    index = args[4]
    assert (index >= 0).float().mean() > 0.3 and (index < 0).any()  # surfaces and sky both shaded
    assert torch.equal(render_module.shade(*args), render_module.shade_split(*args))


def test_split_shading_traces_as_one_graph_a_part():
    """What ``shade_compiled`` compiles must trace whole: a graph break would silently run parts in eager mode."""
    stack, origins, dirs, t, index, pixel_angle = _shading_inputs([("street", "drive", 2), ("terrain", "orbit", 3)])
    flat = index.reshape(-1)
    miss, hit = (flat < 0).nonzero().squeeze(-1), (flat >= 0).nonzero().squeeze(-1)
    per_frame = dirs.shape[1] * dirs.shape[2]
    render_module.noise_table(torch.device("cpu"))
    for explained in (torch._dynamo.explain(render_module._sky_of_rays)(stack.light, dirs, miss, per_frame),
                      torch._dynamo.explain(render_module._surface_of_rays)(stack, origins, dirs, t, index, hit,
                                                                            per_frame, pixel_angle)):
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_compiled_pair_intersections_find_the_eager_hits():
    """``trace(compile_pairs=True)`` intersects the culled pairs through ``torch.compile``, one graph a shape kind:
    the same surfaces as the eager path, depths within float rounding (fused kernels may contract to FMAs)."""
    stack, origins, dirs, *_ = _shading_inputs([("street", "drive", 2), ("terrain", "orbit", 3), ("indoor", "walk", 1)],
                                               groups=6)
    shapes = stack.shapes
    fi, gi, pi = render_module._cull(stack, origins, dirs)
    for kind in render_module.Kind:
        picked = shapes.kind[pi] == kind
        explained = torch._dynamo.explain(render_module._PAIR_KEYS[kind])(
            origins, dirs, shapes.centre, shapes.rotation, shapes.size, fi[picked], gi[picked], pi[picked], 1e-3)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    t, index = render_module.trace(stack, origins, dirs)
    t_fused, index_fused = render_module.trace(stack, origins, dirs, compile_pairs=True)
    hit = index >= 0
    assert hit.float().mean() > 0.3 and torch.equal(index, index_fused)
    assert torch.allclose(t_fused[hit], t[hit], rtol=1e-5, atol=0) and torch.isinf(t_fused[~hit]).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_rendering_matches_eager_on_a_gpu():
    worlds = [SyntheticWorld(WorldConfig(family=f, trajectory=t, seed=s, length=120, height=56, width=84))
              for f, t, s in [("street", "drive", 2), ("terrain", "orbit", 3)]]
    requests = [(w, torch.arange(0, 40, 5)) for w in worlds]
    eager, fused = render_worlds(requests, "cuda"), render_worlds(requests, "cuda", compiled=True)
    for a, b in zip(eager, fused):
        # The fused intersections round differently: a ray grazing a silhouette may hit in one and miss in the other.
        assert (a.valid == b.valid).float().mean() > 0.9999
        both = a.valid & b.valid
        assert ((a.depth - b.depth).abs() <= 1e-5 * a.depth)[both].float().mean() > 0.9999
        close = (a.images - b.images).abs() < 1e-4
        assert close.float().mean() > 0.999  # a few pixels on a pattern's edge may round to the other side


def _loader_setup(fail_at: int | None = None):
    from loger3d.train.curriculum import Curriculum, Stage

    source = SyntheticSource(height=14, width=28, families=("indoor",), num_worlds=2, world_length=200)
    mixture = ClipMixture([source], seed=1)
    if fail_at is not None:
        real = mixture.sample_batch

        def failing(step, slots, frames, device="cpu"):
            if step == fail_at:
                raise ValueError(f"no clips at step {step}")
            return real(step, slots, frames, device)

        mixture.sample_batch = failing
    return mixture, Curriculum([Stage(steps=4, frames=6, chunks=2, overlap=1)], seed=1)


def test_drawing_ahead_in_the_thread_gives_the_same_batches_and_hands_errors_over():
    from loger3d.train.loader import BatchLoader

    plan = [[0, 1], [2, 3]]
    loaders = [BatchLoader(*_loader_setup(), lambda step: plan, torch.device("cpu"), start=0, ahead=a) for a in (0, 2)]
    for step in range(4):
        for micro in range(2):
            a, b = (loader.get(step, micro) for loader in loaders)
            assert a.source == b.source and torch.equal(a.images, b.images)
    for loader in loaders:
        loader.close()
    failing = BatchLoader(*_loader_setup(fail_at=2), lambda step: plan, torch.device("cpu"), start=1, ahead=2)
    failing.get(1, 0), failing.get(1, 1)  # drawn before the failing step
    with pytest.raises(ValueError, match="no clips at step 2"):
        failing.get(2, 0)
    failing.close()  # returns once the thread has nothing left to do; it ends a moment later
    deadline = time.monotonic() + 10
    while any(t.name == "loger3d-batches" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "loger3d-batches" for t in threading.enumerate())
