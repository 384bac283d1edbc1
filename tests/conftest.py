import gc
import os
import signal
import threading

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    # pytest -n: the workers share the cores, each with its share of threads (the commands tests start too).
    # Set before PyTorch starts its thread pool.
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

import pytest  # noqa: E402
import torch  # noqa: E402

import loger3d  # noqa: E402
from loger3d.seeded import fill_seeded_  # noqa: E402


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
    gc.collect()


def seeded_model(preset: str, seed: int = 0, newton_schulz: torch.dtype = torch.float32) -> loger3d.LoGeR:
    """A model of ``preset`` with the seeded weights of EQUIVALENCE.md, in eval mode.

    The TTT update's Newton–Schulz step runs in fp32 unless asked otherwise: the release's bf16
    step rounds differently on CPUs with and without native bf16 (and is about 50× slower on
    the latter), and tests must not depend on the CPU. Tests of the release's numerics pass
    ``newton_schulz=torch.bfloat16``.
    """
    model = fill_seeded_(loger3d.build_model(preset, device="meta"), seed).eval()
    return model.set_newton_schulz_dtype(newton_schulz)


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler in force (``KeyboardInterrupt``), as in a terminal: a shell that starts the
    tests in the background (``cmd &`` without job control) hands them SIGINT ignored, and Python then keeps it
    ignored. Handlers run in the main thread only, so a test run elsewhere is skipped."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread only")
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture(scope="session")
def tiny_model():
    return seeded_model("tiny", 0)


def random_images(n: int, h: int = 42, w: int = 56, seed: int = 0, batch: int | None = None) -> torch.Tensor:
    shape = (n, 3, h, w) if batch is None else (batch, n, 3, h, w)
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def write_video(path, n: int = 30, width: int = 160, height: int = 120, fps: int = 12, faststart: bool = False) -> str:
    """A small synthetic clip: a bright square moving over a colour ramp (distinct frames). ``faststart``
    puts the frame index first, so that a copy cut short still opens and declares every frame."""
    import av
    import numpy as np

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            img = np.full((height, width, 3), 40, np.uint8)
            img[..., 0] = (8 * i) % 256
            x = (5 * i) % (width - 30)
            img[20:60, x:x + 30] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def one_line_error(capsys, *words: str) -> str:
    """The one ``loger3d: error: ...`` line a command printed on stderr, holding every word of ``words``."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("loger3d: error: "), err
    for word in words:
        assert word in err[0], err[0]
    return err[0]
