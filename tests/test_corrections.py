"""Loop-closure corrections beside the frame store: the file's round trip and damage, and FrameStore readers that
apply them (world points move by the Sim(3), raw reads are unchanged) or not."""

import numpy as np
import pytest

from loger3d.errors import DamagedFileError
from loger3d.sinks.corrections import (
    CORRECTIONS_FILE,
    FrameCorrections,
    read_corrections,
    remove_corrections,
    write_corrections,
)
from loger3d.sinks.store import FrameStore

from .test_store import H, W, make_batch

STORES = [(("depth", "conf"), "float16"), (("depth", "conf", "points"), "float32"), (("points",), "float16")]


def rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    return q * np.sign(np.linalg.det(q))[:, None, None]


def make_corrections(indices: np.ndarray, seed: int) -> FrameCorrections:
    rng = np.random.default_rng(seed)
    n = len(indices)
    return FrameCorrections(index=indices, scale=rng.uniform(0.5, 2.0, n), rotation=rotations(rng, n),
                            translation=rng.normal(size=(n, 3)))


def build(root, keep=("depth", "conf"), precision="float16") -> FrameStore:
    """Six frames in chunks of 2, 3 and 1."""
    store = FrameStore(root, keep=keep, precision=precision)
    for start, n, seed in ((0, 2, 0), (2, 3, 1), (5, 1, 2)):
        store.append(make_batch(start, n, seed))
    return store


def world(poses: np.ndarray, local: np.ndarray) -> np.ndarray:
    """World points ``[n,H,W,3]`` float64 of camera-frame points ``[n,H,W,3]`` under camera-to-world ``[n,4,4]``."""
    return np.einsum("nij,nhwj->nhwi", poses[:, :3, :3], local.astype(np.float64)) + poses[:, None, None, :3, 3]


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


def test_round_trip_and_remove(tmp_path):
    corrections = make_corrections(np.array([0, 3, 4, 9]), seed=0)
    path = write_corrections(tmp_path, corrections)
    assert path == tmp_path / CORRECTIONS_FILE and [p.name for p in path.parent.iterdir()] == ["corrections.npz"]
    read = read_corrections(tmp_path)
    assert len(read) == 4 and read.index.dtype == np.int64
    for name in ("index", "scale", "rotation", "translation"):
        np.testing.assert_array_equal(getattr(read, name), getattr(corrections, name))
    scale, rotation, translation = read.lookup(np.array([9, 0]))
    np.testing.assert_array_equal(scale, corrections.scale[[3, 0]])
    np.testing.assert_array_equal(rotation, corrections.rotation[[3, 0]])
    np.testing.assert_array_equal(translation, corrections.translation[[3, 0]])
    with pytest.raises(DamagedFileError, match="frame 2 has no correction"):
        read.lookup(np.array([0, 2]))
    remove_corrections(tmp_path)
    assert read_corrections(tmp_path) is None
    remove_corrections(tmp_path)  # nothing to remove is fine


@pytest.mark.parametrize("change, message", [
    (dict(scale=np.array([1.0, -1.0])), "scale is not positive"),
    (dict(index=np.array([1, 0])), "not sorted"),
    (dict(index=np.array([0.0, 1.0])), "must be integers"),
    (dict(rotation=np.tile(2 * np.eye(3), (2, 1, 1))), "not a rotation"),
    (dict(translation=np.array([[0.0, 0, 0], [np.nan, 0, 0]])), "translation is not finite"),
    (dict(translation=np.zeros((2, 4))), "shape"),
])
def test_bad_arrays_in_code_are_value_errors(change, message):
    arrays = dict(index=np.array([0, 1]), scale=np.ones(2), rotation=np.tile(np.eye(3), (2, 1, 1)),
                  translation=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=message) as e:
        FrameCorrections(**{**arrays, **change})
    assert not isinstance(e.value, DamagedFileError)


@pytest.mark.parametrize("damage", ["garbled", "cut", "member", "negative"])
def test_damaged_file_is_one_line(tmp_path, damage):
    path = write_corrections(tmp_path, make_corrections(np.arange(3), seed=1))
    if damage == "garbled":
        path.write_bytes(np.random.default_rng(0).bytes(300))
    elif damage == "cut":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "member":
        np.savez(path, index=np.arange(3), scale=np.ones(3))
    else:
        np.savez(path, index=np.arange(3), scale=-np.ones(3), rotation=np.tile(np.eye(3), (3, 1, 1)),
                 translation=np.zeros((3, 3)))
    with pytest.raises(DamagedFileError) as e:
        read_corrections(tmp_path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DamagedFileError):
        FrameStore(tmp_path).read_poses()
    FrameStore(tmp_path, corrected=False).read_poses()  # a raw reader never opens it


