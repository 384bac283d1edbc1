"""Where weights come from: the aliases on the Hugging Face Hub (through its cache), the models shipped in the
package, and local paths. A cached alias needs no network; offline, an uncached one fails in seconds."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import WeightsError, one_line
from .registry import MODEL_CARDS

__all__ = ["ALIASES", "SHIPPED", "PT_SUFFIXES", "SAFETENSORS_SUFFIXES", "cached_path", "shipped_path",
           "resolve_source"]


#: alias -> (Hugging Face repo id, file in the repo, preset), from the model cards
ALIASES: dict[str, tuple[str, str, str]] = {
    card.name: (card.repo_id, card.hub_file, card.preset) for card in MODEL_CARDS.values() if card.hub}

#: model name -> (file inside the loger3d package, preset): weights that ship with loger3d, so
#: they load offline without any download (the demo's model; see README, "The shipped model").
SHIPPED: dict[str, tuple[str, str]] = {
    card.name: (card.package_file, card.preset) for card in MODEL_CARDS.values() if card.package_file}


PT_SUFFIXES = (".pt", ".pth", ".bin")


SAFETENSORS_SUFFIXES = (".safetensors",)


_SUFFIXES = PT_SUFFIXES + SAFETENSORS_SUFFIXES


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
    return one_line(getattr(error, "strerror", None) or error or type(error).__name__, 80)


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
        detail = f": {one_line(cause, 120)}" if cause is not e else ""
        raise _not_cached(alias, f"no connection to the Hugging Face Hub at {endpoint}{detail}") from None
    except GatedRepoError:
        raise WeightsError(f"weights {alias!r} ({where}) are gated on the Hub; accept the terms on "
                           f"{endpoint}/{repo_id} and log in (hf auth login), or pass a local path") from None
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise WeightsError(f"weights {alias!r} ({where}) were not found on the Hub (moved or removed?); "
                           "pass a local .pt/.safetensors path") from None
    except Exception as e:  # HTTP errors, network errors (requests/httpx), disk full...: one line, no traceback
        text = one_line(e, 120) or type(e).__name__
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
    return str(Path(__file__).parent.parent / SHIPPED[name][0])


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
