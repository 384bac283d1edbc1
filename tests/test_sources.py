"""Frame sources and preprocessing: the official demo's sizing and selection rules, video decoding
with PyAV (order, timestamps, fps resampling, rotation), image modes, resuming, prefetching, and
the one-line errors. All data is written into tmp_path by the tests themselves."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from loger3d.sources import Frame, Prefetcher, SourceError, natural_key, open_source
from loger3d.sources.preprocess import demo_target_size, frames_to_tensor, parse_resolution, resize_frame, to_rgb8

SMALL = (56, 42)  # a fixed resolution that keeps resizing cheap where the automatic size is not under test


def _codec() -> str:
    return next(c for c in ("libx264", "mpeg4") if c in av.codecs_available)


def write_video(path: Path, n: int = 24, rate: int = 12, size: tuple[int, int] = (160, 120),
                rotation: int = 0, codec: str | None = None) -> Path:
    """``n`` frames; frame i is uniform gray ``10·i`` with a white 10×10 marker in the top-left corner."""
    w, h = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec or _codec(), rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        container.start_encoding()  # writes the header even when there are no frames
        for i in range(n):
            pixels = np.full((h, w, 3), 10 * i, np.uint8)
            pixels[:10, :10] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def gray_level(frame: Frame) -> int:
    """Which synthetic frame this is: the centre's gray level / 10."""
    h, w = frame.image.shape[:2]
    return round(float(frame.image[h // 4:3 * h // 4, w // 4:3 * w // 4].mean()) / 10)


def write_png(path: Path, value: int, size: tuple[int, int] = (28, 14)) -> Path:
    Image.new("RGB", size, (value, value, value)).save(path)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.fixture
def folder(tmp_path) -> Path:
    """frame1..frame10 with value 10·k (mixed extensions and case), plus files that must be ignored."""
    for k in (1, 2, 10):
        write_png(tmp_path / f"frame{k}.png", 10 * k)
    Image.new("RGB", (28, 14), (30, 30, 30)).save(tmp_path / "Frame3.JPG", quality=100)
    Image.new("RGB", (28, 14), (40, 40, 40)).save(tmp_path / "frame4.jpeg", quality=100)
    write_png(tmp_path / "depth_1.png", 200)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()
    return tmp_path


def check_error(excinfo: pytest.ExceptionInfo, *words: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


# ----------------------------------------------------------------------------- preprocess
@pytest.mark.parametrize(("size", "expected"), [
    ((640, 480), (574, 434)),    # the demo's documented example
    ((1241, 376), (924, 266)),   # KITTI
    ((1920, 1080), (672, 378)),
    ((3840, 2160), (672, 378)),  # same aspect, same size
    ((480, 640), (434, 574)),    # portrait
    ((512, 512), (504, 504)),
    ((14, 14), (504, 504)),      # small inputs are upscaled
    ((1000, 100), (1596, 154)),
    ((100, 1000), (154, 1596)),
])
def test_demo_target_size(size, expected):
    w, h = demo_target_size(*size)
    assert (w, h) == expected
    assert w % 14 == 0 and h % 14 == 0 and w * h <= 255000


def test_demo_target_size_max_pixels():
    # s·(640, 480) = (365.1, 273.9) → (26, 20) patches = 101920 px > limit; 26/20 < 4/3, so m shrinks
    assert demo_target_size(640, 480, max_pixels=100000) == (364, 266)
    with pytest.raises(ValueError, match="max_pixels"):
        demo_target_size(640, 480, max_pixels=100)


def test_parse_resolution():
    assert parse_resolution("504x280") == (504, 280)
    assert parse_resolution(" 504 X 280 ") == (504, 280)
    assert parse_resolution((518, 294)) == (518, 294)
    with pytest.raises(ValueError) as excinfo:
        parse_resolution("500x281")
    check_error(excinfo, "500x281", "14", "490x280", "504x294")
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_resolution("big")


def rgb(img: Image.Image) -> np.ndarray:
    out = to_rgb8(img)
    assert out.mode == "RGB"
    array = np.asarray(out)
    assert array.dtype == np.uint8 and array.shape == (img.height, img.width, 3)
    return array


def test_to_rgb8_modes():
    gray = np.array([[0, 7], [128, 255]], np.uint8)
    assert (rgb(Image.fromarray(gray, "L"))[..., 1] == gray).all()
    la = Image.fromarray(np.stack([gray, np.zeros_like(gray)], -1), "LA")
    assert (rgb(la)[..., 2] == gray).all()  # alpha dropped, colour kept
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    assert (rgb(rgba) == [10, 20, 30]).all()
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    assert (rgb(palette) == [200, 100, 50]).all()
    assert (rgb(Image.new("CMYK", (2, 2), (0, 0, 0, 0))) == 255).all()
    assert (rgb(Image.new("1", (2, 2), 1)) == 255).all()
    deep = np.array([[0, 257], [32896, 65535]], np.uint16)
    expected = np.array([[0, 1], [128, 255]], np.uint8)
    assert (rgb(Image.fromarray(deep))[..., 0] == expected).all()  # I;16
    big_endian = Image.frombytes("I;16B", (2, 2), deep.astype(">u2").tobytes())
    assert (rgb(big_endian)[..., 0] == expected).all()
    assert (rgb(Image.fromarray(deep.astype(np.int32), "I"))[..., 0] == expected).all()
    floats = np.array([[0.0, 0.5], [1.0, 2.0]], np.float32)
    assert (rgb(Image.fromarray(floats, "F"))[..., 0] == [[0, 128], [255, 255]]).all()


def test_image_files_in_other_modes(tmp_path):
    """Gray, RGBA, 16-bit and palette PNGs read through a source (no resize: the size is already 28x14)."""
    Image.new("L", (28, 14), 77).save(tmp_path / "a_gray.png")
    Image.new("RGBA", (28, 14), (1, 2, 3, 128)).save(tmp_path / "b_rgba.png")
    Image.fromarray(np.full((14, 28), 65535, np.uint16)).save(tmp_path / "c_deep.png")
    with Image.open(tmp_path / "c_deep.png") as deep:
        assert deep.mode.startswith("I")
    palette = Image.new("P", (28, 14), 0)
    palette.putpalette([9, 8, 7] + [0] * 765)
    palette.save(tmp_path / "d_palette.png")
    frames = list(open_source(tmp_path, resolution=(28, 14)))
    assert [f.image[0, 0].tolist() for f in frames] == [[77] * 3, [1, 2, 3], [255] * 3, [9, 8, 7]]
    assert all(f.image.dtype == np.uint8 and f.image.shape == (14, 28, 3) for f in frames)


def test_resize_frame_is_pil_lanczos():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    out = resize_frame(img, (56, 42))
    assert out.dtype == np.uint8 and out.shape == (42, 56, 3)
    assert (out == np.asarray(img.resize((56, 42), Image.Resampling.LANCZOS))).all()
    assert (resize_frame(img.convert("L"), (28, 14))[..., 0] == resize_frame(img.convert("L"), (28, 14))[..., 2]).all()


def test_frames_to_tensor():
    images = np.zeros((2, 14, 28, 3), np.uint8)
    images[1, :, :, 2] = 255
    tensor = frames_to_tensor(images)
    assert tensor.shape == (2, 3, 14, 28) and tensor.dtype == torch.float32
    assert tensor[1, 2].eq(1).all() and tensor[1, :2].eq(0).all() and tensor[0].eq(0).all()
    with pytest.raises(ValueError, match="uint8"):
        frames_to_tensor(images.astype(np.float32))


# ----------------------------------------------------------------------------- video
def test_video_decodes_all_frames_in_order(video):
    source = open_source(video)
    assert source.size == (574, 434) and source.num_frames == 24
    info = source.describe()
    assert info["kind"] == "video" and info["original_size"] == (160, 120) and info["native_fps"] == 12
    assert info["frames_exact"] is False
    frames = list(source)
    assert [f.index for f in frames] == list(range(24)) == [f.source_index for f in frames]
    assert [gray_level(f) for f in frames] == list(range(24))
    assert [f.timestamp for f in frames] == pytest.approx([i / 12 for i in range(24)])
    assert frames[5].name == "frame_000005"
    assert frames[0].image.shape == (434, 574, 3) and frames[0].image.dtype == np.uint8


def test_video_start_end_stride(video):
    source = open_source(video, start=3, end=20, stride=4, resolution=SMALL)
    frames = list(source)
    assert source.num_frames == 5
    assert [f.source_index for f in frames] == [3, 7, 11, 15, 19] == [gray_level(f) for f in frames]
    assert [f.index for f in frames] == list(range(5))


@pytest.mark.parametrize(("fps", "expected"), [
    (6, list(range(0, 24, 2))),     # half the rate: every second frame
    (24, list(range(24))),          # above the rate: every frame once, no duplicates
    (5, [0, 2, 5, 7, 10, 12, 14, 17, 19, 22]),  # nearest frame to k/5 s
    (12, list(range(24))),
])
def test_video_fps_resampling(video, fps, expected):
    source = open_source(video, fps=fps, resolution=SMALL)
    frames = list(source)
    assert [f.source_index for f in frames] == expected == [gray_level(f) for f in frames]
    assert [f.timestamp for f in frames] == pytest.approx([i / 12 for i in expected])
    assert source.num_frames == len(expected)


def test_video_fps_applies_before_start_end_stride(video):
    frames = list(open_source(video, fps=6, start=1, stride=2, resolution=SMALL))
    assert [f.source_index for f in frames] == [2, 6, 10, 14, 18, 22]


@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
                    reason="this PyAV cannot write rotation metadata")
def test_video_rotation_metadata_is_applied(tmp_path):
    source = open_source(write_video(tmp_path / "turned.mp4", n=2, rotation=90), resolution=(42, 56))
    assert source.describe()["original_size"] == (120, 160)
    image = next(iter(source)).image
    assert image.shape == (56, 42, 3)
    assert image[-3:, :3].mean() > 200 and image[:3, :3].mean() < 50  # the marker turned to the bottom left


def test_video_with_unknown_extension_is_tried(tmp_path, video):
    shutil.copy(video, tmp_path / "clip.data")
    assert open_source(tmp_path / "clip.data").kind == "video"


# ----------------------------------------------------------------------------- images
def test_natural_key():
    names = ["frame10.png", "Frame3.png", "frame2.png", "frame1.png", "frame01b.png"]
    assert sorted(names, key=natural_key) == ["frame1.png", "frame01b.png", "frame2.png", "Frame3.png", "frame10.png"]


def test_folder_natural_order_and_filters(folder):
    source = open_source(folder)
    assert source.kind == "folder" and source.num_frames == 5 and source.size == (714, 350)
    frames = list(source)
    assert [f.name for f in frames] == ["frame1", "frame2", "Frame3", "frame4", "frame10"]
    assert [f.source_index for f in frames] == list(range(5))
    assert [f.timestamp for f in frames] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [gray_level(f) for f in frames] == [1, 2, 3, 4, 10]
    assert source.describe()["frames_exact"] is True


def test_folder_start_end_stride_is_python_slicing(folder):
    frames = list(open_source(folder, start=1, end=-1, stride=2, resolution=SMALL))
    assert [f.name for f in frames] == ["frame2", "frame4"]
    assert [f.source_index for f in frames] == [1, 3] and [f.index for f in frames] == [0, 1]


def test_list_keeps_order_and_glob_sorts(folder):
    paths = [folder / "frame10.png", str(folder / "frame1.png"), folder / "depth_1.png"]
    assert [f.name for f in open_source(paths, resolution=SMALL)] == ["frame10", "frame1", "depth_1"]
    matches = open_source(str(folder / "frame*.png"), resolution=SMALL)
    assert matches.kind == "glob" and [f.name for f in matches] == ["frame1", "frame2", "frame10"]
    single = open_source(folder / "frame2.png", resolution=SMALL)
    assert single.kind == "list" and [f.name for f in single] == ["frame2"]


def test_mixed_sizes(tmp_path):
    write_png(tmp_path / "1.png", 10)
    write_png(tmp_path / "2.png", 20, size=(42, 28))
    write_png(tmp_path / "3.png", 30, size=(42, 28))
    with pytest.warns(UserWarning, match="2 of 3 images differ"):
        source = open_source(tmp_path)
    assert {f.image.shape for f in source} == {(*source.size[::-1], 3)}
    with pytest.raises(SourceError) as excinfo:
        open_source(tmp_path, mixed_sizes="error")
    check_error(excinfo, "2.png", "42x28", "28x14")


# ----------------------------------------------------------------------------- resuming
@pytest.mark.parametrize("kind", ["video", "folder"])
def test_skip_is_the_tail_and_iteration_restarts(kind, video, folder):
    source = open_source(video if kind == "video" else folder, stride=2, resolution=SMALL)
    full = list(source)
    again = list(source)
    assert [f.source_index for f in again] == [f.source_index for f in full]
    assert all((a.image == b.image).all() for a, b in zip(full, again))
    for skip in (0, 1, len(full) - 1, len(full), len(full) + 3):
        tail = list(source.frames(skip=skip, prefetch=0 if skip % 2 else 4))
        assert [(f.index, f.source_index, f.name, f.timestamp) for f in tail] == \
            [(f.index, f.source_index, f.name, f.timestamp) for f in full[skip:]]
        assert all((a.image == b.image).all() for a, b in zip(tail, full[skip:]))


# ----------------------------------------------------------------------------- prefetching
def test_prefetch_raises_at_the_point_of_failure():
    def items():
        yield from range(3)
        raise RuntimeError("boom")

    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        for item in Prefetcher(items(), depth=2):
            seen.append(item)
    assert seen == [0, 1, 2]


def test_prefetch_stops_when_the_consumer_leaves():
    closed = threading.Event()

    def endless():
        try:
            yield from iter(int, 1)
        finally:
            closed.set()

    with Prefetcher(endless(), depth=2) as items:
        assert next(items) == 0
    assert closed.is_set()  # close() waited for the thread, which closed the generator
    assert next(items, None) is None

    closed.clear()
    for _ in Prefetcher(endless(), depth=2):
        break  # the prefetcher is dropped without close(): garbage collection stops the thread
    gc.collect()
    assert closed.wait(5)


def test_prefetch_does_not_hold_the_interpreter_at_exit():
    code = "from loger3d.sources import Prefetcher\nitems = Prefetcher(iter(int, 1), depth=2)\nprint(next(items))"
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr


def test_corrupt_image_fails_mid_stream(folder):
    data = (folder / "frame4.jpeg").read_bytes()
    (folder / "frame4.jpeg").write_bytes(data[: len(data) // 3])  # the header still reads, the pixels do not
    seen = []
    with pytest.raises(SourceError) as excinfo:
        for frame in open_source(folder, resolution=SMALL):
            seen.append(frame.name)
    assert seen == ["frame1", "frame2", "Frame3"]
    check_error(excinfo, "frame4.jpeg")


# ----------------------------------------------------------------------------- errors
def test_input_errors(tmp_path, video, folder):
    cases = tmp_path / "cases"  # apart from the files of the folder fixture
    cases.mkdir()
    (cases / "empty").mkdir()
    (cases / "fake.mp4").write_text("not a video")
    (cases / "bad.png").write_text("not an image")
    Image.new("RGB", (10, 20)).save(cases / "tiny.png")
    silent = write_video(cases / "silent.mp4", n=0, codec="mpeg4")  # mp4 keeps no track without packets
    nothing = write_video(cases / "nothing.avi", n=0, codec="mpeg4")
    table = [
        (dict(inputs=cases / "missing.mp4"), ["no such file or folder", "missing.mp4"]),
        (dict(inputs=[folder / "frame1.png", cases / "gone.png"]), ["no such file or folder", "gone.png"]),
        (dict(inputs=str(cases / "nope*.png")), ["no .png/.jpg/.jpeg images match", "nope*.png"]),
        (dict(inputs=cases / "empty"), ["no .png/.jpg/.jpeg images in", "empty"]),
        (dict(inputs=[]), ["empty"]),
        (dict(inputs=cases / "fake.mp4"), ["cannot read video", "fake.mp4", "is it a video file?"]),
        (dict(inputs=silent), ["cannot read video", "no video stream"]),
        (dict(inputs=nothing), ["no frames selected", "nothing.avi", "0 frames"]),
        (dict(inputs=video, start=30), ["no frames selected", "clip.mp4", "24 frames", "start=30"]),
        (dict(inputs=video, start=-3), ["start and end must be >= 0"]),
        (dict(inputs=folder, start=2, end=2), ["no frames selected", "5 frames", "end=2"]),
        (dict(inputs=[folder / "frame1.png"], start=1), ["no frames selected from the 1 listed images"]),
        (dict(inputs=[cases / "bad.png"]), ["cannot read image", "bad.png"]),
        (dict(inputs=[cases / "tiny.png"]), ["tiny.png", "10x20", "smaller than one 14-pixel patch"]),
        (dict(inputs=video, resolution=(500, 280)), ["500x280", "multiples of 14", "490x280 or 504x280"]),
        (dict(inputs=video, resolution="500"), ["WIDTHxHEIGHT"]),
        (dict(inputs=folder, stride=0), ["stride must be >= 1"]),
        (dict(inputs=video, fps=0), ["fps must be > 0"]),
        (dict(inputs=video, fps=-2.5), ["fps must be > 0"]),
        (dict(inputs=folder, fps=10), ["--fps applies to videos", "--stride"]),
        (dict(inputs=folder, mixed_sizes="crop"), ["mixed_sizes", "crop"]),
        (dict(inputs=folder, max_pixels=100), ["max_pixels"]),
    ]
    for kwargs, words in table:
        with pytest.raises(SourceError) as excinfo:
            open_source(**kwargs)
        check_error(excinfo, *words)
    with pytest.raises(SourceError, match="skip must be >= 0"):
        open_source(folder).frames(skip=-1)


def test_selection_past_the_end_of_a_video_without_a_frame_count(tmp_path):
    """Containers that do not report a count (mkv) only find out while decoding: the error comes from iteration."""
    clip = write_video(tmp_path / "clip.mkv")
    with av.open(str(clip)) as container:
        assert container.streams.video[0].frames == 0
    source = open_source(clip, start=100)
    assert source.num_frames == 0  # an estimate from the duration
    with pytest.raises(SourceError) as excinfo:
        list(source)
    check_error(excinfo, "no frames selected", "24 frames", "start=100")


def test_no_warnings_for_a_clean_folder(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(open_source(folder, resolution=SMALL))) == 5
