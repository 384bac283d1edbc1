"""The reconstruct job end to end on a video the test writes (tiny preset, seeded weights)."""

import json

import numpy as np
import pytest
import torch

from loger3d.inference.reconstructor import Reconstructor
from loger3d.run import RunError, RunSettings, export_run, reconstruct
from loger3d.sinks.store import FrameStore
from loger3d.sources import open_source
from loger3d.sources.preprocess import frames_to_tensor

from .conftest import write_video

SIZE = [112, 84]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", n=30)


def settings(video, **kw):
    base = dict(input=[video], model="seeded:tiny", window=8, overlap=2, align="sim3", reset_every=2,
                resolution=SIZE)
    base.update(kw)
    return RunSettings(**base)


def run(video, out, model, checkpoint_every=0.0, **kw):
    with torch.no_grad():
        return reconstruct(video, out, model, settings(video, **kw), checkpoint_every=checkpoint_every)


def output_files(out):
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and "state" not in path.parts and path.name != "run.json":
            files[str(path.relative_to(out))] = path.read_bytes()
    return files


def test_stream_equals_whole_sequence_forward(tiny_model, video, tmp_path):
    summary = run(video, tmp_path / "out", tiny_model, save=["depth", "conf", "points"], store_precision="float32")
    assert summary["status"] == "complete" and summary["frames"] == 30
    images = frames_to_tensor(np.stack([f.image for f in open_source(video, resolution=tuple(SIZE)).frames()]))
    with torch.no_grad():
        whole = tiny_model(images, window_size=8, overlap_size=2, align="sim3", reset_every=2)
    store = FrameStore(tmp_path / "out")
    index, timestamps, poses, names = store.read_poses()
    assert index.tolist() == list(range(30))
    np.testing.assert_array_equal(poses, whole.camera_poses[0].double().numpy())
    local = np.concatenate([c["local_points"] for c in store.iter_batches()])
    np.testing.assert_array_equal(local, whole.local_points[0].numpy())
    np.testing.assert_allclose(timestamps, np.arange(30) / 12, atol=1e-6)


def test_the_encoder_gets_contiguous_frames_whatever_the_input_layout(tiny_model):
    """Frames stacked as H×W×3 and permuted (what ``frames_to_tensor`` returns) reach the patch embedding in the
    layout the streaming job's uint8 frames have: convolution kernels for the two layouts round differently on
    CPUs without AVX-512 (oneDNN's AVX2 kernels), so a whole-sequence forward and a stream would part there."""
    hwc = torch.rand(6, 42, 56, 3, generator=torch.Generator().manual_seed(0))
    layouts = []
    hook = tiny_model.encoder.patch_embed.proj.register_forward_pre_hook(
        lambda module, args: layouts.append(args[0].is_contiguous()))
    try:
        with torch.no_grad():
            permuted, _ = tiny_model.forward_chunk(hwc.permute(0, 3, 1, 2))
            contiguous, _ = tiny_model.forward_chunk(hwc.permute(0, 3, 1, 2).contiguous())
    finally:
        hook.remove()
    assert layouts == [True, True]
    assert torch.equal(permuted.camera_poses, contiguous.camera_poses)


def assert_same_outputs(a_dir, b_dir):
    plain, resumed = output_files(a_dir), output_files(b_dir)
    assert plain.keys() == resumed.keys()
    for name in plain:
        if name.startswith("frames/"):  # npz archives carry timestamps: compare their arrays
            a, b = np.load(a_dir / name), np.load(b_dir / name)
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
        else:
            assert plain[name] == resumed[name], name


@pytest.mark.parametrize("interrupt_at", [1, 3])
def test_crash_mid_chunk_resumes_from_the_last_saved_state(tiny_model, video, tmp_path, monkeypatch, interrupt_at):
    """A crash inside the model: the state saved after the last chunk (checkpoint_every=0) is resumed."""
    run(video, tmp_path / "plain", tiny_model)
    calls = {"n": 0}
    original = Reconstructor.push

    def crashing_push(self, images):
        calls["n"] += 1
        if calls["n"] > interrupt_at:
            raise KeyboardInterrupt
        return original(self, images)

    monkeypatch.setattr(Reconstructor, "push", crashing_push)
    with pytest.raises(KeyboardInterrupt):
        run(video, tmp_path / "resumed", tiny_model)
    status = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert status["status"] == "interrupted" and 0 < status["checkpoint"]["frames"] < 30
    monkeypatch.setattr(Reconstructor, "push", original)
    with torch.no_grad():
        final = reconstruct(video, tmp_path / "resumed", tiny_model, settings(video), resume=True)
    assert final["status"] == "complete" and final["frames"] == 30
    assert_same_outputs(tmp_path / "plain", tmp_path / "resumed")


