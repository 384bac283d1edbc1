"""loger3d.weights without a network: uncached aliases fail fast in one line; devices are checked first.

Nothing here touches the network: the Hub's endpoint is an unroutable local port or the probe and
the download are replaced; every cache is an empty temporary folder.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import huggingface_hub
import pytest
import requests
import torch
from huggingface_hub import constants as hf_constants

from loger3d import weights
from loger3d.cli import main
from loger3d.demo import SAMPLE_VIDEO
from loger3d.weights import WeightsError, model_from_spec, resolve_device

PROXY_VARS = [f(name) for name in ("http_proxy", "https_proxy", "all_proxy") for f in (str.lower, str.upper)]
REFUSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and text
    return text


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """An empty Hugging Face cache, online mode, no proxy; a download or probe fails the test unless allowed."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT", *PROXY_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("no download expected"))
    return cache


def no_probe(monkeypatch):
    monkeypatch.setattr(weights.hub, "_probe_hub", lambda *a, **k: pytest.fail("no probe expected"))


def assert_names_alias_and_fix(text: str, alias: str, cache) -> None:
    repo, filename, _ = weights.ALIASES[alias]
    assert f"weights '{alias}' ({repo}/{filename})" in text
    assert f"not in the Hugging Face cache ({cache}, from HF_HUB_CACHE)" in text
    assert f"/{repo}/resolve/main/{filename}" in text  # where to get the file elsewhere
    assert "run once with network" in text and "--model" in text and "loger3d convert" in text


# ----------------------------------------------------------------------------- uncached aliases
@pytest.mark.parametrize("alias", list(weights.ALIASES))
def test_uncached_alias_offline_fails_at_once(hf_env, monkeypatch, alias):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    no_probe(monkeypatch)
    start = time.monotonic()
    with pytest.raises(WeightsError) as e:
        weights.resolve_source(alias)
    assert time.monotonic() - start < 5
    text = one_line(e)
    assert_names_alias_and_fix(text, alias, hf_env)
    assert "(offline: HF_HUB_OFFLINE=1)" in text


def test_uncached_alias_hub_unreachable_fails_fast(hf_env, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", REFUSED)  # read at call time, not at huggingface_hub's import
    start = time.monotonic()
    with pytest.raises(WeightsError) as e:
        weights.resolve_source("loger")
    assert time.monotonic() - start < 10
    text = one_line(e)
    assert_names_alias_and_fix(text, "loger", hf_env)
    assert "the Hub at http://127.0.0.1:9 is not reachable: cannot connect to 127.0.0.1:9" in text


def test_failed_probe_skips_the_download(hf_env, monkeypatch):
    seen = []

    def probe(endpoint, timeout=3.0):
        seen.append((endpoint, timeout))
        return "cannot resolve huggingface.co (Name or service not known)"

    monkeypatch.setattr(weights.hub, "_probe_hub", probe)
    with pytest.raises(WeightsError) as e:
        weights.resolve_source("pi3")
    text = one_line(e)
    assert_names_alias_and_fix(text, "pi3", hf_env)
    assert "not reachable: cannot resolve huggingface.co" in text
    assert seen == [("https://huggingface.co", 3.0)] and 0 < seen[0][1] <= 5


def test_cli_offline_alias_is_one_line_exit_2(hf_env, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_ENDPOINT", REFUSED)
    start = time.monotonic()
    status = main(["reconstruct", str(SAMPLE_VIDEO), "-o", str(tmp_path / "out"), "--model", "loger",
                   "--device", "cpu", "--quiet"])
    assert time.monotonic() - start < 10
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("loger3d: error: weights 'loger'"), err
    assert "not reachable" in err[0] and "--model" in err[0]


def test_cached_alias_uses_no_network(hf_env, monkeypatch, tmp_path):
    no_probe(monkeypatch)  # online mode, yet neither the probe nor a download (which would check for updates)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = hf_env / "models--yyfz233--Pi3"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    target = repo_dir / "snapshots" / commit / "model.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"weights")
    path, preset = weights.resolve_source("pi3")
    assert os.path.samefile(path, target) and preset == "pi3"


# ----------------------------------------------------------------------------- download failures
@pytest.mark.parametrize("error", [
    requests.ConnectionError("HTTPSConnectionPool(host='huggingface.co'): Max retries exceeded\nwith url"),
    OSError("[Errno 28] No space left on device"),
    RuntimeError(""),  # e.g. an httpx error, which is no OSError, without a message
], ids=["requests", "oserror", "other"])
def test_download_errors_become_one_line(hf_env, monkeypatch, error):
    monkeypatch.setattr(weights.hub, "_probe_hub", lambda *a, **k: None)

    def fail(*args, **kwargs):
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)
    with pytest.raises(WeightsError) as e:
        weights.resolve_source("loger_star")
    text = one_line(e)
    assert text.startswith("weights 'loger_star' (Junyi42/LoGeR/LoGeR_star/latest.pt) could not be downloaded: ")
    assert (str(error).split()[0] if str(error) else type(error).__name__) in text
    assert "local .pt/.safetensors path" in text


def test_download_is_quiet_on_failure(hf_env, monkeypatch, capsys, caplog):
    from huggingface_hub.utils import LocalEntryNotFoundError

    monkeypatch.setattr(weights.hub, "_probe_hub", lambda *a, **k: None)

    def fail(*args, **kwargs):
        for attempt in range(1, 6):
            logging.getLogger("huggingface_hub.utils._http").warning(f"Retrying in 1s [Retry {attempt}/5].")
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as cause:
            raise LocalEntryNotFoundError("An error happened while trying to locate the file\non the Hub.") from cause

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)
    level = logging.getLogger("huggingface_hub").level
    with caplog.at_level(logging.WARNING), pytest.raises(WeightsError) as e:
        weights.resolve_source("loger")
    text = one_line(e)
    assert "(no connection to the Hugging Face Hub at https://huggingface.co: [Errno 111] Connection refused)" in text
    assert_names_alias_and_fix(text, "loger", hf_env)
    assert "Retrying" not in caplog.text and "Retrying" not in capsys.readouterr().err
    assert logging.getLogger("huggingface_hub").level == level  # restored


