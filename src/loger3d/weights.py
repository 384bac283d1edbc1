"""Pretrained weights: where they come from, how they are read, and which preset they fit.

Checkpoints are untrusted input (they come from the Hub or from anyone's disk), so ``.pt``
files are only ever read with ``torch.load(weights_only=True)`` and a file that needs
arbitrary unpickling is refused with a way out, never loaded. Every failure a user can cause
raises :class:`WeightsError` with one line that names the problem and the fix.

    model = load_model("loger", device="cuda")          # alias: Hugging Face download, cached
    model = load_model("tiny_synthetic")                 # the small model shipped in the package (offline)
    model = load_model("ckpts/LoGeR/latest.pt")          # local file, preset inferred
    convert("loger", "loger_bf16.safetensors", dtype="bf16")
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import queue
import re
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import torch
from torch import nn

from .config import PRESETS, ModelConfig
from .errors import LogerError
from .model import LoGeR

__all__ = ["WeightsError", "ALIASES", "SHIPPED", "shipped_path", "cached_path", "resolve_source", "read_state_dict",
           "infer_preset", "check_compatible", "load_model", "resolve_device", "model_from_spec", "convert"]


class WeightsError(LogerError, ValueError):
    """A checkpoint that cannot be found, read or used; the message is one line with the fix."""


#: alias -> (Hugging Face repo id, file in the repo, preset)
ALIASES: dict[str, tuple[str, str, str]] = {
    "loger": ("Junyi42/LoGeR", "LoGeR/latest.pt", "loger"),
    "loger_star": ("Junyi42/LoGeR", "LoGeR_star/latest.pt", "loger_star"),
    "pi3": ("yyfz233/Pi3", "model.safetensors", "pi3"),
}

#: model name -> (file inside the loger3d package, preset): weights that ship with loger3d, so
#: they load offline without any download (the demo's model; see README, "The shipped model").
SHIPPED: dict[str, tuple[str, str]] = {
    "tiny_synthetic": ("assets/tiny_synthetic.safetensors", "tiny"),
}

PT_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors",)
_SUFFIXES = PT_SUFFIXES + SAFETENSORS_SUFFIXES

# Keys the memory adds to Pi3: a Pi3 checkpoint lacks exactly these.
_MEMORY_PREFIXES = ("pe_token_", "ttt_layers.", "ttt_gate_projs.", "swa_layers.", "swa_gate_projs.")
_PRE_NORM = re.compile(r"^ttt_layers\.\d+\.pre_norm\.")
# Buffers that normalise the input image; they stay fp32 whatever the weights' precision.
_FP32_KEYS = ("image_mean", "image_std")
_CHECKPOINT_NAMES = {"loger": "LoGeR", "loger_star": "LoGeR_star", "pi3": "Pi3", "tiny": "tiny"}

_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}
_DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


# ----------------------------------------------------------------------------- sources
def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hf_offline_reason() -> str | None:
    """Why the Hub is off limits by configuration (``HF_HUB_OFFLINE=1``...), or ``None``; read now, not at import."""
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var):
            return f"{var}={os.environ[var]}" if _is_true(os.environ[var]) else None
    return "HF_HUB_OFFLINE" if getattr(constants, "HF_HUB_OFFLINE", False) else None


def _hf_cache() -> tuple[str, str]:
    """The hub cache as the environment says now, and which variable set it (huggingface_hub's rules, per call)."""
    def expand(path: str) -> str:
        return os.path.expandvars(os.path.expanduser(path))

    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return expand(os.environ[var]), var
    for var in ("HF_HOME", "XDG_CACHE_HOME"):
        if os.environ.get(var):
            home = os.environ[var] if var == "HF_HOME" else os.path.join(os.environ[var], "huggingface")
            return os.path.join(expand(home), "hub"), var
    return expand(os.path.join("~", ".cache", "huggingface", "hub")), "default"


def _hf_cache_dir() -> str:
    """The hub cache as the environment says now (same rules as huggingface_hub, re-read per call)."""
    return _hf_cache()[0]


def _hf_endpoint() -> str:
    """The Hub's address, ``HF_ENDPOINT`` read now (huggingface_hub reads it at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or getattr(constants, "ENDPOINT", None) or "https://huggingface.co").rstrip("/")


def _proxy_set() -> bool:
    """Whether downloads go through a proxy (then a direct connection says nothing about reachability)."""
    return any(os.environ.get(var) for name in ("http_proxy", "https_proxy", "all_proxy")
               for var in (name, name.upper()))


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "no address"
    if isinstance(error, TimeoutError):
        return "timed out"
    return _one_line(getattr(error, "strerror", None) or error or type(error).__name__, 80)


_PROBES_PER_FAMILY = 2


def _connect(address_info: tuple, deadline: float, results: queue.SimpleQueue) -> None:
    family, kind, proto, _, address = address_info
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(address)
    except OSError as e:
        results.put(("failed", e))
    else:
        results.put(("open", None))


def _probe_hub(endpoint: str, timeout: float = 3.0) -> str | None:
    """``None`` if a TCP connection to the endpoint's host opens within ``timeout`` s, else why not.

    DNS and the connections run in daemon threads, so a resolver or a route that hangs cannot
    hold the caller longer than ``timeout``. Up to two addresses per family (IPv4, IPv6) are tried
    at once, so one broken family (an IPv6 route that drops packets) does not hide a working one.
    An endpoint that is not a URL gets no verdict (``None``): the download then says what is wrong.
    """
    parts = urlsplit(endpoint)
    try:
        host, port = parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)
    except ValueError:
        return None
    if not host:
        return None
    deadline = time.monotonic() + timeout
    results: queue.SimpleQueue = queue.SimpleQueue()

    def resolve() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            results.put(("unresolved", e))
            return
        chosen: dict[int, list] = {}
        for info in infos:
            same = chosen.setdefault(info[0], [])
            if len(same) < _PROBES_PER_FAMILY and all(info[4] != other[4] for other in same):
                same.append(info)
        picked = [info for same in chosen.values() for info in same]
        results.put(("addresses", len(picked)))
        for info in picked:
            threading.Thread(target=_connect, args=(info, deadline, results), daemon=True).start()

    threading.Thread(target=resolve, name="loger3d-hub-probe", daemon=True).start()
    pending, last = None, None
    while True:
        try:
            what, value = results.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            return f"no answer from {host}:{port} within {timeout:g} s"
        if what == "open":
            return None
        if what == "unresolved":
            return f"cannot resolve {host} ({_reason(value)})"
        if what == "addresses":
            pending = value
        else:
            pending, last = pending - 1, value
        if pending == 0:
            return f"cannot connect to {host}:{port} ({_reason(last)})"


def _one_line(error: BaseException | str, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (huggingface_hub wraps the network error in its own)."""
    seen = {id(error)}
    while (inner := error.__cause__ or error.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    return error


@contextlib.contextmanager
def _quiet_hub():
    """huggingface_hub's retry warnings hidden (a failure is reported in one line), unless its logging was raised."""
    import logging

    logger = logging.getLogger("huggingface_hub")
    if logger.getEffectiveLevel() < logging.WARNING:  # HF_HUB_VERBOSITY=info/debug: the user wants to see it
        yield
        return
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _not_cached(alias: str, why: str) -> WeightsError:
    repo_id, filename, _ = ALIASES[alias]
    cache, var = _hf_cache()
    source = "huggingface_hub's default" if var == "default" else f"from {var}"
    url = f"{_hf_endpoint()}/{repo_id}/resolve/main/{filename}"
    return WeightsError(
        f"weights {alias!r} ({repo_id}/{filename}) are not in the Hugging Face cache ({cache}, {source}) and cannot "
        f"be downloaded ({why}); run once with network to cache them, or download {url} elsewhere and pass the "
        "local .pt/.safetensors path with --model ('loger3d convert' makes a .safetensors of it)")


def _download(alias: str) -> str:
    """An alias's checkpoint: from the Hugging Face cache if there (no network), else downloaded into it.

    Offline (``HF_HUB_OFFLINE``) or with the Hub unreachable (a quick DNS + TCP probe, skipped
    behind a proxy), an uncached alias fails at once; every download failure is one line.
    """
    cached = cached_path(alias)
    if cached is not None:
        return cached
    offline = _hf_offline_reason()
    if offline:
        raise _not_cached(alias, f"offline: {offline}")
    endpoint = _hf_endpoint()
    if not _proxy_set():
        unreachable = _probe_hub(endpoint)
        if unreachable:
            raise _not_cached(alias, f"the Hub at {endpoint} is not reachable: {unreachable}")

    from huggingface_hub import hf_hub_download

    try:
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
        )
    except ImportError:  # huggingface_hub < 0.23
        from huggingface_hub.utils import (
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
        )

    repo_id, filename, _ = ALIASES[alias]
    where = f"{repo_id}/{filename}"
    local = "pass a local .pt/.safetensors path"
    try:
        with _quiet_hub():
            return hf_hub_download(repo_id, filename, cache_dir=_hf_cache_dir(), local_files_only=False,
                                   endpoint=endpoint)
    except OfflineModeIsEnabled:
        raise _not_cached(alias, "offline: HF_HUB_OFFLINE") from None
    except LocalEntryNotFoundError as e:  # the connection failed (after huggingface_hub's retries)
        cause = _root_cause(e)
        detail = f": {_one_line(cause, 120)}" if cause is not e else ""
        raise _not_cached(alias, f"no connection to the Hugging Face Hub at {endpoint}{detail}") from None
    except GatedRepoError:
        raise WeightsError(f"weights {alias!r} ({where}) are gated on the Hub; accept the terms on "
                           f"{endpoint}/{repo_id} and log in (hf auth login), or pass a local path") from None
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise WeightsError(f"weights {alias!r} ({where}) were not found on the Hub (moved or removed?); "
                           "pass a local .pt/.safetensors path") from None
    except Exception as e:  # HTTP errors, network errors (requests/httpx), disk full...: one line, no traceback
        text = _one_line(e, 120) or type(e).__name__
        raise WeightsError(f"weights {alias!r} ({where}) could not be downloaded: {text}; "
                           f"retry, or {local}") from None


def cached_path(alias: str) -> str | None:
    """Where an alias's checkpoint sits in the Hugging Face cache, or ``None`` (no network used)."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, filename, _ = ALIASES[alias]
    path = try_to_load_from_cache(repo_id, filename, cache_dir=_hf_cache_dir())
    return path if isinstance(path, str) else None


def shipped_path(name: str) -> str:
    """The file of a model in :data:`SHIPPED`, inside the installed package."""
    return str(Path(__file__).parent / SHIPPED[name][0])


def _names() -> str:
    return ", ".join([*ALIASES, *SHIPPED])


def resolve_source(source: str | os.PathLike) -> tuple[str, str | None]:
    """A local checkpoint path for an alias or a path, and the alias's preset (``None`` for a path).

    An alias (a ``str`` equal to one of :data:`ALIASES`) is downloaded into the normal Hugging
    Face cache, so later calls, and other tools, reuse it; a name in :data:`SHIPPED` is the file in
    the package (no network); a ``Path`` (or ``./loger``) is always a path.
    """
    if isinstance(source, str) and source in ALIASES:
        return _download(source), ALIASES[source][2]
    if isinstance(source, str) and source in SHIPPED:
        return shipped_path(source), SHIPPED[source][1]
    if not isinstance(source, (str, os.PathLike)):
        raise WeightsError(f"weights source must be an alias or a path, not {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.exists():
        raise WeightsError(f"no such file {str(path)!r}; give an alias ({_names()}) or a path "
                           f"to a {'/'.join(_SUFFIXES)} file")
    if path.is_dir():
        raise WeightsError(f"{str(path)!r} is a directory; give the checkpoint file inside it "
                           f"({'/'.join(_SUFFIXES)})")
    if path.suffix.lower() not in _SUFFIXES:
        raise WeightsError(f"{str(path)!r} has an unknown extension {path.suffix!r}; accepted are "
                           f"{', '.join(_SUFFIXES)} (rename it if it is one of those)")
    return str(path), None


# ----------------------------------------------------------------------------- reading
def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except SafetensorError as e:
        raise WeightsError(f"cannot read {path!r} as safetensors (corrupt or truncated?): {_one_line(e, 120)}; "
                           "download or convert it again") from None


def _unsafe_globals(path: str, error: BaseException) -> str:
    """The classes or functions a refused checkpoint would need, for the message (best effort)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy (non-zip) file: take the one torch named
        names = []
    names = names or re.findall(r"Unsupported (?:global: GLOBAL|class) ([\w.]+)", str(error))[:1]
    if not names:
        return ""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f" ({shown})"


def _torch_load(path: str) -> object:
    """``torch.load`` restricted to tensors and plain containers; mmap unless the file predates zip."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as e:
        if not re.search(r"Unsupported (global|class)", str(e)):  # garbage, or not written by torch.save
            raise WeightsError(f"cannot read {path!r} as a PyTorch checkpoint (corrupt, or not written by "
                               "torch.save); save the state dict with torch.save or use .safetensors") from None
        raise WeightsError(
            f"{path!r} holds objects other than tensors{_unsafe_globals(path, e)}, which would need arbitrary "
            "unpickling; it is refused for safety. In an environment you trust, re-save just the state dict, "
            "e.g. torch.save(ckpt['model_state_dict'], 'clean.pt'), or convert it to .safetensors") from None
    except (RuntimeError, EOFError, KeyError, ValueError) as e:
        raise WeightsError(f"cannot read {path!r} as a PyTorch checkpoint (corrupt, truncated or another format): "
                           f"{_one_line(e, 100)}; download or save it again") from None


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: object, path: str) -> Mapping:
    """The state dict inside a checkpoint: the official layouts and the common training wrappers."""
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path!r} holds a {type(obj).__name__}, not a state dict; save model.state_dict()")
    if isinstance(obj.get("model_state_dict"), Mapping):
        return obj["model_state_dict"]
    for key in ("state_dict", "model"):
        if _is_tensor_dict(obj.get(key)):
            return obj[key]
    if obj and all(isinstance(k, str) and not isinstance(v, Mapping) for k, v in obj.items()):
        return obj
    keys = ", ".join(map(str, list(obj)[:6])) + (", ..." if len(obj) > 6 else "")
    raise WeightsError(f"{path!r} holds no state dict (top-level keys: {keys}); expected tensors, or a dict "
                       "of them under 'model_state_dict', 'state_dict' or 'model'")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a ``.safetensors`` or ``.pt/.pth/.bin`` file, on the CPU, ``module.`` prefixes stripped.

    ``.pt`` files are memory-mapped, so a 5 GB checkpoint is not copied before it is used.
    """
    path = str(Path(path).expanduser())
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise WeightsError(f"{path!r} has an unknown extension {suffix!r}; accepted are {', '.join(_SUFFIXES)}")
    try:
        raw = _read_safetensors(path) if suffix in SAFETENSORS_SUFFIXES else _unwrap(_torch_load(path), path)
    except FileNotFoundError:
        raise WeightsError(f"no such file {path!r}; give an alias ({_names()}) or a path") from None
    except IsADirectoryError:
        raise WeightsError(f"{path!r} is a directory; give the checkpoint file inside it") from None
    except PermissionError:
        raise WeightsError(f"cannot read {path!r}: permission denied; fix its permissions or copy it") from None
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path!r}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                               "a state dict must hold only tensors")
        name = str(key)
        while name.startswith("module."):
            name = name[len("module."):]
        if name in state:
            raise WeightsError(f"{path!r}: key {name!r} occurs both with and without the 'module.' prefix; "
                               "keep one copy of the weights")
        state[name] = value
    if not state:
        raise WeightsError(f"{path!r} holds an empty state dict; save model.state_dict()")
    return state


