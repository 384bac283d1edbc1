"""SequenceFolder and DepthFilter: real-data clips whose resized depth, intrinsics and poses still agree."""

import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from loger3d.eval.datasets.base import DatasetError
from loger3d.train.clip import Clip, unproject_depth
from loger3d.train.depth_filter import DepthFilter
from loger3d.train.folder import SequenceFolder
from loger3d.train.worlds import make_sequence

LENGTH, SOURCE_H, SOURCE_W = 12, 84, 132  # rendered size; training sizes below are smaller and of another aspect
EXACT = (28, 42)  # a third of the source after cropping 3 columns each side: nearest depth lands on pixel centres


@pytest.fixture(scope="module")
def world():
    return make_sequence(family="indoor", seed=1, length=LENGTH, height=SOURCE_H, width=SOURCE_W, principal_jitter=3.0)


def write_sequence(folder, world, depth_format="npy", frames=None, pose_numbers=16, one_k=False, meta=None):
    """Write ``world``'s frames in the documented layout; a few pixels get unknown (0 and NaN) depth."""
    frames = range(len(world)) if frames is None else frames
    os.makedirs(folder / "rgb")
    os.makedirs(folder / "depth")
    poses, ks = [], []
    for n, i in enumerate(frames):
        rgb = (world.images[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(rgb).save(folder / "rgb" / f"{n:06d}.png")
        depth = world.depth[i].numpy().copy()
        depth[40:46, 60:66] = np.nan  # at EXACT size: rows 13-14, columns 19-20
        depth[40:46, 70:76] = 0  # columns 22-23
        if depth_format == "npy":
            np.save(folder / "depth" / f"{n:06d}.npy", depth.astype(np.float32))
        else:
            millimetres = np.nan_to_num(depth * 1000).round().astype(np.uint16)
            Image.fromarray(millimetres).save(folder / "depth" / f"{n:06d}.png")
        poses.append(" ".join(f"{v:.17g}" for v in world.poses[i].double().numpy().ravel()[:pose_numbers]))
        k = world.intrinsics[i].double()
        ks.append(" ".join(f"{v:.17g}" for v in (k[0, 0], k[1, 1], k[0, 2], k[1, 2])))
    (folder / "poses.txt").write_text("\n".join(poses) + "\n")
    (folder / "intrinsics.txt").write_text("\n".join(ks[:1] if one_k else ks) + "\n")
    if depth_format == "png":
        meta = {"depth_scale": 0.001, **(meta or {})}
    if meta:
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def roots(world, tmp_path_factory):
    """``both``: an .npy sequence (16-number poses, K per frame) and a .png one (12 numbers, one K line);
    ``npy`` and ``png``: each alone; ``mixed``: the .npy one and a 5-frame sequence."""
    base = tmp_path_factory.mktemp("data")
    write_sequence(base / "both" / "scene_npy", world)
    write_sequence(base / "both" / "scene_png", world, depth_format="png", pose_numbers=12, one_k=True)
    write_sequence(base / "npy" / "scene", world)
    write_sequence(base / "png" / "scene", world, depth_format="png", pose_numbers=12, one_k=True)
    write_sequence(base / "mixed" / "long", world)
    write_sequence(base / "mixed" / "short", world, frames=range(5))
    return base


def frame_indices(clip, world) -> list[int]:
    """Which source frames the clip holds, found by their (exact) poses."""
    same = (clip.poses[:, None] == world.poses[None]).flatten(2).all(-1)  # [n, LENGTH]
    assert (same.sum(1) == 1).all()
    return same.float().argmax(1).tolist()


# --- shapes, determinism, sampling ------------------------------------------------------------------------------

def test_clip_shapes_and_dtypes(roots):
    source = SequenceFolder(roots / "both", *EXACT, stride=(1, 2))
    assert source.name == "both" and source.sequences == ["scene_npy", "scene_png"] and len(source) == 2
    clip = source.sample(np.random.default_rng(0), 5)
    assert isinstance(clip, Clip) and len(clip) == 5
    assert clip.images.shape == (5, 3, 28, 42) and clip.images.dtype == torch.float32
    assert clip.depth.shape == clip.valid.shape == (5, 28, 42) and clip.depth.dtype == torch.float32
    assert clip.valid.dtype == torch.bool and torch.equal(clip.valid, clip.depth > 0)
    assert clip.intrinsics.shape == (5, 3, 3) and clip.poses.shape == (5, 4, 4)
    assert clip.intrinsics.dtype == clip.poses.dtype == torch.float32
    assert 0 <= clip.images.min() and clip.images.max() <= 1 and torch.isfinite(clip.depth).all()
    unknown = clip.valid[:, 13:15, 19:24]  # NaN, known, zero (see write_sequence)
    assert not unknown[..., :2].any() and unknown[..., 2].all() and not unknown[..., 3:].any()
    assert clip.source in ("both/scene_npy", "both/scene_png")
    assert SequenceFolder(roots / "both", *EXACT, name="scannet").sample(np.random.default_rng(0), 2).source \
        .startswith("scannet/")


def test_same_seed_same_clip_and_other_seeds_differ(roots):
    source = SequenceFolder(roots / "both", 24, 40, stride=(1, 3))
    a, b = (source.sample(np.random.default_rng(7), 4) for _ in range(2))
    assert a.source == b.source
    for key in ("images", "depth", "valid", "intrinsics", "poses"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    others = [source.sample(np.random.default_rng(seed), 4) for seed in range(5)]
    assert len({(c.source, c.poses.sum().item()) for c in others}) > 1


def test_strides_and_starts_follow_the_source_frames(roots, world):
    source = SequenceFolder(roots / "mixed", 24, 40, stride=(2, 3))
    rng = np.random.default_rng(3)
    steps, starts = set(), set()
    for _ in range(40):
        clip = source.sample(rng, 4)
        assert clip.source == "mixed/long"  # 5 frames cannot hold 4 at step 2
        frames = frame_indices(clip, world)
        step = {b - a for a, b in zip(frames, frames[1:])}
        assert len(step) == 1 and step <= {2, 3} and frames[-1] < LENGTH
        steps |= step
        starts.add(frames[0])
    assert steps == {2, 3} and starts == set(range(6))
    # the short sequence is drawn once it can hold a clip
    assert {source.sample(np.random.default_rng(s), 2).source for s in range(30)} == {"mixed/long", "mixed/short"}


# --- geometry: resize + crop keeps depth, intrinsics and poses consistent ----------------------------------------

def reprojection_error(clip, i: int, j: int) -> tuple[torch.Tensor, int]:
    """Relative depth error of clip frame i's valid pixels seen from frame j, where j sees the same surface.

    Frame j's depth is interpolated as inverse depth (exact on planes) where its four neighbours are a surface
    (all known, within 10 %); points occluded in j by more than 1 % are left out. Returns the errors and how many
    projected points landed on a surface at all."""
    k, pose = clip.intrinsics.double(), clip.poses.double()
    H, W = clip.depth.shape[-2:]
    points = unproject_depth(clip.depth[i].double(), k[i])[clip.valid[i]]
    cam = (points @ pose[i, :3, :3].T + pose[i, :3, 3] - pose[j, :3, 3]) @ pose[j, :3, :3]
    z = cam[:, 2]
    u, v = k[j, 0, 0] * cam[:, 0] / z + k[j, 0, 2], k[j, 1, 1] * cam[:, 1] / z + k[j, 1, 2]
    inside = (z > 0.05) & (u >= 0) & (u <= W - 1.001) & (v >= 0) & (v <= H - 1.001)
    z, u, v = z[inside], u[inside], v[inside]
    u0, v0 = u.floor().long(), v.floor().long()
    fu, fv = u - u0, v - v0
    depth = clip.depth[j].double()
    corners = [(v0, u0, (1 - fu) * (1 - fv)), (v0, u0 + 1, fu * (1 - fv)), (v0 + 1, u0, (1 - fu) * fv),
               (v0 + 1, u0 + 1, fu * fv)]
    around = torch.stack([depth[r, c] for r, c, _ in corners])
    surface = (around.amin(0) > 0) & (around.amax(0) < 1.1 * around.amin(0))
    seen = 1 / sum(w / depth[r, c].clamp_min(1e-9) for r, c, w in corners)
    compared = surface & (seen >= z * (1 - 1e-2))
    return ((seen - z).abs() / z)[compared], int(surface.sum())


@pytest.mark.parametrize("size", [EXACT, (24, 40), (56, 56)], ids=["third", "fractional", "square"])
def test_resized_depth_intrinsics_and_poses_agree_across_frames(roots, size):
    # at a third of the size, nearest depth lands on the new pixel centres: float depth (.npy) agrees to rounding,
    # but for the 10-15 % of points where the interpolation spans a crease; an intrinsics error of a third of a
    # pixel (e.g. forgetting the half-pixel shifts) leaves almost none that close
    source = SequenceFolder(roots / ("npy" if size == EXACT else "both"), *size, stride=(3, 3))
    for seed in range(4):
        clip = source.sample(np.random.default_rng(seed), 3)
        for i, j in ((0, 2), (2, 0), (1, 2)):
            error, on_surface = reprojection_error(clip, i, j)
            assert error.numel() > 0.8 * on_surface and error.numel() > 0.3 * size[0] * size[1], (seed, i, j)
            if size == EXACT:
                assert (error < 1e-5).float().mean() > 0.75, (seed, i, j, error.median())
            else:  # nearest neighbour: up to half a source pixel off, and millimetres in the .png sequence
                assert error.median() < 3e-3 and (error < 5e-2).float().mean() > 0.95, (seed, i, j, error.median())


def test_intrinsics_of_a_third_size_crop(roots, world):
    clip = SequenceFolder(roots / "npy", *EXACT).sample(np.random.default_rng(0), 2)
    k = world.intrinsics[0].double()
    # 3 source columns cropped on each side, then a third: u' = (u + 0.5 - 3) / 3 - 0.5
    expected = torch.tensor([[k[0, 0] / 3, 0, (k[0, 2] - 2.5) / 3 - 0.5], [0, k[1, 1] / 3, (k[1, 2] + 0.5) / 3 - 0.5],
                             [0, 0, 1]], dtype=torch.float32)
    assert torch.allclose(clip.intrinsics, expected.expand(2, 3, 3), atol=1e-5)
    # the image is the source's 3×3 blocks, low-passed: closer to them than to the blocks one target pixel over
    frame = frame_indices(clip, world)[0]
    blocks = torch.nn.functional.avg_pool2d(world.images[frame:frame + 1, :, :, 3:-3], 3)[0]
    shifted = torch.nn.functional.avg_pool2d(world.images[frame:frame + 1, :, :, 6:], 3)[0, :, :, :-1]
    assert (clip.images[0] - blocks).abs().mean() < 0.5 * (clip.images[0, :, :, :-1] - shifted).abs().mean()


def test_png_depth_is_scaled_by_meta_depth_scale(roots):
    # the two folders hold the same frames, so the same seed draws the same clip from each
    npy = SequenceFolder(roots / "npy", 24, 40, stride=(1, 2)).sample(np.random.default_rng(5), 4)
    png = SequenceFolder(roots / "png", 24, 40, stride=(1, 2)).sample(np.random.default_rng(5), 4)
    assert torch.equal(npy.poses, png.poses) and torch.allclose(npy.intrinsics, png.intrinsics)
    assert torch.equal(npy.valid, png.valid) and npy.valid.float().mean() > 0.9
    assert (npy.depth - png.depth).abs().max() <= 0.0005 + 1e-6  # millimetres, rounded
    assert png.depth.max() > 1.0  # metres, not millimetres or raw units


# --- depth filtering -----------------------------------------------------------------------------------------------

def ramp_clip() -> Clip:
    """Two frames of 50 pixels: depths 1..50 in frame 0 and 51..100 in frame 1, plus 2 unknown pixels."""
    depth = torch.arange(1, 101, dtype=torch.float32).view(2, 5, 10)
    depth[0, 0, :2] = 0
    return Clip(images=torch.zeros(2, 3, 5, 10), depth=depth, valid=depth > 0, intrinsics=torch.eye(3).expand(2, 3, 3),
                poses=torch.eye(4).expand(2, 4, 4))


def test_depth_filter_max_depth_and_percentile():
    clip = ramp_clip()
    assert DepthFilter()(clip) is clip
    far = DepthFilter(max_depth=60)(clip)
    assert torch.equal(far.valid, clip.valid & (clip.depth <= 60)) and torch.equal(far.depth > 0, far.valid)
    assert far.depth.max() == 60 and torch.equal(far.depth[0], clip.depth[0])
    # 98 valid depths (3..100); nearest rank ceil(0.9 · 98) = 89 → depth 91; one cut-off for the whole clip
    cut = DepthFilter(percentile=90)(clip)
    assert int(cut.valid.sum()) == 89 and cut.depth.max() == 91
    assert torch.equal(cut.valid[0], clip.valid[0]) and int(cut.valid[1].sum()) == 41
    assert torch.equal(cut.depth, torch.where(cut.valid, clip.depth, 0))
    assert DepthFilter(max_depth=80, percentile=90)(clip).depth.max() == 80
    assert torch.equal(DepthFilter(percentile=100)(clip).valid, clip.valid)


def test_folder_applies_its_and_meta_json_max_depth(world, tmp_path):
    write_sequence(tmp_path / "near" / "room", world, frames=range(4), meta={"max_depth": 4.0})
    write_sequence(tmp_path / "raw" / "room", world, frames=range(4))
    raw = SequenceFolder(tmp_path / "raw", 24, 40).sample(np.random.default_rng(0), 2)
    clip = SequenceFolder(tmp_path / "near", 24, 40).sample(np.random.default_rng(0), 2)
    assert raw.depth.max() > 4 and clip.depth.max() <= 4 and torch.equal(clip.valid, raw.valid & (raw.depth <= 4))
    assert SequenceFolder(tmp_path / "near", 24, 40, max_depth=3).sample(np.random.default_rng(0), 2).depth.max() <= 3
    pct = SequenceFolder(tmp_path / "raw", 24, 40, depth_percentile=50).sample(np.random.default_rng(0), 2)
    assert 0.4 < pct.valid.sum() / raw.valid.sum() < 0.6


# --- errors: one line, naming the file and the fix --------------------------------------------------------------

def _drop_last_line(path):
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))


def _replace_line(path, index, text):
    lines = path.read_text().splitlines()
    lines[index] = text
    path.write_text("\n".join(lines) + "\n")


BROKEN = {
    "missing poses": (lambda s: os.remove(s / "poses.txt"), r"missing .*poses\.txt; write one camera-to-world"),
    "pose count": (lambda s: _drop_last_line(s / "poses.txt"), r"poses\.txt: 3 poses for 4 images; write one pose"),
    "pose not numbers": (lambda s: _replace_line(s / "poses.txt", 1, " ".join(["x"] * 12)),
                         r"poses\.txt:2: not numbers"),
    "pose fields": (lambda s: _replace_line(s / "poses.txt", 0, " ".join(["1"] * 13)),
                    r"poses\.txt:1: 13 fields, expected 12 or 16"),
    "pose not rigid": (lambda s: _replace_line(s / "poses.txt", 2, "2 0 0 0 0 2 0 0 0 0 2 0"),
                       r"poses\.txt:3: not a rigid camera-to-world pose \(rotation not orthonormal"),
    "pose not finite": (lambda s: _replace_line(s / "poses.txt", 3, "1 0 0 inf 0 1 0 0 0 0 1 0"),
                        r"poses\.txt:4: .*not finite.*drop the frame"),
    "missing intrinsics": (lambda s: os.remove(s / "intrinsics.txt"), r"missing .*intrinsics\.txt; write fx fy cx cy"),
    "intrinsics count": (lambda s: _drop_last_line(s / "intrinsics.txt"),
                         r"intrinsics\.txt: 3 lines for 4 images; write one line .* or a single line"),
    "intrinsics negative": (lambda s: _replace_line(s / "intrinsics.txt", 0, "-10 10 5 5"),
                            r"intrinsics\.txt:1: fx and fy must be positive"),
    "depth count": (lambda s: os.remove(s / "depth" / "000003.npy"),
                    r"depth: 3 depth maps for 4 images; write one depth map per image"),
    "png without scale": (lambda s: (os.remove(s / "depth" / "000000.npy"),
                                     Image.fromarray(np.ones((4, 4), np.uint16)).save(s / "depth" / "000000.png")),
                          r"meta\.json: 16-bit \.png depth needs a depth_scale"),
    "meta not json": (lambda s: (s / "meta.json").write_text("{depth_scale: 1"), r"meta\.json: not valid JSON"),
    "meta unknown key": (lambda s: (s / "meta.json").write_text('{"depth_sclae": 0.001}'),
                         r"meta\.json: unknown keys \['depth_sclae'\]; meta\.json may hold only"),
    "meta bad value": (lambda s: (s / "meta.json").write_text('{"max_depth": -1}'),
                       r"meta\.json: max_depth must be a positive number"),
    "no images": (lambda s: [os.remove(p) for p in (s / "rgb").iterdir()], r"rgb: no \.jpg or \.png images"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_sequences_fail_with_one_line(world, tmp_path, case):
    seq = write_sequence(tmp_path / "root" / "seq", world, frames=range(4))
    breaks, message = BROKEN[case]
    breaks(seq)
    with pytest.raises(DatasetError) as error:
        SequenceFolder(tmp_path / "root", 24, 40)
    assert re.search(message, str(error.value)) and "\n" not in str(error.value), str(error.value)
    assert str(seq) in str(error.value)


def test_bad_requests_fail_with_one_line(world, tmp_path):
    write_sequence(tmp_path / "root" / "seq", world, frames=range(4))
    source = SequenceFolder(tmp_path / "root", 24, 40, stride=(2, 4))
    cases = [
        (lambda: source.sample(np.random.default_rng(0), 3),
         r"no sequence is long enough for 3 frames at stride 2 \(5 frames needed, the longest, seq, has 4\); use "
         r"fewer frames"),
        (lambda: source.sample(np.random.default_rng(0), 0), r"frames must be a positive integer"),
        (lambda: SequenceFolder(tmp_path / "nowhere", 24, 40), r"no sequence folder at .*nowhere: expected ROOT/"),
        (lambda: SequenceFolder(tmp_path / "root" / "seq", 24, 40),
         r"seq holds rgb/, so it is one sequence, not a folder of them; pass its parent"),
        (lambda: SequenceFolder(tmp_path / "root", 24, 40, stride=(3, 2)), r"stride must be \(min, max\) integers"),
        (lambda: SequenceFolder(tmp_path / "root", 0, 40), r"height and width must be positive integers"),
        (lambda: SequenceFolder(tmp_path / "root", 24, 40, depth_percentile=0), r"percentile must be in \(0, 100\]"),
        (lambda: DepthFilter(percentile=150), r"percentile must be in \(0, 100\] \(e\.g\. 98\) or None, got 150"),
        (lambda: DepthFilter(max_depth=0), r"max_depth must be a positive number of metres or None, got 0"),
        (lambda: DepthFilter(max_depth=float("nan")), r"max_depth must be a positive number"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as error:
            call()
        assert re.search(message, str(error.value)) and "\n" not in str(error.value), str(error.value)
    np.save(tmp_path / "root" / "seq" / "depth" / "000001.npy", np.ones((10, 10), np.float32))
    with pytest.raises(DatasetError, match=r"000001\.npy: depth is 10×10 but its image .*000001\.png is 132×84; "
                                           r"save depth at the image's size"):
        SequenceFolder(tmp_path / "root", 24, 40).sample(np.random.default_rng(0), 4)
