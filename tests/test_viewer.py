"""The web viewer: scene loading and subsampling, errors, the CLI, and the page in headless Chromium.

The browser test needs Debian's chromium (/usr/bin/chromium) and Playwright's Python package
(no browser download: Playwright drives the system Chromium); without them it is skipped.
``PYTHONPATH=src python3 -m tests.test_viewer docs/viewer.png`` rewrites the documentation's screenshot.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loger3d.cli import main
from loger3d.errors import DamagedFileError
from loger3d.sinks.base import FrameBatch
from loger3d.sinks.images import ImageWriter
from loger3d.sinks.store import FrameStore
from loger3d.viewer import MAX_TRAJECTORY_POINTS, colorize_depth, evenly_spaced, is_loopback, load_scene

from .conftest import write_video

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# The synthetic scene (OpenCV world: y down): a checkered floor at y = 1, a sphere, a box, a far dome.
FLOOR_Y = 1.0
FLOOR_COLOURS = ([225, 215, 190], [120, 95, 70])
SPHERE = (np.array([0.0, 0.45, 0.0]), 0.55)
BOX = (np.array([0.8, 0.3, -0.9]), np.array([1.5, 1.0, -0.3]))
DOME = 12.0
DOME_CONF = 0.05  # below the default threshold 0.1: hidden until the slider goes down


def _ray_scene(origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit along rays ``origin + t·dirs`` (dirs ``[P,3]``; the dome catches every ray from inside it):
    t ``[P]``, colour ``[P,3]`` uint8, conf ``[P]``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(dirs[:, 1] > 0, (FLOOR_Y - origin[1]) / dirs[:, 1], np.inf)
        oc = origin - SPHERE[0]
        a, b, c = (dirs * dirs).sum(1), 2 * dirs @ oc, oc @ oc - SPHERE[1] ** 2
        disc = b * b - 4 * a * c
        t_sphere = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        t_sphere = np.where(t_sphere > 0, t_sphere, np.inf)
        t1, t2 = (BOX[0] - origin) / dirs, (BOX[1] - origin) / dirs
        near, far = np.minimum(t1, t2).max(1), np.maximum(t1, t2).min(1)
        t_box = np.where((near <= far) & (near > 0), near, np.inf)
        c_dome = origin @ origin - DOME**2
        t_dome = (-(dirs @ origin) + np.sqrt((dirs @ origin) ** 2 - a * c_dome)) / a
    hits = np.stack([t_floor, t_sphere, t_box, t_dome], 1)
    which, t = hits.argmin(1), hits.min(1)
    p = origin + t[:, None] * dirs
    rgb = np.zeros((len(dirs), 3))
    checker = (np.floor(p[:, 0] / 0.5) + np.floor(p[:, 2] / 0.5)) % 2
    rgb[which == 0] = np.where(checker[which == 0, None] > 0, *FLOOR_COLOURS)
    normal = (p - SPHERE[0]) / SPHERE[1]
    rgb[which == 1] = 127.5 + 127.5 * normal[which == 1] * [1, -1, 1]
    rgb[which == 2] = [200, 60, 60]
    rgb[which == 3] = [150, 190, 235]
    conf = np.where(which == 3, DOME_CONF, np.exp(-t / 12.0))
    return t, rgb.round().astype(np.uint8), conf


def write_synthetic_run(out: Path, n: int = 36, width: int = 128, height: int = 96, chunk: int = 8) -> Path:
    """A run folder whose store holds ray-cast frames of the synthetic scene from a circle of cameras."""
    fy = fx = 0.5 * width / math.tan(math.radians(30))
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    rays = np.stack([(cols - (width - 1) / 2) / fx, (rows - (height - 1) / 2) / fy, np.ones((height, width))], -1)
    poses, images, local, conf = [], [], [], []
    for i in range(n):
        angle = 2 * math.pi * i / n
        centre = np.array([3.2 * math.cos(angle), -0.9, 3.2 * math.sin(angle)])
        forward = np.array([0.0, 0.5, 0.0]) - centre
        forward /= np.linalg.norm(forward)
        right = np.cross([0.0, 1.0, 0.0], forward)  # y down: right = down × forward
        right /= np.linalg.norm(right)
        rot = np.stack([right, np.cross(forward, right), forward], 1)
        t, rgb, c = _ray_scene(centre, rays.reshape(-1, 3) @ rot.T)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rot, centre
        poses.append(pose)
        images.append(rgb.reshape(height, width, 3))
        local.append((rays * t.reshape(height, width, 1)).astype(np.float32))
        conf.append(c.reshape(height, width).astype(np.float32))
    store = FrameStore(out, keep=("depth", "conf", "points"), precision="float32")
    jpegs = ImageWriter(out)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        batch = FrameBatch(
            index=np.arange(s, e), source_index=np.arange(s, e), timestamp=np.arange(s, e) / 10.0,
            name=[f"frame_{i:06d}" for i in range(s, e)], image=np.stack(images[s:e]),
            local_points=np.stack(local[s:e]), conf=np.stack(conf[s:e]), camera_poses=np.stack(poses[s:e]))
        store.append(batch)
        jpegs.write(batch)
    jpegs.finish()
    (out / "run.json").write_text(json.dumps({"settings": {"conf_threshold": 0.1, "edge_rtol": 0.03},
                                              "status": "complete", "frames": n}))
    return out


def _surface_distance(p: np.ndarray) -> np.ndarray:
    """Distance ``[P]`` from points ``[P,3]`` to the nearest surface of the synthetic scene."""
    floor = np.abs(p[:, 1] - FLOOR_Y)
    sphere = np.abs(np.linalg.norm(p - SPHERE[0], axis=1) - SPHERE[1])
    inside = np.minimum(p - BOX[0], BOX[1] - p)  # [P,3], all >= 0 inside
    outside = np.linalg.norm(np.maximum(-inside, 0), axis=1)
    box = np.where(outside > 0, outside, np.abs(inside.min(1)))
    dome = np.abs(np.linalg.norm(p, axis=1) - DOME)
    return np.min(np.stack([floor, sphere, box, dome]), axis=0)


@pytest.fixture(scope="module")
def noise_run(tmp_path_factory) -> Path:
    """A real run folder of 12 frames (seeded random weights: the geometry is noise, every file exists)."""
    root = tmp_path_factory.mktemp("viewer_run")
    video = write_video(root / "clip.mp4", n=12, width=160, height=120)
    out = root / "out"
    assert main(["reconstruct", video, "-o", str(out), "--quiet", "--model", "seeded:tiny", "--resolution", "112x84",
                 "--window", "6", "--overlap", "2", "--conf-threshold", "0", "--edge-rtol", "0"]) == 0
    return out


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("viewer_synthetic"))


def test_load_scene_counts(noise_run):
    scene = load_scene(noise_run)
    n, m = 12, len(scene.xyz)
    assert scene.index.tolist() == list(range(n)) and len(scene.names) == n
    assert scene.poses.shape == (n, 4, 4) and scene.intrinsics.shape == (n, 3, 3)
    assert scene.image_size == (112, 84)
    assert 0 < m <= n * 112 * 84 and scene.rgb.shape == (m, 3) and scene.rgb.dtype == np.uint8
    assert scene.xyz.shape == (m, 3) and scene.xyz.dtype == np.float32 and np.isfinite(scene.xyz).all()
    assert np.all(np.diff(scene.conf) <= 0) and 0 <= scene.conf.min() and scene.conf.max() <= 1
    assert scene.frustum_rows.tolist() == list(range(n))
    np.testing.assert_allclose(scene.trajectory, scene.poses[:, :3, 3], rtol=1e-6)
    assert scene.conf_threshold == 0.0 and scene.median_depth > 0
    assert 0 < scene.vertical_fov() < math.pi


def test_load_scene_subsamples(noise_run):
    scene = load_scene(noise_run, max_points=500, max_frustums=4)
    assert len(scene.xyz) == 500  # 12 frames × ceil(500 / 12) candidates, cut to 500
    assert scene.frustum_rows.tolist() == [0, 4, 7, 11]
    again = load_scene(noise_run, max_points=500, max_frustums=4)
    np.testing.assert_array_equal(scene.xyz, again.xyz)  # seeded
    assert not np.array_equal(scene.xyz, load_scene(noise_run, max_points=500, seed=1).xyz)


def test_confidence_filter(noise_run):
    scene = load_scene(noise_run)
    for threshold in (-1.0, 0.0, float(np.median(scene.conf)), 0.5, 1.0):
        xyz, rgb = scene.points_above(threshold)
        keep = scene.conf > threshold
        assert scene.count_above(threshold) == keep.sum() == len(xyz) == len(rgb)
        np.testing.assert_array_equal(xyz, scene.xyz[keep])
        np.testing.assert_array_equal(rgb, scene.rgb[keep])
    assert len(scene.points_above(1.0)[0]) == 0


def test_synthetic_scene_geometry(synthetic_run):
    """World points land on the ray-cast surfaces: poses and local points are combined the right way round."""
    scene = load_scene(synthetic_run)
    assert len(scene.xyz) > 100_000 and scene.image_size == (128, 96)
    assert np.percentile(_surface_distance(scene.xyz.astype(np.float64)), 99.9) < 1e-3
    assert np.isclose(scene.vertical_fov(), 2 * math.atan(48 / (64 / math.tan(math.radians(30)))), rtol=1e-3)
    assert (scene.conf == np.float32(DOME_CONF)).any()
    assert np.linalg.norm(scene.points_above(0.1)[0], axis=1).max() < DOME - 1  # the sky is below 0.1


def test_long_run_stays_bounded(tmp_path):
    """10,000 frames: the browser gets max_points points, max_frustums cameras and a bounded trajectory."""
    n, chunk, h, w = 10_000, 1000, 6, 8
    store = FrameStore(tmp_path)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    local = np.stack([(cols - 3.5) / 8, (rows - 2.5) / 8, np.ones((h, w))], -1).astype(np.float32) * 2.0
    for s in range(0, n, chunk):
        poses = np.tile(np.eye(4), (chunk, 1, 1))
        poses[:, 0, 3] = np.arange(s, s + chunk) * 0.01
        store.append(FrameBatch(
            index=np.arange(s, s + chunk), source_index=np.arange(s, s + chunk), timestamp=np.arange(s, s + chunk) / 30,
            name=[f"f{i}" for i in range(s, s + chunk)], image=np.zeros((chunk, h, w, 3), np.uint8),
            local_points=np.broadcast_to(local, (chunk, h, w, 3)), conf=np.full((chunk, h, w), 0.5, np.float32),
            camera_poses=poses))
    (tmp_path / "run.json").write_text(json.dumps({"settings": {"conf_threshold": 0.1, "edge_rtol": 0.0}}))
    t0 = time.perf_counter()
    scene = load_scene(tmp_path, max_points=20_000, max_frustums=300)
    assert time.perf_counter() - t0 < 10
    assert len(scene.index) == n and len(scene.xyz) == 20_000
    assert len(scene.frustum_rows) == 300 and scene.frustum_rows[0] == 0 and scene.frustum_rows[-1] == n - 1
    assert len(scene.trajectory) == MAX_TRAJECTORY_POINTS
    np.testing.assert_allclose(scene.trajectory[[0, -1], 0], [0.0, 99.99], atol=1e-4)


def test_evenly_spaced():
    assert evenly_spaced(5, 300).tolist() == [0, 1, 2, 3, 4]
    rows = evenly_spaced(10_000, 300)
    assert len(rows) == 300 and rows[0] == 0 and rows[-1] == 9999 and np.all(np.diff(rows) >= 33)
    assert evenly_spaced(0, 3).tolist() == []


def test_colorize_depth():
    depth = np.array([[1.0, 2.0], [np.nan, 0.0]], np.float32)
    out = colorize_depth(depth)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[1].tolist() == [[0, 0, 0], [0, 0, 0]]  # invalid pixels are black
    assert out[0, 0].tolist() == [253, 231, 37] and out[0, 1].tolist() == [68, 1, 84]  # near yellow, far purple
    assert not colorize_depth(np.zeros((3, 3))).any()


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")


def test_errors(tmp_path, noise_run):
    with pytest.raises(ValueError, match=r"holds no loger3d run \(run.json missing\); give a folder written by"):
        load_scene(tmp_path)
    with pytest.raises(ValueError, match="holds no loger3d run"):
        load_scene(tmp_path / "missing")
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(DamagedFileError, match=r"run.json is damaged \(Expecting"):
        load_scene(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"settings": {}, "status": "running"}))
    with pytest.raises(ValueError, match="has no finished frames yet"):
        load_scene(tmp_path)
    with pytest.raises(ValueError, match="must be at least 1"):
        load_scene(noise_run, max_points=0)


def test_cli_help(capsys):
    assert main(["view", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--max-frustums" in out and "loger3d view walk/" in out and "127.0.0.1" in out


def test_cli_error(tmp_path, capsys):
    pytest.importorskip("viser", reason="needs viser: pip install viser")  # without it, that is the error
    assert main(["view", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loger3d: error: ") and err.count("\n") == 1 and "run.json missing" in err



@contextlib.contextmanager
def chromium_page(width: int = 1000, height: int = 700):
    """A Playwright page in a fresh headless Chromium with its own profile (skips when either is missing)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright: pip install playwright")
    with tempfile.TemporaryDirectory() as profile, sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height})
        try:
            yield context.new_page()
        finally:
            context.close()