@pytest.mark.parametrize("keep, precision", STORES)
def test_readers_move_world_points_by_the_correction(tmp_path, keep, precision):
    build(tmp_path, keep, precision)
    raw = FrameStore(tmp_path, corrected=False)
    corrections = make_corrections(np.arange(-2, 8), seed=2)  # covers more frames than the store: fine
    write_corrections(tmp_path, corrections)
    store = FrameStore(tmp_path)
    assert store.corrections is not None and raw.corrections is None

    index, timestamp, poses, names = store.read_poses()
    raw_index, raw_timestamp, raw_poses, raw_names = raw.read_poses()
    assert index.tolist() == raw_index.tolist() and names == raw_names
    np.testing.assert_array_equal(timestamp, raw_timestamp)
    np.testing.assert_array_equal(store.read_intrinsics(), raw.read_intrinsics())
    s, r, t = corrections.lookup(index)
    np.testing.assert_allclose(poses[:, :3, :3], r @ raw_poses[:, :3, :3], atol=1e-12)
    np.testing.assert_allclose(poses[:, 3], raw_poses[:, 3])

    batches, raw_batches = list(store.iter_batches()), list(raw.iter_batches())
    for b, rb in zip(batches, raw_batches):
        s, r, t = corrections.lookup(b["index"])
        expected = s[:, None, None, None] * np.einsum("nij,nhwj->nhwi", r, world(rb["camera_poses"],
                                                                                  rb["local_points"]))
        expected += t[:, None, None, :]
        np.testing.assert_allclose(world(b["camera_poses"], b["local_points"]), expected, rtol=1e-4,
                                   atol=1e-4 * np.abs(expected).max())
        np.testing.assert_array_equal(b["depth"], b["local_points"][..., 2])
        assert b["depth"].dtype == b["local_points"].dtype == np.float32
        np.testing.assert_array_equal(b["camera_poses"], poses[np.isin(index, b["index"])])
        for k in ("conf", "intrinsics", "name", "timestamp"):
            if k in rb:
                np.testing.assert_array_equal(b[k], rb[k])
    frames = store.read_frames(range(6))
    for k in batches[0]:
        np.testing.assert_array_equal(frames[k], np.concatenate([b[k] for b in batches]))


def test_raw_reader_matches_a_store_without_corrections(tmp_path):
    build(tmp_path / "a", keep=("depth", "conf", "points"))
    build(tmp_path / "b", keep=("depth", "conf", "points"))
    write_corrections(tmp_path / "a", make_corrections(np.arange(6), seed=3))
    raw, plain = FrameStore(tmp_path / "a", corrected=False), FrameStore(tmp_path / "b")
    assert plain.corrections is None
    for a, b in zip(raw.iter_batches(), plain.iter_batches(), strict=True):
        assert_same(a, b)
    assert_same(raw.read_frame(3), plain.read_frame(3))
    assert_same(raw.read_frames([5, 1]), plain.read_frames([5, 1]))
    for a, b in zip(raw.read_poses(), plain.read_poses()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("corrected", [True, False])
def test_read_frames_keeps_the_order_asked(tmp_path, corrected):
    build(tmp_path)
    if corrected:
        write_corrections(tmp_path, make_corrections(np.arange(6), seed=4))
    store = FrameStore(tmp_path, corrected=corrected)
    order = [4, 0, 5, 2, 2, 1]
    frames = store.read_frames(order)
    assert frames["index"].tolist() == order and frames["local_points"].shape == (6, H, W, 3)
    for j, i in enumerate(order):
        frame = store.read_frame(i)
        assert frame.keys() == frames.keys()
        for k in frame:
            np.testing.assert_array_equal(frames[k][j], frame[k])
    assert store.read_frames([]) == {}
    with pytest.raises(KeyError, match="frame 7 is not in"):
        store.read_frames([1, 7])


def test_corrections_are_cached_until_truncate(tmp_path):
    store = build(tmp_path)
    before = store.read_poses()[2]
    assert store.corrections is None
    write_corrections(tmp_path, make_corrections(np.arange(2), seed=5))  # only the first chunk's frames
    np.testing.assert_array_equal(store.read_poses()[2], before)  # read once, at the first read
    store.truncate(1)
    assert len(store.corrections) == 2
    assert not np.allclose(store.read_poses()[2], before[:2])
    store.append(make_batch(2, 1, 6))  # a frame the corrections do not cover: they no longer match
    with pytest.raises(DamagedFileError, match="frame 2 has no correction"):
        store.read_frame(2)
