"""First-run check of ``model.id`` before the (slow) model import: fail in a second, not after 30 s
of download retries, and say what to do instead.

A model id is a ``tiny`` fixture name, a local diffusers folder, or a Hugging Face repo id. A repo
id that is not in the Hugging Face cache needs a download: with ``HF_HUB_OFFLINE`` set that cannot
happen, and without a route to the hub (no DNS, no connection within a few seconds) it would only
be retried; both are refused here with the ways out (``--model tiny``, a local folder, going online
once).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from dreamsampler.config import Config, ConfigError
from dreamsampler.engine.catalog import TINY_NAMES, tiny_choices

log = logging.getLogger(__name__)

TINY_HINT = ("use --model tiny (random weights: runs offline, produces noise) or --model "
             "/path/to/folder (a diffusers folder with model_index.json)")
#: seconds the hub connection probe may take
PROBE_TIMEOUT = 4.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _looks_like_path(model_id: str) -> bool:
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1 or "\\" in model_id


def check_model_source(model_id: str, probe_timeout: float = PROBE_TIMEOUT) -> str:
    """Check that ``model_id`` can be loaded without waiting on an unreachable hub.

    Args:
        model_id: ``model.id`` from the config.
        probe_timeout: seconds for the TCP probe of the hub endpoint (only when a download is
            needed and no proxy is configured).

    Returns:
        Where the model comes from, for the start-up log: ``"tiny fixture"``, ``"local folder"``,
        ``"Hugging Face cache"`` or ``"download from <endpoint>"``.

    Raises:
        ConfigError: a missing local folder, a folder without ``model_index.json``, offline mode
            with an uncached repo id, or a hub that cannot be reached; the message says what to do.
    """
    if model_id in TINY_NAMES:
        return "tiny fixture"
    if model_id.startswith("tiny:"):
        raise ConfigError(f"model.id {model_id}: no such tiny build (known: {tiny_choices()})")
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ConfigError(f"model.id {model_id}: the folder has no model_index.json (not a "
                              f"diffusers pipeline folder); {TINY_HINT}")
        return "local folder"
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(model_id, "model_index.json")
    except HFValidationError:
        if _looks_like_path(model_id) or path.exists():
            raise ConfigError(f"model.id {model_id}: no such folder; {TINY_HINT}") from None
        raise ConfigError(f"model.id {model_id}: neither a folder nor a Hugging Face repo id "
                          f"(owner/name); {TINY_HINT}") from None
    if isinstance(cached, str):
        return "Hugging Face cache"
    if constants.HF_HUB_OFFLINE:  # huggingface_hub reads HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE
        var = "HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE") else "TRANSFORMERS_OFFLINE"
        raise ConfigError(
            f"model.id {model_id}: offline mode is on ({var} is set) and the model is not "
            f"in the Hugging Face cache ({constants.HF_HUB_CACHE}), so it cannot be downloaded. "
            f"Unset {var} and start once with a network connection, or {TINY_HINT}")
    endpoint = constants.ENDPOINT
    if not any(os.environ.get(v) for v in _PROXY_VARS):
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname or "", port), timeout=probe_timeout):
                pass
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConfigError(
                f"model.id {model_id}: the download failed: cannot reach {endpoint} ({reason}) "
                f"and the model is not in the Hugging Face cache ({constants.HF_HUB_CACHE}). "
                f"Check the network connection, or {TINY_HINT}") from None
    return f"download from {endpoint}"


def check_device(device: str) -> None:
    """Check that ``model.device`` exists on this machine (imports torch).

    Raises:
        ConfigError: a CUDA or MPS device is asked for and torch sees none (or fewer).
    """
    import torch

    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = device.partition(":")[2]
        if count == 0:
            version = torch.__version__
            build = f" (torch {version} is a CPU build)" if "+cpu" in version else ""
            raise ConfigError(f"model.device {device}: torch sees no CUDA GPU here{build}; use "
                              "--device auto or cpu")
        if index.isdigit() and int(index) >= count:
            raise ConfigError(f"model.device {device}: only {count} CUDA device(s) (cuda:0.."
                              f"cuda:{count - 1})")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("model.device mps: Apple's Metal backend is not available here; use "
                          "--device auto or cpu")
    elif device not in ("auto", "cpu") and not device.startswith(("cuda", "mps")):
        try:
            torch.device(device)
        except RuntimeError as exc:
            raise ConfigError(f"model.device {device}: {exc}") from None


def check_model(config: Config) -> None:
    """Fail in a second on a model that cannot load (:func:`check_model_source`,
    :func:`check_device`), then route the model libraries' logs through ours (they are imported
    for the model anyway).

    Raises:
        ConfigError: see :func:`check_model_source` and :func:`check_device`.
    """
    from dreamsampler.cli.common import route_library_logs

    source = check_model_source(config.model.id)
    check_device(config.model.device)
    route_library_logs()
    log.info("model %s (%s)", config.model.id, source)