def test_offline_mode_error_from_the_hub(hf_env, monkeypatch):
    from huggingface_hub.errors import OfflineModeIsEnabled

    monkeypatch.setattr(weights.hub, "_probe_hub", lambda *a, **k: None)

    def fail(*args, **kwargs):
        raise OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode is enabled.")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)
    with pytest.raises(WeightsError, match=r"not in the Hugging Face cache .*\(offline: HF_HUB_OFFLINE\)") as e:
        weights.resolve_source("loger")
    one_line(e)


def test_proxy_skips_the_probe(hf_env, monkeypatch):
    no_probe(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    calls = []

    def fake(repo_id, filename, **kwargs):
        calls.append(kwargs["endpoint"])
        raise requests.ConnectionError("Unable to connect to proxy")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    with pytest.raises(WeightsError, match="could not be downloaded: Unable to connect to proxy"):
        weights.resolve_source("loger")
    assert calls == ["https://huggingface.co"]


# ----------------------------------------------------------------------------- the probe
def test_probe_verdicts():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert weights.hub._probe_hub(f"http://127.0.0.1:{server.getsockname()[1]}") is None
    assert weights.hub._probe_hub(REFUSED).startswith("cannot connect to 127.0.0.1:9 (")
    assert weights.hub._probe_hub("not a url") is None  # no verdict: the download says what is wrong


def test_probe_tries_addresses_at_once(monkeypatch):
    """A host whose first address refuses (or, on a broken IPv6 route, drops) but whose second answers is reachable."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        refused = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 9))
        listening = (socket.AF_INET, socket.SOCK_STREAM, 6, "", server.getsockname())
        monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [refused, listening])
        assert weights.hub._probe_hub("https://hub.example") is None
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [refused, refused])
    assert weights.hub._probe_hub("https://hub.example") == "cannot connect to hub.example:443 (Connection refused)"
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [])
    assert weights.hub._probe_hub("https://hub.example") == "cannot connect to hub.example:443 (no address)"


def test_probe_cannot_hang(monkeypatch):
    release = threading.Event()

    def stuck_dns(*args, **kwargs):
        release.wait(30)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", stuck_dns)
    try:
        start = time.monotonic()
        verdict = weights.hub._probe_hub("https://huggingface.co", timeout=0.5)
        assert time.monotonic() - start < 3
        assert verdict == "no answer from huggingface.co:443 within 0.5 s"
    finally:
        release.set()


# ----------------------------------------------------------------------------- devices
@pytest.mark.parametrize("spec", ["cpu", "auto", None, torch.device("cpu"), " CPU "])
def test_devices_that_resolve(spec):
    device = resolve_device(spec)
    assert isinstance(device, torch.device)
    expected = "cuda" if spec in ("auto", None) and torch.cuda.is_available() else "cpu"
    assert device.type == expected


@pytest.mark.parametrize("spec", ["tpu", "foo", "cuda:99", "meta", "cuda:-1", "cuda:x", ""])
def test_unusable_devices_are_refused_in_one_line(spec):
    with pytest.raises(ValueError) as e:
        resolve_device(spec)
    text = one_line(e)
    assert isinstance(e.value, WeightsError)
    assert f"'{spec}'" in text and "choose auto, cpu" in text


def test_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for spec in ("cuda", "cuda:0", "cuda:7"):
        with pytest.raises(WeightsError) as e:
            resolve_device(spec)
        text = one_line(e)
        assert f"device '{spec}' is not usable" in text and "CUDA" in text and text.endswith("choose auto, cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_index_beyond_the_visible_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(WeightsError) as e:
        resolve_device("cuda:7")
    text = one_line(e)
    assert "device 'cuda:7' does not exist: PyTorch sees 2 CUDA devices (cuda:0 to cuda:1)" in text
    assert "choose auto, cpu, cuda, cuda:N with N < 2" in text
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # nothing is allocated
    assert resolve_device("auto") == torch.device("cuda")


def test_mps_where_unavailable(monkeypatch):
    monkeypatch.setattr(weights.devices, "_mps_available", lambda: False)
    with pytest.raises(WeightsError, match="device 'mps' is not usable: MPS"):
        resolve_device("mps")


def test_model_from_spec_checks_the_device_before_loading(hf_env, monkeypatch):
    no_probe(monkeypatch)
    monkeypatch.setattr(weights.load, "load_model", lambda *a, **k: pytest.fail("model loaded before the device check"))
    for spec in ("loger", "seeded:tiny", "missing.pt"):
        with pytest.raises(WeightsError, match="unknown device 'tpu'"):
            model_from_spec(spec, device="tpu")
    model, dtype = model_from_spec("seeded:tiny", device="cpu")
    assert dtype == "fp32" and model.image_mean.device.type == "cpu"