# ----------------------------------------------------------------------------- presets
Manifest = dict[str, tuple[int, ...]]


@functools.cache
def _preset_manifest(preset: str) -> Manifest:
    """``{key: shape}`` of a preset, from a model built on the meta device (no memory)."""
    with torch.device("meta"):
        model = LoGeR(preset)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _preset_name(preset: str | ModelConfig) -> str:
    name = preset.name if isinstance(preset, ModelConfig) else preset
    if name not in PRESETS:
        raise WeightsError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return name


def _diff(manifest: Manifest, state_dict: Mapping[str, torch.Tensor]):
    missing = [k for k in manifest if k not in state_dict]
    unexpected = [k for k in state_dict if k not in manifest]
    shapes = [(k, tuple(state_dict[k].shape), manifest[k]) for k in manifest
              if k in state_dict and tuple(state_dict[k].shape) != manifest[k]]
    return missing, unexpected, shapes


def _exact_presets(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    return [p for p in PRESETS if not any(_diff(_preset_manifest(p), state_dict))]


def _group(keys: list[str], limit: int = 6) -> str:
    """Key patterns, numbers as ``*``: whole keys when they are few, else their first one or two components."""
    def star(text: str) -> str:
        return re.sub(r"\d+", "*", text)

    full = list(dict.fromkeys(star(k) for k in keys))
    if len(full) > 3:
        coarse = []
        for key in keys:
            parts = key.split(".")
            head = parts[:1] if len(parts) < 2 or parts[1].isdigit() else parts[:2]
            coarse.append(star(".".join(head)) + (".*" if len(parts) > len(head) else ""))
        full = list(dict.fromkeys(coarse))
    shown = ", ".join(full[:limit])
    return shown + (f", +{len(full) - limit} more patterns" if len(full) > limit else "")


def _hint(target: str, state_dict: Mapping[str, torch.Tensor], missing: list[str], unexpected: list[str],
          shapes: list) -> str:
    exact = [p for p in _exact_presets(state_dict) if p != target]
    if exact:
        return f"this looks like a {_CHECKPOINT_NAMES.get(exact[0], exact[0])} checkpoint, use the {exact[0]} preset"
    if not shapes and not unexpected and missing:
        if all(_PRE_NORM.match(k) for k in missing):
            return "this looks like a LoGeR_star checkpoint (no TTT pre-norm), use the loger_star preset"
        if not any(k.startswith(_MEMORY_PREFIXES) for k in state_dict):
            return "this looks like a Pi3 checkpoint (no memory layers), use the pi3 preset"
    if not shapes and not missing and unexpected and all(_PRE_NORM.match(k) for k in unexpected):
        return "this looks like a LoGeR checkpoint (TTT pre-norm), use the loger preset"
    if unexpected and not missing and not shapes and all(k.startswith(_MEMORY_PREFIXES) for k in unexpected):
        return "it has memory layers, so it is a LoGeR checkpoint: use the loger or loger_star preset"
    return f"it is not a LoGeR/Pi3 checkpoint of any known preset ({', '.join(PRESETS)})"


def _mismatch_message(target: str, state_dict: Mapping[str, torch.Tensor], manifest: Manifest | None = None,
                      label: str | None = None) -> str | None:
    missing, unexpected, shapes = _diff(manifest or _preset_manifest(target), state_dict)
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} keys ({_group(missing)})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys ({_group(unexpected)})")
    if shapes:
        key, got, want = shapes[0]
        parts.append(f"{len(shapes)} shape mismatches (e.g. {key}: checkpoint {list(got)} vs model {list(want)})")
    hint = _hint(target, state_dict, missing, unexpected, shapes)
    return f"state dict does not fit {label or f'preset {target!r}'}: {', '.join(parts)}; {hint}"


