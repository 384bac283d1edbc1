"""FrameStore, ImageWriter and TrajectoryWriter: what is kept at which precision, round trips, truncation,
frame lookup, restore after a resume, and atomic writes."""

import numpy as np
import pytest
from PIL import Image

from loger3d.sinks.base import FrameBatch
from loger3d.sinks.images import ImageWriter, image_relpath
from loger3d.sinks.intrinsics import estimate_intrinsics
from loger3d.sinks.store import FrameStore, rebuild_local_points
from loger3d.sinks.trajectory import TrajectoryWriter, read_kitti, read_tum

H, W = 20, 28
K = np.array([[30.0, 0.0, 13.5], [0.0, 29.0, 9.5], [0.0, 0.0, 1.0]])


def make_batch(start: int, n: int, seed: int) -> FrameBatch:
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    depth = rng.uniform(1.0, 5.0, size=(n, H, W))
    local = np.stack([(cols - K[0, 2]) / K[0, 0] * depth, (rows - K[1, 2]) / K[1, 1] * depth, depth], axis=-1)
    poses = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        poses[i, :3, :3] = q * np.sign(np.linalg.det(q))
        poses[i, :3, 3] = rng.normal(size=3)
    local = local.astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.stack([xx * 9, yy * 12, np.full_like(xx, 100)], axis=-1)[None] + 20 * np.arange(n)[:, None, None, None]
    index = np.arange(start, start + n)
    return FrameBatch(
        index=index,
        source_index=index * 2 + 1,
        timestamp=index / 30.0,
        name=[f"frame_{i:06d}" for i in index],
        image=image.clip(0, 255).astype(np.uint8),
        local_points=local,
        conf=rng.uniform(0, 1, size=(n, H, W)).astype(np.float32),
        camera_poses=poses,
    )


@pytest.fixture
def batches() -> list[FrameBatch]:
    return [make_batch(0, 2, 0), make_batch(2, 3, 1), make_batch(5, 1, 2)]


def concat(batches: list[FrameBatch], attr: str) -> np.ndarray:
    return np.concatenate([np.asarray(getattr(b, attr)) for b in batches])


ALL = ("depth", "conf", "points")


def test_round_trip_float32_is_exact(tmp_path, batches):
    store = FrameStore(tmp_path, keep=ALL, precision="float32")
    assert [store.append(b) for b in batches] == [0, 1, 2]
    assert [p.name for p in store.chunks()] == ["chunk_00000.npz", "chunk_00001.npz", "chunk_00002.npz"]
    read = list(FrameStore(tmp_path).iter_batches())
    assert len(read) == 3
    for b, r in zip(batches, read):
        np.testing.assert_array_equal(r["index"], b.index)
        np.testing.assert_array_equal(r["source_index"], b.source_index)
        np.testing.assert_array_equal(r["timestamp"], b.timestamp)
        assert r["name"].dtype.kind == "U" and list(r["name"]) == b.name
        np.testing.assert_array_equal(r["local_points"], b.local_points)
        np.testing.assert_array_equal(r["depth"], b.local_points[..., 2])
        np.testing.assert_array_equal(r["conf"], b.conf)
        assert r["camera_poses"].dtype == np.float64
        np.testing.assert_array_equal(r["camera_poses"], b.camera_poses)
        assert r["intrinsics"].dtype == np.float32
        np.testing.assert_allclose(r["intrinsics"], estimate_intrinsics(b.local_points, b.conf, step=4), rtol=1e-6)
        np.testing.assert_allclose(r["intrinsics"], np.broadcast_to(K, (len(b), 3, 3)), rtol=1e-4, atol=1e-4)
        assert "image" not in r and "points" not in r  # frames are kept as JPEG by ImageWriter

    index, timestamp, poses, names = store.read_poses()
    np.testing.assert_array_equal(index, np.arange(6))
    np.testing.assert_array_equal(timestamp, concat(batches, "timestamp"))
    np.testing.assert_array_equal(poses, concat(batches, "camera_poses"))
    assert names == concat(batches, "name").tolist()
    assert store.read_intrinsics().shape == (6, 3, 3)


def test_default_store_is_compact_and_close(tmp_path, batches):
    """Default: float16 depth, 8-bit confidence, no point maps (rebuilt from depth and K when read)."""
    store = FrameStore(tmp_path)
    for b in batches:
        store.append(b)
    for b, path, r in zip(batches, store.chunks(), store.iter_batches()):
        with np.load(path) as z:
            assert z["depth"].dtype == np.float16 and z["conf"].dtype == np.uint8 and "local_points" not in z.files
            per_pixel = sum(z[k].nbytes for k in ("depth", "conf")) / (len(b) * H * W)
        assert per_pixel == 3  # 0.74 MB a frame at 924x266
        assert r["depth"].dtype == r["conf"].dtype == r["local_points"].dtype == np.float32
        np.testing.assert_allclose(r["depth"], b.depth, rtol=2**-11)  # float16: 11 significant bits
        np.testing.assert_allclose(r["conf"], b.conf, atol=0.5 / 255 + 1e-7)
        # The test's points are exactly pinhole, so depth and the fitted K rebuild them.
        np.testing.assert_allclose(r["local_points"], b.local_points, rtol=2e-3, atol=2e-3)
        np.testing.assert_array_equal(r["local_points"],
                                      rebuild_local_points(r["depth"], r["intrinsics"]))


