"""The web viewer of a run (``loger3d view OUT``): cloud, cameras, trajectory and a frame scrubber in the browser.

The displayed cloud is built from the frame store, not from ``cloud.ply``: the PLY holds no
confidence, and the confidence slider must filter real per-point values. :func:`load_scene`
streams the store one chunk at a time and keeps a seeded random sample of each frame's pixels
(finite depth, not on a depth edge, any confidence), at most ``max_points`` in all, sorted by
confidence so that the points above a threshold are a prefix (the slider re-sends a slice, no
search). Only a bounded part of a long run goes to the browser: ``max_frustums`` evenly spaced
cameras, a trajectory of at most :data:`MAX_TRAJECTORY_POINTS` camera centres, and one frame's
image and depth, read from the store when the scrubber moves. Start-up reads the frame store once.

:func:`serve` needs viser (``pip install 'loger3d[viewer]'``) and binds to 127.0.0.1 unless told
otherwise; viser's share button (which uploads the scene to a public relay) is hidden.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from loger3d.errors import DamagedFileError, InputError
from loger3d.run.folder import read_run_record
from loger3d.run.settings import RunError
from loger3d.sinks.cloud import filter_mask
from loger3d.sinks.images import read_images
from loger3d.sinks.intrinsics import shared_intrinsics
from loger3d.sinks.store import FrameStore

if TYPE_CHECKING:
    import viser

__all__ = ["MAX_TRAJECTORY_POINTS", "Scene", "colorize_depth", "evenly_spaced", "is_loopback", "load_scene", "serve"]

MAX_TRAJECTORY_POINTS = 5000
"""Camera centres drawn as the trajectory polyline: enough for a smooth path, small for the browser."""

_DEFAULT_FOV = math.radians(60.0)
# viridis at 0, 1/8, ..., 1: a perceptually ordered map that stays readable in grey.
_VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129],
                     [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=np.float64)


@dataclass
class Scene:
    """What the viewer shows of a run; N frames, M displayed points, F frustums, T trajectory points.

    xyz            [M,3] float32  world points, sorted by confidence, highest first
    rgb            [M,3] uint8    their colours
    conf           [M]   float32  their confidence in [0, 1], descending
    index          [N]   int64    frame indices in the store (``FrameStore.read_frame`` takes these)
    timestamps     [N]   float64  seconds from the start of the input
    names          [N]   str
    poses          [N,4,4] float64 camera-to-world, OpenCV axes (x right, y down, z forward)
    intrinsics     [N,3,3] float32 per-frame pinhole K
    image_size     (width, height) of the frames in pixels
    frustum_rows   [F]   int64    rows of ``index``/``poses`` drawn as camera frustums, evenly spaced
    trajectory     [T,3] float32  camera centres along the run, evenly subsampled (first and last kept)
    uncorrected    [T,3] float32  the same centres before loop closure corrected them (empty when it did not)
    loops          [L,2,3] float32 the two camera centres of each loop loop closure accepted (empty: none)
    conf_threshold the run's confidence threshold: the slider's initial value
    median_depth   median camera-to-point depth of the displayed points: sets frustum and point sizes
    """

    run_dir: Path
    xyz: np.ndarray
    rgb: np.ndarray
    conf: np.ndarray
    index: np.ndarray
    timestamps: np.ndarray
    names: list[str]
    poses: np.ndarray
    intrinsics: np.ndarray
    image_size: tuple[int, int]
    frustum_rows: np.ndarray
    trajectory: np.ndarray
    conf_threshold: float
    median_depth: float
    uncorrected: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    loops: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 3), np.float32))

    def count_above(self, threshold: float) -> int:
        """Number of points with confidence > ``threshold`` (strict, as the fused cloud): they are the first ones."""
        return int(np.searchsorted(-self.conf, -threshold, side="left"))

    def points_above(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``[K,3]`` and colours ``[K,3]`` of the points with confidence > ``threshold`` (views, no copy)."""
        k = self.count_above(threshold)
        return self.xyz[:k], self.rgb[:k]

    def vertical_fov(self) -> float:
        """Vertical field of view in radians from the run's shared focal length (60° if no frame has a usable K)."""
        try:
            fy = float(shared_intrinsics(self.intrinsics)[1, 1])
        except ValueError:  # every frame's fit failed
            return _DEFAULT_FOV
        return 2.0 * math.atan(self.image_size[1] / (2.0 * fy)) if fy > 0 else _DEFAULT_FOV


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """At most ``k`` evenly spaced int64 positions in ``range(n)``, first and last included when ``k >= 2``."""
    if n <= k:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def frame_images(run_dir: Path, names, size: tuple[int, int], stored: np.ndarray | None = None
                 ) -> np.ndarray:
    """The frames ``[n, H, W, 3]`` uint8: as stored (runs of loger3d 0.1), from ``images/``, or grey if not kept."""
    if stored is not None:
        return stored
    try:
        return read_images(run_dir, names)
    except FileNotFoundError:
        return np.full((len(names), *size, 3), 128, np.uint8)