def test_ctrl_c_between_chunks_saves_the_state_at_once(tiny_model, video, tmp_path, monkeypatch):
    """With periodic saving off (a huge interval), Ctrl-C at a chunk boundary still saves, so nothing is lost;
    work after the last saved state is redone after a crash without one."""
    run(video, tmp_path / "plain", tiny_model)
    import loger3d.run.writer as writer

    original = writer.to_batch
    calls = {"n": 0}

    def interrupting(done, meta):  # Ctrl-C while the second chunk is being handed over
        calls["n"] += 1
        batch = original(done, meta)
        if calls["n"] == 2:
            writer.to_batch = original
            raise KeyboardInterrupt
        return batch

    monkeypatch.setattr(writer, "to_batch", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run(video, tmp_path / "resumed", tiny_model, checkpoint_every=1e9)
    saved = json.loads((tmp_path / "resumed" / "run.json").read_text())["checkpoint"]
    assert saved is None  # interrupted inside a hand-over: not at a boundary, nothing consistent to save
    with torch.no_grad():
        reconstruct(video, tmp_path / "resumed", tiny_model, settings(video), resume=True)
    assert_same_outputs(tmp_path / "plain", tmp_path / "resumed")

    calls["n"] = 0
    frames_seen = {"n": 0}
    import loger3d.sources.readers as sources

    original_frames = sources.FrameSource.frames

    def interrupted_frames(self, skip=0, prefetch=8):
        for frame in original_frames(self, skip, prefetch):
            frames_seen["n"] += 1
            if frames_seen["n"] == 15:
                raise KeyboardInterrupt  # while decoding: the stream is at a chunk boundary
            yield frame

    monkeypatch.setattr(sources.FrameSource, "frames", interrupted_frames)
    with pytest.raises(KeyboardInterrupt):
        run(video, tmp_path / "boundary", tiny_model, checkpoint_every=1e9)
    saved = json.loads((tmp_path / "boundary" / "run.json").read_text())["checkpoint"]
    assert saved is not None and saved["frames"] > 0
    monkeypatch.setattr(sources.FrameSource, "frames", original_frames)
    with torch.no_grad():
        reconstruct(video, tmp_path / "boundary", tiny_model, settings(video), resume=True)
    assert_same_outputs(tmp_path / "plain", tmp_path / "boundary")


def test_exports_parse_with_independent_tools(tiny_model, video, tmp_path):
    out = tmp_path / "out"
    run(video, out, tiny_model, align="se3", reset_every=0, conf_threshold=0.0, edge_rtol=0.0)  # random weights
    from evo.tools import file_interface

    tum = file_interface.read_tum_trajectory_file(str(out / "trajectory_tum.txt"))
    kitti = file_interface.read_kitti_poses_file(str(out / "trajectory_kitti.txt"))
    _, _, poses, _ = FrameStore(out).read_poses()
    np.testing.assert_allclose(np.stack(kitti.poses_se3), poses, atol=1e-9)
    # A quaternion cannot hold the fp32 rotation's last-bit departure from orthonormality.
    np.testing.assert_allclose(np.stack(tum.poses_se3), poses, atol=1e-5)
    plyfile = pytest.importorskip("plyfile")
    ply = plyfile.PlyData.read(str(out / "cloud.ply"))
    assert ply["vertex"].count > 0
    assert {"x", "y", "z", "red", "green", "blue"} <= {p.name for p in ply["vertex"].properties}
    doc = json.loads((out / "transforms.json").read_text())
    assert len(doc["frames"]) == 30 and all((out / f["file_path"]).exists() for f in doc["frames"])
    from loger3d.sinks.colmap import read_colmap_text

    model = read_colmap_text(out / "colmap")
    assert len(model.image_names) == 30
    np.testing.assert_allclose(model.poses, poses, atol=1e-5)  # quaternions again
    pycolmap = pytest.importorskip("pycolmap")
    rec = pycolmap.Reconstruction(str(out / "colmap"))
    assert rec.num_images() == 30 and rec.num_points3D() > 0
    written = export_run(out, ["glb", "ply"], conf_threshold=0.5)
    trimesh = pytest.importorskip("trimesh")
    assert isinstance(trimesh.load(str(out / "scene.glb")), trimesh.Scene)
    assert (out / "cloud.ply") in written


def test_output_folder_rules(tiny_model, video, tmp_path):
    out = tmp_path / "out"
    run(video, out, tiny_model, end=10)
    with pytest.raises(RunError, match="already holds this run"):
        run(video, out, tiny_model, end=10)
    with pytest.raises(RunError, match=r"holds another run \(end differ\); choose a new folder"):
        run(video, out, tiny_model, end=12)
    with pytest.raises(RunError, match="already complete"):
        reconstruct(video, out, tiny_model, settings(video, end=10), resume=True)
    with pytest.raises(RunError, match="other settings"):
        reconstruct(video, out, tiny_model, settings(video, end=11), resume=True)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):
        run(video, tmp_path / "busy", tiny_model)
    with pytest.raises(RunError, match="nothing to resume"):
        reconstruct(video, tmp_path / "fresh", tiny_model, settings(video), resume=True)
    with pytest.raises(RunError, match="no loger3d run"):
        export_run(tmp_path / "busy", ["ply"])