def infer_preset(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The preset whose keys and shapes equal the state dict's exactly.

    With no exact match, raises the mismatch against the closest preset, which says what differs.
    """
    exact = _exact_presets(state_dict)
    if exact:
        return exact[0]

    def distance(p: str) -> int:
        return sum(len(x) for x in _diff(_preset_manifest(p), state_dict))

    closest = min(PRESETS, key=distance)
    raise WeightsError(_mismatch_message(closest, state_dict))


def check_compatible(model_or_preset: nn.Module | str | ModelConfig, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`WeightsError` saying what differs (and which preset would fit) unless keys and shapes match."""
    manifest = label = None
    if isinstance(model_or_preset, LoGeR):
        target = model_or_preset.config.name
        if target not in PRESETS or model_or_preset.config != PRESETS[target]:  # a custom config
            manifest = {k: tuple(v.shape) for k, v in model_or_preset.state_dict().items()}
            label = f"this model (custom config {target!r})"
    elif isinstance(model_or_preset, nn.Module):
        raise WeightsError(f"check_compatible expects a LoGeR model or a preset, not {type(model_or_preset).__name__}")
    else:
        target = _preset_name(model_or_preset)
    message = _mismatch_message(target, state_dict, manifest, label)
    if message:
        raise WeightsError(message)


# ----------------------------------------------------------------------------- loading
def _parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in _DTYPE_NAMES:
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.lower().removeprefix("torch.")]
    raise WeightsError(f"unknown dtype {dtype!r}; use fp32, bf16 or fp16")