def load_scene(run_dir: str | os.PathLike, max_points: int = 2_000_000, max_frustums: int = 300,
               seed: int = 0) -> Scene:
    """Read a run folder into a :class:`Scene`, streaming the frame store one chunk at a time.

    Each frame contributes up to ``ceil(max_points / N)`` pixels drawn at random (``seed``) among
    those with finite positive depth off depth edges (the run's ``edge_rtol``); the union is cut to
    ``max_points`` at random. Raises ``RunError`` for a folder without a run or without frames
    (``DamagedFileError`` for a garbled run.json).
    """
    if max_points < 1 or max_frustums < 1:
        raise InputError(f"max_points {max_points} and max_frustums {max_frustums} must be at least 1")
    run_dir = Path(run_dir)
    settings = read_run_record(run_dir)["settings"]
    store = FrameStore(run_dir)
    if not store.chunks():
        raise RunError(f"the run in {run_dir} has no finished frames yet; wait for its first chunk, or resume it "
                       f"with loger3d reconstruct --resume")
    index, timestamps, poses, names = store.read_poses()
    intrinsics = store.read_intrinsics()
    per_frame = -(-max_points // len(index))
    edge_rtol = float(settings.get("edge_rtol", 0.03))
    rng = np.random.default_rng(seed)
    xyz, rgb, conf, depth, size = [], [], [], [], None
    for chunk in store.iter_batches():
        if "local_points" not in chunk:
            raise RunError(f"the run in {run_dir} kept no depth or point maps (--save), so there is no cloud to view")
        local = chunk["local_points"].astype(np.float32)  # [n,H,W,3]
        chunk_conf = chunk["conf"] if "conf" in chunk else np.ones(local.shape[:3], np.float32)  # [n,H,W]
        size = (local.shape[2], local.shape[1])
        images = frame_images(run_dir, chunk["name"], local.shape[1:3], chunk.get("image"))
        keep = filter_mask(local[..., 2], chunk_conf, -np.inf, edge_rtol)
        for j in range(len(local)):
            valid = np.flatnonzero(keep[j])
            pick = rng.choice(valid, size=min(per_frame, len(valid)), replace=False) if len(valid) else valid
            pts = local[j].reshape(-1, 3)[pick].astype(np.float64)
            pose = chunk["camera_poses"][j]
            xyz.append((pts @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32))
            rgb.append(images[j].reshape(-1, 3)[pick])
            conf.append(chunk_conf[j].reshape(-1)[pick])
            depth.append(pts[:, 2].astype(np.float32))
    xyz, rgb, conf, depth = (np.concatenate(a) for a in (xyz, rgb, conf, depth))
    if len(xyz) > max_points:
        cut = np.sort(rng.choice(len(xyz), size=max_points, replace=False))
        xyz, rgb, conf, depth = xyz[cut], rgb[cut], conf[cut], depth[cut]
    order = np.argsort(-conf, kind="stable")
    shown = evenly_spaced(len(index), MAX_TRAJECTORY_POINTS)
    uncorrected, loops = _loop_overlay(run_dir, store, poses, shown)
    return Scene(
        run_dir=run_dir, xyz=xyz[order], rgb=rgb[order], conf=conf[order], index=index, timestamps=timestamps,
        names=names, poses=poses, intrinsics=intrinsics, image_size=size,
        frustum_rows=evenly_spaced(len(index), max_frustums),
        trajectory=poses[shown, :3, 3].astype(np.float32),
        conf_threshold=float(settings.get("conf_threshold", 0.1)),
        median_depth=float(np.median(depth)) if len(depth) else 1.0, uncorrected=uncorrected, loops=loops)


def _loop_overlay(run_dir: Path, store: FrameStore, poses: np.ndarray, shown: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """What loop closure changed: the uncorrected centres of frames ``shown`` (``[T,3]``, empty when nothing
    was corrected) and the accepted loops' end centres ``[L,2,3]`` (empty without loops/loops.json)."""
    from loger3d.run.loops import LOOPS_FILE

    uncorrected = np.zeros((0, 3), np.float32)
    if store.corrections is not None:
        raw = FrameStore(run_dir, corrected=False).read_poses()[2]
        uncorrected = raw[shown, :3, 3].astype(np.float32)
    loops = np.zeros((0, 2, 3), np.float32)
    path = run_dir / LOOPS_FILE
    if path.is_file():
        try:
            entries = json.loads(path.read_text(encoding="utf-8")).get("loops", [])
            ends = [(e["a"], e["b"]) for e in entries if e.get("accepted")]
        except (ValueError, AttributeError, KeyError, TypeError):
            raise DamagedFileError(f"{path} is damaged; the run's other files are kept as they are") from None
        if ends:
            loops = np.stack([poses[[a, b], :3, 3] for a, b in ends]).astype(np.float32)
    return uncorrected, loops


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """Colour-mapped depth ``[H,W,3]`` uint8 from depth ``[H,W]``: viridis on inverse depth, near is yellow.

    The range is the 2nd to 98th percentile of the valid (finite, positive) pixels, so a few far
    points do not flatten the map; invalid pixels are black.
    """
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    out = np.zeros((*depth.shape, 3), np.uint8)
    if not valid.any():
        return out
    inv = 1.0 / depth[valid]
    lo, hi = np.percentile(inv, [2, 98])
    t = np.clip((inv - lo) / (hi - lo), 0, 1) if hi > lo else np.full_like(inv, 0.5)
    x = t * (len(_VIRIDIS) - 1)
    out[valid] = np.stack([np.interp(x, np.arange(len(_VIRIDIS)), _VIRIDIS[:, c]) for c in range(3)], -1).round()
    return out


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # another host name
        return False


class _Latest:
    """Calls ``fn()`` once per burst of requests, never concurrently: a slider dragged over
    10,000 frames must not queue 10,000 store reads. ``fn`` reads the newest slider value itself."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._pending = False
        self._busy = False

    def __call__(self, _event: object = None) -> None:
        with self._lock:
            self._pending = True
            if self._busy:
                return  # the running caller will pick it up
            self._busy = True
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        return
                    self._pending = False
                self._fn()
        finally:
            with self._lock:
                self._busy = False


def _import_viser():
    try:
        import viser
    except ImportError as e:
        raise InputError("the viewer needs viser: pip install 'loger3d[viewer]' (or pip install viser)") from e
    return viser


def _framing(scene: Scene) -> tuple[np.ndarray, float, np.ndarray]:
    """Centre, radius and up vector of the scene: the confident points' median, the larger of their
    80th-percentile distance and the farthest camera's; up is the cameras' mean -y axis (OpenCV y is down)."""
    pts = scene.points_above(scene.conf_threshold)[0].astype(np.float64)
    centre = np.median(pts, axis=0) if len(pts) else scene.trajectory.mean(axis=0)
    radius = max(float(np.percentile(np.linalg.norm(pts - centre, axis=1), 80)) if len(pts) else 0.0,
                 float(np.linalg.norm(scene.trajectory - centre, axis=1).max())) or 1.0
    up = -scene.poses[:, :3, 1].mean(axis=0)
    norm = np.linalg.norm(up)
    return centre, radius, up / norm if norm > 1e-6 else np.array([0.0, -1.0, 0.0])


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8080, *, max_points: int = 2_000_000,
          max_frustums: int = 300) -> viser.ViserServer:
    """Load a run (:func:`load_scene`) and serve it at ``http://host:port`` in a background thread.

    The port goes up by one until a free one is found (``server.get_port()`` tells which; 0 takes
    any). Stop with ``server.stop()``.
    """
    viser = _import_viser()
    scene = load_scene(run_dir, max_points=max_points, max_frustums=max_frustums)
    server = viser.ViserServer(host=host, port=port, verbose=False)
    try:
        _build(server, scene)
    except BaseException:
        server.stop()
        raise
    return server


def _build(server: viser.ViserServer, scene: Scene) -> None:
    """The scene nodes and GUI of ``scene`` on ``server``."""
    from viser.transforms import SO3

    store = FrameStore(scene.run_dir)
    centre, radius, up = _framing(scene)
    n = len(scene.index)
    width, height = scene.image_size
    fov, aspect = scene.vertical_fov(), width / height
    frustum_scale = 0.04 * scene.median_depth
    wxyz = [SO3.from_matrix(p[:3, :3]).wxyz for p in scene.poses[scene.frustum_rows]]

    server.gui.configure_theme(show_share_button=False, control_width="medium")
    server.scene.set_up_direction(up)
    side = scene.poses[0, :3, 3] - centre  # look from beyond the first camera, 45° above the horizon
    side -= (side @ up) * up
    side = side / np.linalg.norm(side) if np.linalg.norm(side) > 1e-6 else -scene.poses[0, :3, 2]
    server.initial_camera.position = centre + 2.0 * radius * (side + up) / math.sqrt(2)
    server.initial_camera.look_at = centre
    server.initial_camera.fov = math.radians(55)
    server.initial_camera.up = up

    size = float(f"{0.004 * scene.median_depth:.1g}")
    cloud = server.scene.add_point_cloud("/cloud", *scene.points_above(scene.conf_threshold), point_size=size,
                                         point_shape="rounded", point_shading="flat",
                                         precision="float32")  # float16 steps are 0.5 m at 1 km
    cameras = server.scene.add_frame("/cameras", show_axes=False)
    if len(scene.trajectory) > 1:
        segments = np.stack([scene.trajectory[:-1], scene.trajectory[1:]], axis=1)  # [T-1,2,3]
        server.scene.add_line_segments("/cameras/trajectory", segments, (230, 80, 40), thickness=2.0,
                                       thickness_units="screen")
    if len(scene.uncorrected) > 1:  # before loop closure, in grey
        segments = np.stack([scene.uncorrected[:-1], scene.uncorrected[1:]], axis=1)
        server.scene.add_line_segments("/cameras/uncorrected", segments, (150, 150, 150), thickness=1.5,
                                       thickness_units="screen")
    if len(scene.loops):  # accepted loops, in green
        server.scene.add_line_segments("/cameras/loops", scene.loops, (40, 180, 80), thickness=2.5,
                                       thickness_units="screen")
    frustums = []
    for row, q in zip(scene.frustum_rows, wxyz):
        frustums.append(server.scene.add_camera_frustum(
            f"/cameras/frame_{int(scene.index[row])}", fov, aspect, scale=frustum_scale, thickness=1.0,
            thickness_units="screen", color=(60, 100, 190), wxyz=q, position=scene.poses[row, :3, 3]))
    current = server.scene.add_camera_frustum("/current", fov, aspect, scale=1.3 * frustum_scale, thickness=3.0,
                                              thickness_units="screen", color=(255, 120, 0))

    gui = server.gui
    gui.add_markdown(f"**{scene.run_dir.name or scene.run_dir}**: {n} frames, {len(scene.xyz):,} points "
                     f"(subsampled), {len(scene.frustum_rows)} cameras shown")
    with gui.add_folder("Cloud"):
        conf_slider = gui.add_slider("Confidence", 0.0, 1.0, 0.01, float(np.clip(scene.conf_threshold, 0, 1)),
                                     hint="show points with confidence above this value")
        count = gui.add_markdown("")
        size_slider = gui.add_slider("Point size", size / 10, size * 10, size / 10, size)
    with gui.add_folder("Cameras"):
        show = gui.add_checkbox("Show cameras", True)
        frame_slider = gui.add_slider("Frame", 0, max(n - 1, 1), 1, 0, hint="scrub through the frames")
        follow = gui.add_checkbox("Follow camera", False, hint="look through the selected frame's camera")
        label = gui.add_markdown("")
        image = gui.add_image(np.zeros((height, width, 3), np.uint8), label="Image")
        depth = gui.add_image(np.zeros((height, width, 3), np.uint8), label="Depth")

    def update_cloud() -> None:
        xyz, rgb = scene.points_above(conf_slider.value)
        with server.atomic():
            cloud.points, cloud.colors = xyz, rgb
            count.content = f"{len(xyz):,} of {len(scene.xyz):,} points"

    def update_frame() -> None:
        row = min(int(frame_slider.value), n - 1)
        frame = store.read_frame(int(scene.index[row]))
        picture = frame_images(scene.run_dir, [str(frame["name"])], frame["depth"].shape, frame.get("image"))[0]
        pose = scene.poses[row]
        q = SO3.from_matrix(pose[:3, :3]).wxyz
        with server.atomic():
            image.image = picture
            depth.image = colorize_depth(frame["depth"])
            current.wxyz, current.position, current.image = q, pose[:3, 3], picture
            label.content = f"`{scene.names[row]}`: frame {int(scene.index[row])}, {scene.timestamps[row]:.2f} s"
        if follow.value:
            for client in server.get_clients().values():
                with client.atomic():
                    client.camera.position, client.camera.wxyz, client.camera.fov = pose[:3, 3], q, fov

    def set_size(_event: object) -> None:
        cloud.point_size = size_slider.value

    def set_visible(_event: object) -> None:
        cameras.visible = current.visible = show.value

    def jump_to(row: int) -> Callable[[object], None]:
        def jump(_event: object) -> None:
            frame_slider.value = row
        return jump

    conf_slider.on_update(_Latest(update_cloud))
    frame_follow = _Latest(update_frame)
    frame_slider.on_update(frame_follow)
    follow.on_update(frame_follow)
    size_slider.on_update(set_size)
    show.on_update(set_visible)
    for handle, row in zip(frustums, scene.frustum_rows):
        handle.on_click(jump_to(int(row)))
    update_cloud()
    update_frame()