def test_nothing_per_pixel_kept(tmp_path, batches):
    store = FrameStore(tmp_path, keep=())
    for b in batches:
        store.append(b)
    first = next(store.iter_batches())
    assert {"depth", "conf", "local_points"}.isdisjoint(first)
    np.testing.assert_array_equal(store.read_poses()[2], concat(batches, "camera_poses"))


def test_empty_store_and_bad_options(tmp_path):
    store = FrameStore(tmp_path)
    assert store.chunks() == [] and list(store.iter_batches()) == []
    index, timestamp, poses, names = store.read_poses()
    assert index.shape == (0,) and index.dtype == np.int64 and poses.shape == (0, 4, 4) and names == []
    with pytest.raises(ValueError, match="float16"):
        FrameStore(tmp_path, precision="bfloat16")
    with pytest.raises(ValueError, match="cannot keep normals"):
        FrameStore(tmp_path, keep=("depth", "normals"))


def test_sink_state_and_restore_drop_later_chunks(tmp_path, batches):
    store = FrameStore(tmp_path)
    store.write(batches[0])
    state = store.state()
    store.write(batches[1])
    store.write(batches[2])
    FrameStore(tmp_path).restore(state, frames=2)
    assert FrameStore(tmp_path).read_poses()[0].tolist() == [0, 1]


def test_trajectory_writer_restore_keeps_the_checkpointed_poses(tmp_path, batches):
    writer = TrajectoryWriter(tmp_path)
    for b in batches:
        writer.write(b)
    writer.restore({}, frames=2)
    timestamps, _ = read_tum(tmp_path / "trajectory_tum.txt")
    assert len(timestamps) == 2 and len(read_kitti(tmp_path / "trajectory_kitti.txt")) == 2
    writer.write(batches[1])  # continues after the kept lines
    np.testing.assert_allclose(read_tum(tmp_path / "trajectory_tum.txt")[0], concat(batches[:2], "timestamp"))
    writer.restore({}, frames=0)
    writer.write(batches[0])
    assert open(tmp_path / "trajectory_tum.txt").read().startswith("# timestamp")


def test_truncate_and_resume(tmp_path, batches):
    store = FrameStore(tmp_path, keep=ALL)
    for b in batches:
        store.append(b)
    store.truncate(1)
    assert [p.name for p in store.chunks()] == ["chunk_00000.npz"]
    assert store.read_poses()[0].tolist() == [0, 1]
    assert store.append(batches[1]) == 1
    reopened = FrameStore(tmp_path)  # numbering continues after what is on disk
    assert reopened.append(batches[2]) == 2
    assert reopened.read_poses()[0].tolist() == list(range(6))
    reopened.truncate(10)  # nothing that far: nothing deleted, no gap in the numbering
    assert len(reopened.chunks()) == 3 and reopened.append(make_batch(6, 1, 3)) == 3


def test_read_frame_across_chunk_boundaries(tmp_path, batches):
    store = FrameStore(tmp_path, keep=ALL, precision="float32")
    store.append(batches[0])
    assert int(store.read_frame(1)["index"]) == 1  # index built now, then extended by append
    for b in batches[1:]:
        store.append(b)
    for i in range(6):
        b = next(b for b in batches if i in b.index)
        row = int(np.flatnonzero(b.index == i)[0])
        frame = store.read_frame(i)
        assert int(frame["index"]) == i and str(frame["name"]) == b.name[row]
        np.testing.assert_array_equal(frame["local_points"], b.local_points[row])
        np.testing.assert_array_equal(frame["camera_poses"], b.camera_poses[row])
    # Another writer appended: a miss rebuilds the index.
    FrameStore(tmp_path).append(make_batch(6, 1, 3))
    assert int(store.read_frame(6)["index"]) == 6
    with pytest.raises(KeyError, match="frame 99"):
        store.read_frame(99)


def test_no_temporary_files_left(tmp_path, batches):
    store = FrameStore(tmp_path)
    writer = ImageWriter(tmp_path)
    for b in batches:
        store.append(b)
        writer.write(b)
    writer.finish()
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [p.name for p in store.chunks()]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(
        f"{n}.jpg" for n in concat(batches, "name")
    )


def test_failed_write_leaves_previous_chunks_intact(tmp_path, batches, monkeypatch):
    store = FrameStore(tmp_path)
    store.append(batches[0])
    store.append(batches[1])
    before = {p.name: p.read_bytes() for p in store.chunks()}

    def fail_midway(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        store.append(batches[2])
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (tmp_path / "frames").iterdir()} == before
    assert store.append(batches[2]) == 2
    assert store.read_poses()[0].tolist() == list(range(6))


def test_image_writer(tmp_path, batches):
    b = batches[1]
    writer = ImageWriter(tmp_path, threads=3)
    paths = writer.write(b)
    assert writer.state() == {}  # a checkpoint waits for every queued image
    assert paths == [tmp_path / image_relpath(n) for n in b.name]
    for path, image in zip(paths, b.image):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.size == (W, H)
            diff = np.abs(np.asarray(im.convert("RGB"), dtype=np.int16) - image)
        assert diff.mean() < 4  # quality 95 on a smooth image
    b.name[0] = "../escape"
    with pytest.raises(ValueError, match="plain file name"):
        writer.write(b)
    writer.finish()