def set_slider(page, label: str, value: float) -> None:
    """Type ``value`` into the number box of the viser slider labelled ``label``, as a user would (arrow keys
    would also turn the 3D view)."""
    target = page.locator("label", has_text=label).first.get_attribute("for")
    box = page.locator(f'[id="{target}"]').locator("xpath=..").locator("input.mantine-NumberInput-input")
    box.fill(str(value))
    box.press("Enter")


def open_viewer(page, url: str, scene) -> None:
    """Load the page and wait until the server's first updates have arrived and the scene had time to render."""
    page.goto(url)
    page.get_by_text(f"{scene.count_above(scene.conf_threshold):,} of {len(scene.xyz):,} points").wait_for()
    page.get_by_text(f"{scene.names[0]}").wait_for()
    page.wait_for_timeout(1500)


def canvas_pixels(page) -> np.ndarray:
    """The 3D view's pixels ``[H,W,3]`` uint8 (the page fills the window), left of the control panel."""
    panel = page.get_by_text("Connected").first.bounding_box()
    size = page.viewport_size
    clip = {"x": 0, "y": 0, "width": panel["x"] - 10, "height": size["height"]}
    return np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB"))


def floor_fraction(pixels: np.ndarray) -> float:
    """Fraction of pixels ``[H,W,3]`` in one of the floor's two checker colours."""
    close = [np.abs(pixels.astype(int) - colour).max(axis=2) <= 12 for colour in FLOOR_COLOURS]
    return float(np.logical_or(*close).mean())


