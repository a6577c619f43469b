"""Real material for tests: the shared real-data folder and the real Mistral-7B-v0.1 tokenizer, offline.

The tokenizer is the v0.1 SentencePiece model that PyPI's `mistral-common` wheel ships (Apache-2.0) as
`mistral_common/data/tokenizer.model.v1`. It is taken, in this order, from $SAFEALIGN_MISTRAL_TOKENIZER_MODEL
(a path to that file), from an installed `mistral_common`, or from `pip download --no-deps mistral-common`
into a temporary folder; its SHA-256 is checked. The folder built around it (`tokenizer.model` +
`tokenizer_config.json` as on the Hub: add_bos_token true, <s>/</s>/<unk>) is built once per test run and
loaded through the project's own `load_tokenizer`. Without `sentencepiece` or without the file, tests skip
and say why.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from safealign.models.loading import load_tokenizer

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
REAL = SHARED / "data" / "real"
MT_BENCH = SHARED / "data" / "mt_bench"

TOKENIZER_MODEL_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"
WHEEL_MEMBER = "mistral_common/data/tokenizer.model.v1"
# Only these keys: with the Hub's `"legacy": true` added, transformers 5 converts the SentencePiece model into a
# tokenizer that differs from SentencePiece itself on 34 of 340 real texts (spaces after newlines, a leading
# space); with these it matches on all (test_real_tokenizer.py checks against `sentencepiece` directly).
TOKENIZER_CONFIG = {"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}

# "Hello world" with the real tokenizer (BOS + the two pieces), as documented in ../shared/data/real/README.md
HELLO_WORLD_IDS = [1, 22557, 1526]
BOS_ID, EOS_ID = 1, 2


def real_path(*parts: str) -> Path:
    """A file under ../shared/data/real, or skip the calling test when the shared folder is absent."""
    path = REAL.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared real-data folder is not beside the repository)")
    return path


def mt_bench_questions() -> Path:
    path = MT_BENCH / "question.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@functools.lru_cache(maxsize=1)
def _tokenizer_model() -> tuple[bytes | None, str]:
    """(bytes of tokenizer.model.v1, where it came from) or (None, why not)."""
    env = os.environ.get("SAFEALIGN_MISTRAL_TOKENIZER_MODEL")
    if env:
        return (Path(env).read_bytes(), env) if Path(env).is_file() else (None, f"{env}: no such file")
    spec = importlib.util.find_spec("mistral_common")
    if spec and spec.origin:
        installed = Path(spec.origin).parent / "data" / "tokenizer.model.v1"
        if installed.is_file():
            return installed.read_bytes(), str(installed)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                            "--quiet", "--disable-pip-version-check", "-d", tmp, "mistral-common"],
                           check=True, capture_output=True, text=True, timeout=180)
        except (subprocess.SubprocessError, OSError) as err:
            detail = getattr(err, "stderr", "") or str(err)
            return None, f"pip download mistral-common failed ({detail.strip().splitlines()[-1][:200]})"
        wheels = sorted(Path(tmp).glob("mistral_common-*.whl"))
        if not wheels:
            return None, "pip download mistral-common gave no wheel"
        with zipfile.ZipFile(wheels[-1]) as zf:
            if WHEEL_MEMBER not in zf.namelist():
                return None, f"{wheels[-1].name} has no {WHEEL_MEMBER}"
            return zf.read(WHEEL_MEMBER), wheels[-1].name


def write_tokenizer_folder(folder: Path) -> str:
    """Write `tokenizer.model` + `tokenizer_config.json` into `folder`; returns where the model came from.
    Raises RuntimeError when the file is unavailable or is not the v0.1 model."""
    data, where = _tokenizer_model()
    if data is None:
        raise RuntimeError(where)
    digest = hashlib.sha256(data).hexdigest()
    if digest != TOKENIZER_MODEL_SHA256:
        raise RuntimeError(f"{where}: tokenizer.model.v1 has SHA-256 {digest[:12]}…, not the v0.1 model")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(data)
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=1), encoding="utf-8")
    return where


@functools.lru_cache(maxsize=1)
def _build_folder() -> tuple[Path | None, str]:
    folder = Path(tempfile.mkdtemp(prefix="mistral_v01_tokenizer_"))
    atexit.register(shutil.rmtree, folder, True)  # once per test run; gone when it ends
    try:
        return folder, write_tokenizer_folder(folder)
    except RuntimeError as err:
        return None, str(err)


def mistral_tokenizer_folder() -> Path:
    """The built folder (tokenizer.model + tokenizer_config.json), or skip with the reason."""
    if importlib.util.find_spec("sentencepiece") is None:
        pytest.skip("sentencepiece is not installed (pip install -e '.[dev]')")
    folder, why = _build_folder()
    if folder is None:
        pytest.skip(f"the real Mistral-7B-v0.1 tokenizer is unavailable: {why}")
    return folder


@functools.lru_cache(maxsize=1)
def _loaded(folder: Path):
    return load_tokenizer(str(folder))


@pytest.fixture(scope="session")
def mistral_tokenizer():
    """The real Mistral-7B-v0.1 tokenizer loaded with `load_tokenizer` (shared: do not modify it)."""
    return _loaded(mistral_tokenizer_folder())


@pytest.fixture(scope="session")
def mistral_tokenizer_dir():
    return mistral_tokenizer_folder()



if __name__ == "__main__":  # python tests/helpers/real.py OUT_DIR: the folder configs/real_smoke.yaml can use
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/helpers/real.py OUT_DIR")
    try:
        source = write_tokenizer_folder(Path(sys.argv[1]))
    except RuntimeError as err:
        sys.exit(f"error: the real Mistral-7B-v0.1 tokenizer is unavailable: {err}")
    print(f"{sys.argv[1]}: tokenizer.model (from {source}) + tokenizer_config.json")
