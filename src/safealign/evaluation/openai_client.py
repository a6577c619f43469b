"""A small client for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, `transformers serve`).

Built on the `openai` package with its own retries turned off, so the policy is ours and observable:
429 and 5xx answers, timeouts, dropped connections and malformed bodies are retried with exponential backoff
(honouring `Retry-After` when the server sends one); other 4xx errors fail at once. The API key comes from
the environment variable *named* in the config and is never stored or logged.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable
from urllib.parse import urlparse

from tqdm.auto import tqdm

from ..errors import SafeAlignError
from ..fileio import JsonlCache

log = logging.getLogger(__name__)
# The openai package's HTTP layer logs every request at INFO: one line per judgment drowns the progress bar.
for _noisy in ("httpx", "httpx2", "openai"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class JudgeRequestError(SafeAlignError):
    """A judge request that failed for good (retries exhausted or a non-retryable error)."""


def resolve_api_key(env_name: str | None, base_url: str) -> str:
    """The key from `$env_name`; a local server (127.0.0.1/localhost) needs none and gets a placeholder."""
    key = os.environ.get(env_name) if env_name else None
    if key:
        return key
    host = urlparse(base_url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
        return "EMPTY"
    raise SafeAlignError(f"judge endpoint {base_url}: set the API key in the environment variable "
                         f"{env_name or '(none configured)'}")


class ChatClient:
    """Thread-safe `chat(messages) -> str` with retries. Counters: requests, retries, failures."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY",
                 timeout: float = 120.0, max_retries: int = 6, backoff_base: float = 1.0,
                 backoff_max: float = 60.0):
        import openai

        self.base_url, self.model = base_url, model
        self.max_retries, self.backoff_base, self.backoff_max = max_retries, backoff_base, backoff_max
        self._client = openai.OpenAI(base_url=base_url, api_key=resolve_api_key(api_key_env, base_url),
                                     timeout=timeout, max_retries=0)
        self._lock = threading.Lock()
        self.requests = self.retries = self.failures = 0

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _delay(self, attempt: int, err: Exception | None) -> float:
        retry_after = None
        response = getattr(err, "response", None)
        if response is not None:
            try:
                retry_after = float(response.headers.get("retry-after"))
            except (TypeError, ValueError):
                retry_after = None
        delay = self.backoff_base * (2 ** attempt) * (0.5 + random.random() / 2)  # jitter: no thundering herd
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.backoff_max)

    def chat(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 2048) -> str:
        import openai

        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("retries")
                time.sleep(self._delay(attempt - 1, last))
            self._count("requests")
            try:
                resp = self._client.chat.completions.create(model=self.model, messages=messages,
                                                            temperature=temperature, max_tokens=max_tokens)
                content = resp.choices[0].message.content
                if not isinstance(content, str):
                    raise ValueError("no message content in the response")
                return content
            except openai.APIStatusError as err:
                last = err
                if err.status_code != 429 and err.status_code < 500:
                    self._count("failures")
                    raise JudgeRequestError(f"judge endpoint {self.base_url}: HTTP {err.status_code} "
                                            f"({_short(err)})") from None
                log.debug("judge: HTTP %s, retrying (attempt %d)", err.status_code, attempt + 1)
            except (openai.APITimeoutError, openai.APIConnectionError) as err:
                last = err
                log.debug("judge: %s, retrying (attempt %d)", type(err).__name__, attempt + 1)
            except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError, IndexError) as err:
                last = err  # malformed body (not JSON, no choices): a flaky proxy; worth another try
                log.debug("judge: malformed response (%s), retrying", err)
        self._count("failures")
        raise JudgeRequestError(f"judge endpoint {self.base_url}: giving up after {self.max_retries + 1} attempts "
                                f"({type(last).__name__}: {_short(last)})")


def ask_all(ask: Callable[..., str], todo: dict[str, tuple], cache: JsonlCache | None, *, concurrency: int,
            desc: str, show_progress: bool = True) -> tuple[dict[str, str], list[tuple[str, SafeAlignError]]]:
    """`ask(*todo[key])` for every key, on `concurrency` threads: how both LLM judges (safety, MT-Bench) send
    their requests.

    Each answer goes into `cache` as soon as it arrives (`{key, judgment, tstamp}`, written by the calling
    thread only: `JsonlCache` is not thread-safe), so an interrupted run resumes; a request that fails for
    good is collected rather than raised, so the others still finish and are cached. Returns (judgment by
    key, [(key, error)]); the caller words the error.
    """
    answers: dict[str, str] = {}
    errors: list[tuple[str, SafeAlignError]] = []
    with ThreadPoolExecutor(max_workers=concurrency) as pool, \
            tqdm(total=len(todo), desc=desc, disable=not show_progress) as bar:
        futures = {pool.submit(ask, *args): key for key, args in todo.items()}
        for fut in as_completed(futures):
            key = futures[fut]
            bar.update(1)
            try:
                answers[key] = fut.result()
            except SafeAlignError as err:
                errors.append((key, err))
                continue
            if cache is not None:
                cache.put({"key": key, "judgment": answers[key], "tstamp": time.time()})
    return answers, errors


def _short(err) -> str:
    return str(err).splitlines()[0][:200] if err is not None else ""