def _pick_preset(state_dict: Mapping[str, torch.Tensor], preset: str | None, alias_preset: str | None) -> str:
    name = _preset_name(preset) if preset is not None else alias_preset or infer_preset(state_dict)
    check_compatible(name, state_dict)
    return name


def load_model(source: str | os.PathLike, device: torch.device | str | None = None,
               dtype: torch.dtype | str | None = None, preset: str | None = None) -> LoGeR:
    """A pretrained :class:`LoGeR` in eval mode from an alias, a ``.pt`` or a ``.safetensors``.

    The preset is ``preset`` if given, else the alias's, else inferred from the keys and shapes;
    the model is built on the meta device and takes the checkpoint's tensors (no second copy).
    ``dtype`` ``bf16``/``fp16`` goes through ``LoGeR.set_precision``; the default keeps fp32.
    """
    target = _parse_dtype(dtype)
    path, alias_preset = resolve_source(source)
    state = read_state_dict(path)
    name = _pick_preset(state, preset, alias_preset)
    state = {k: v.float() if v.is_floating_point() and v.dtype != torch.float32 else v for k, v in state.items()}
    with torch.device("meta"):
        model = LoGeR(name)
    model.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise WeightsError(f"{len(left)} tensors of preset {name!r} were not filled by the checkpoint "
                           f"(e.g. {left[0]}); this is a loger3d bug, please report it")
    model = model.to(device or "cpu").eval()
    if target != torch.float32:
        if not hasattr(model, "set_precision"):
            raise WeightsError(f"dtype {_DTYPE_NAMES[target]} needs LoGeR.set_precision, which this version of "
                               "loger3d lacks; load in fp32")
        model.set_precision(target)
    return model