def test_browser_renders_scene(synthetic_run):
    """The page in headless Chromium: GUI present, the cloud drawn, the sliders round-trip through the server."""
    pytest.importorskip("viser", reason="needs viser: pip install viser")
    from loger3d.viewer import serve

    scene = load_scene(synthetic_run)
    server = serve(synthetic_run, port=0)
    try:
        with chromium_page() as page:
            open_viewer(page, f"http://127.0.0.1:{server.get_port()}", scene)
            text = page.inner_text("body")
            for label in ("Confidence", "Point size", "Show cameras", "Frame", "Follow camera", "Image", "Depth"):
                assert label in text
            before = canvas_pixels(page)
            assert len(np.unique(before.reshape(-1, 3), axis=0)) > 200  # not a blank canvas
            assert floor_fraction(before) > 0.01  # the checkered floor is drawn in its colours
            assert page.evaluate("() => [...document.querySelectorAll('canvas')].some(c => c.width > 0 && "
                                 "(c.getContext('webgl2') || c.getContext('webgl')))")  # drawn by WebGL

            set_slider(page, "Confidence", 1)  # no point passes
            page.get_by_text(f"0 of {len(scene.xyz):,} points").wait_for()
            page.wait_for_timeout(1000)
            after = canvas_pixels(page)
            assert (np.abs(after.astype(int) - before).max(axis=2) > 40).mean() > 0.03
            assert floor_fraction(after) < floor_fraction(before) / 3  # only the frustum's image shows floor

            set_slider(page, "Frame", len(scene.names) - 1)  # scrub to the last frame: read from the store
            page.get_by_text(f"{scene.names[-1]}").wait_for()
    finally:
        server.stop()


def write_docs_screenshot(path: Path) -> None:
    """The documentation's screenshot: the synthetic run at frame 22, in a 1280×800 window."""
    from loger3d.viewer import serve

    with tempfile.TemporaryDirectory() as tmp:
        run = write_synthetic_run(Path(tmp) / "synthetic")
        scene = load_scene(run)
        server = serve(run, port=0)
        try:
            with chromium_page(1280, 800) as page:
                open_viewer(page, f"http://127.0.0.1:{server.get_port()}", scene)
                page.locator(".mantine-Notification-closeButton").click()  # "software WebGL" notice
                set_slider(page, "Frame", 22)
                page.get_by_text(f"{scene.names[22]}").wait_for()
                page.wait_for_timeout(1500)
                png = page.screenshot()
        finally:
            server.stop()
    Image.open(io.BytesIO(png)).convert("RGB").save(path, optimize=True)


if __name__ == "__main__":
    write_docs_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/viewer.png"))
