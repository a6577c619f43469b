"""What a model reference (a folder or a Hub id) points at, decided before anything loads.

Why: handed to `from_pretrained` as is, a folder that holds no model ended in a traceback, a missing local
folder in an error about Hub repo ids, and an unknown Hub id without network in 47 s of retries with every
warning printed twice. Here each case is one line, quickly:

- a local folder must hold a model (`config.json`, or `adapter_config.json` for a LoRA adapter);
- a reference that can only be a path (`./x`, `/x`, `~/x`, `a/b/c`, or `a/b` where `a` is a local folder)
  must exist;
- a Hub id is loaded from the local cache only (`local_files_only`) when offline mode is on
  (`HF_HUB_OFFLINE=1`) or the Hub cannot be reached (one TCP connect, a few seconds at most); when it is not
  in the cache either, that is the error, said plainly.

This module imports nothing heavy (`huggingface_hub` only when a Hub id is checked), so the CLI and
`safealign chat` can check `--model` before torch loads.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ConfigError

log = logging.getLogger(__name__)

MODEL_MARKERS = ("config.json", "adapter_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
HUB_PROBE_TIMEOUT = 3.0  # seconds for the one connection attempt that says whether the Hub is reachable
_TRUE = {"1", "on", "yes", "true"}


def check_model_ref(value: str, flag: str | None = None, markers: tuple[str, ...] = MODEL_MARKERS) -> str:
    """`value` when it is a local model folder or can only be a Hub id; ConfigError saying what to do otherwise.

    `flag` names where the reference came from in the message (e.g. "--model base"); default: nothing.
    `markers`: files one of which a local folder must hold (a tokenizer folder: `TOKENIZER_FILES` will do)."""
    where = f"{flag} {value}" if flag else str(value)
    p = Path(value).expanduser()
    if p.is_dir():
        if not any((p / m).is_file() for m in markers):
            has_checkpoints = any(p.glob("checkpoint-*"))
            hint = " (it holds checkpoints: pass one of its checkpoint-N folders)" if has_checkpoints else ""
            raise ConfigError(f"{where}: not a model folder (no config.json){hint}; pass a folder written by "
                              "save_pretrained, e.g. runs/<name>/models/aligned")
        return str(p)
    if p.exists():
        raise ConfigError(f"{where}: is a file; pass the model's folder")
    text = str(value)
    first = text.split("/")[0]
    local = text.startswith((".", "/", "~")) or text.count("/") > 1 or ("/" in text and Path(first).is_dir())
    if local:
        raise ConfigError(f"{where}: no such folder")
    return text


def hub_offline() -> bool:
    """Offline mode as huggingface_hub reads it, from the environment now (not when it was imported)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=4)
def hub_reachable(endpoint: str | None = None, timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """One TCP connection to the Hub's host (its DNS name failing to resolve answers at once)."""
    url = urlparse(endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _in_cache(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for name in (*MODEL_MARKERS, "tokenizer_config.json"):
        try:
            if isinstance(try_to_load_from_cache(repo_id, name, revision=revision), str):
                return True
        except Exception:  # noqa: BLE001 - an id the cache layout rejects is simply not cached
            return False
    return False


def hub_load_kwargs(name_or_path: str, revision: str | None = None, flag: str | None = None,
                    markers: tuple[str, ...] = MODEL_MARKERS) -> dict:
    """Extra `from_pretrained` arguments for `name_or_path`: {} for a local folder or a reachable Hub;
    {"local_files_only": True} for a Hub id read from the cache (offline, or the Hub unreachable);
    ConfigError (one line) when the model cannot be had. `markers`: as in `check_model_ref`."""
    ref = check_model_ref(name_or_path, flag, markers)
    if Path(ref).is_dir():
        return {}
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    where = f"{flag} {ref}" if flag else ref
    try:
        validate_repo_id(ref)
    except HFValidationError:
        raise ConfigError(f"{where}: neither a local folder nor a Hub model id (owner/name)") from None
    if hub_offline():
        if _in_cache(ref, revision):
            return {"local_files_only": True}
        raise ConfigError(f"{where}: not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading; "
                          f"run `huggingface-cli download {ref}` where there is network, or unset HF_HUB_OFFLINE")
    if not hub_reachable():
        if _in_cache(ref, revision):
            log.warning("the Hugging Face Hub is unreachable: %s is loaded from the local cache", ref)
            return {"local_files_only": True}
        raise ConfigError(f"{where}: the Hugging Face Hub cannot be reached and the model is not in the local "
                          "cache; check the network (or HF_ENDPOINT), or download it first")
    return {}


def check_tokenizer_folder(path: str) -> None:
    """A local model folder must carry its tokenizer (every stage saves it next to the weights)."""
    p = Path(path)
    if p.is_dir() and not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise ConfigError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}); save the tokenizer "
                          "with the model (tokenizer.save_pretrained) or pass the base model's folder")