# ----------------------------------------------------------------------------- conversion
def _cast(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in state_dict.items():
        keep = key.rsplit(".", 1)[-1] in _FP32_KEYS
        if tensor.is_floating_point():
            tensor = tensor.float() if keep else tensor.to(dtype)
        tensor = tensor.contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and tensor.numel():  # safetensors refuses tensors that share memory
            tensor = tensor.clone()
        seen.add(ptr)
        out[key] = tensor
    return out


def convert(src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype | str = "fp32", *,
            overwrite: bool = False, preset: str | None = None) -> str:
    """Write a checkpoint (alias or file) as ``.safetensors`` in fp32/fp16/bf16; return its preset.

    Safetensors loads without unpickling and fast; the preset is checked first and recorded in the
    metadata. The output appears atomically: it is written to a temporary file next to it and
    renamed, so an interrupted run never leaves a half-written ``dst``.
    """
    from safetensors.torch import save_file

    from . import __version__

    target = _parse_dtype(dtype)
    out = Path(dst).expanduser()
    if out.suffix.lower() != ".safetensors":
        raise WeightsError(f"output {str(out)!r} must end in .safetensors")
    if out.exists() and not overwrite:
        raise WeightsError(f"output {str(out)!r} already exists; pass --force (overwrite=True) to replace it")
    if out.is_dir():
        raise WeightsError(f"output {str(out)!r} is a directory; give a file name ending in .safetensors")
    if not out.parent.is_dir():
        raise WeightsError(f"directory {str(out.parent)!r} does not exist; create it first")

    path, alias_preset = resolve_source(src)
    state = read_state_dict(path)
    name = _pick_preset(state, preset, alias_preset)
    tensors = _cast(state, target)
    metadata = {"format": "pt", "loger3d_preset": name, "loger3d_version": __version__}

    tmp = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # umask-respecting permissions
        save_file(tensors, str(tmp), metadata=metadata)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return name


# ----------------------------------------------------------------------------- devices
def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _device_choices() -> str:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    choices = ["auto", "cpu"]
    if count:
        choices += ["cuda", "cuda:0" if count == 1 else f"cuda:N with N < {count}"]
    if _mps_available():
        choices.append("mps")
    return ", ".join(choices)


def _no_cuda() -> str:
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"this PyTorch ({torch.__version__}) is built without CUDA"
    return "PyTorch sees no CUDA device (driver, CUDA_VISIBLE_DEVICES?)"


def resolve_device(spec: torch.device | str | None = "auto") -> torch.device:
    """The device a ``--device`` value names, checked to exist here; :class:`WeightsError` (one line) if not.

    ``auto`` (or ``None``): CUDA when PyTorch sees a GPU, else the CPU. Accepted are ``cpu``,
    ``cuda``, ``cuda:N`` with N below the number of visible GPUs, and ``mps`` where available.
    Nothing is allocated, so a command can check its options before it loads anything.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(spec, (str, torch.device)):
        raise WeightsError(f"device must be a string or torch.device, not {type(spec).__name__}; "
                           f"choose {_device_choices()}")
    try:
        device = spec if isinstance(spec, torch.device) else torch.device(spec.strip().lower())
    except (RuntimeError, ValueError, TypeError):
        raise WeightsError(f"unknown device {str(spec)!r} (not a PyTorch device); choose {_device_choices()}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise WeightsError(f"device {str(spec)!r} is not usable: {_no_cuda()}; choose {_device_choices()}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            seen = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise WeightsError(f"device {str(spec)!r} does not exist: PyTorch sees {count} CUDA device"
                               f"{'s' if count > 1 else ''} ({seen}); choose {_device_choices()}")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise WeightsError(f"device {str(spec)!r} is not usable: MPS (Apple GPU) is not available here; "
                               f"choose {_device_choices()}")
        return device
    raise WeightsError(f"device {str(spec)!r} is not supported by loger3d (CPU, CUDA or MPS only); "
                       f"choose {_device_choices()}")


def model_from_spec(spec: str, device: torch.device | str = "auto", dtype: str = "auto") -> tuple[LoGeR, str]:
    """The model a command line names, on ``device``, and the precision chosen.

    ``spec``: an alias or a checkpoint path (see :func:`load_model`), or ``seeded:PRESET[:SEED]``
    for the seeded weights of the equivalence reference (no download; tests and benchmarks).
    ``device="auto"``: CUDA when available; ``dtype="auto"``: bf16 on CUDA (the official demo's
    autocast), fp32 on the CPU.
    """
    from .seeded import fill_seeded_

    device = resolve_device(device)
    if dtype == "auto":
        dtype = "bf16" if device.type == "cuda" else "fp32"
    if not spec.startswith("seeded:"):
        return load_model(spec, device=device, dtype=dtype), dtype
    _, preset, *seed = spec.split(":")
    if preset not in PRESETS:
        raise WeightsError(f"unknown preset {preset!r} in {spec!r}; use seeded:{'|'.join(PRESETS)}[:SEED]")
    with torch.device("meta"):
        model = LoGeR(preset)
    model = fill_seeded_(model, int(seed[0]) if seed else 0, device=device).eval()
    if _DTYPES.get(dtype, torch.float32) != torch.float32:
        model.set_precision(_DTYPES[dtype])
    return model, dtype
