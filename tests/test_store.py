"""FrameStore and ImageWriter: round trips, truncation, frame lookup, and atomic writes."""

import numpy as np
import pytest
from PIL import Image

from loger3d.io.frames import FrameBatch
from loger3d.io.intrinsics import estimate_intrinsics
from loger3d.io.store import FrameStore, ImageWriter, image_relpath

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
    points = np.einsum("nij,nhwj->nhwi", poses[:, :3, :3], local) + poses[:, None, None, :3, 3]
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
        points=points.astype(np.float32),
    )


@pytest.fixture
def batches() -> list[FrameBatch]:
    return [make_batch(0, 2, 0), make_batch(2, 3, 1), make_batch(5, 1, 2)]


def concat(batches: list[FrameBatch], attr: str) -> np.ndarray:
    return np.concatenate([np.asarray(getattr(b, attr)) for b in batches])


def test_round_trip_float32_is_exact(tmp_path, batches):
    store = FrameStore(tmp_path)
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
        np.testing.assert_array_equal(r["image"], b.image)  # exact frames: a resumed cloud is rebuilt from them
        assert "points" not in r

    index, timestamp, poses, names = store.read_poses()
    np.testing.assert_array_equal(index, np.arange(6))
    np.testing.assert_array_equal(timestamp, concat(batches, "timestamp"))
    np.testing.assert_array_equal(poses, concat(batches, "camera_poses"))
    assert names == concat(batches, "name").tolist()
    assert store.read_intrinsics().shape == (6, 3, 3)


def test_round_trip_float16_within_half_precision(tmp_path, batches):
    store = FrameStore(tmp_path, dtype="float16")
    for b in batches:
        store.append(b)
    for b, r in zip(batches, store.iter_batches()):
        assert r["local_points"].dtype == r["depth"].dtype == r["conf"].dtype == np.float16
        np.testing.assert_allclose(r["local_points"], b.local_points, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(r["conf"], b.conf, rtol=1e-3, atol=1e-4)
        np.testing.assert_array_equal(r["camera_poses"], b.camera_poses)
        assert r["intrinsics"].dtype == np.float32


def test_empty_store_and_bad_dtype(tmp_path):
    store = FrameStore(tmp_path)
    assert store.chunks() == [] and list(store.iter_batches()) == []
    index, timestamp, poses, names = store.read_poses()
    assert index.shape == (0,) and index.dtype == np.int64 and poses.shape == (0, 4, 4) and names == []
    with pytest.raises(ValueError, match="float16"):
        FrameStore(tmp_path, dtype="bfloat16")


def test_truncate_and_resume(tmp_path, batches):
    store = FrameStore(tmp_path)
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
    store = FrameStore(tmp_path)
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
    paths = ImageWriter(tmp_path).write(b)
    assert paths == [tmp_path / image_relpath(n) for n in b.name]
    for path, image in zip(paths, b.image):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.size == (W, H)
            diff = np.abs(np.asarray(im.convert("RGB"), dtype=np.int16) - image)
        assert diff.mean() < 4  # quality 95 on a smooth image
    b.name[0] = "../escape"
    with pytest.raises(ValueError, match="plain file name"):
        ImageWriter(tmp_path).write(b)
