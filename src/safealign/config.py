"""YAML configs mapped onto dataclasses, validated up front.

One YAML file configures the whole pipeline; each top-level key is a *section* owned by one stage
(`data`, `reward`, `dpo`, ...; see `SECTIONS`). A stage command reads the whole file and uses its section,
so the same file drives `safealign pipeline` and each stage on its own. Training sections extend
`transformers.TrainingArguments` (TRL's `DPOConfig` convention).

Overrides: `--set dpo.beta_ori=0.2` (dotted section.key), or for a stage command `--set beta_ori=0.2`
(the stage's own section). Values are parsed as YAML scalars (`1e-5`, `true`, `[a, b]`).

Every error is a `ConfigError` naming the key, e.g. `dpo.learning_rate: must be > 0 (got -1.0)`.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import importlib
import json
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .fileio import write_text

# section name -> "module:Class"; imported lazily so `safealign --help` stays fast.
SECTIONS: dict[str, str] = {
    "run": "safealign.config:RunConfig",
    "data": "safealign.data.config:DataConfig",
    "toy": "safealign.toy.config:ToyWorldConfig",
    "model": "safealign.models.config:ModelConfig",
    "sft": "safealign.sft:SFTStageConfig",
    "reward": "safealign.rm.config:RewardConfig",
    "dpo": "safealign.dpo.config:SafeDPOConfig",
    "eval": "safealign.evaluation.config:EvalConfig",
    "sweep": "safealign.sweep.config:SweepConfig",
    "compare": "safealign.compare.config:CompareConfig",
    "pipeline": "safealign.pipeline.config:PipelineConfig",
    "distill": "safealign.distill:DistillConfig",
}

SECRET_MARKERS = ("token", "api_key", "apikey", "secret", "password")
# TrainingArguments fields that *name* secrets but hold none worth hiding (strategies, ids).
_NOT_SECRET = {"hub_strategy", "hub_model_id", "hub_private_repo", "hub_always_push", "hub_revision",
               "push_to_hub_model_id", "push_to_hub_organization", "include_num_input_tokens_seen",
               "include_tokens_per_second", "average_tokens_across_devices", "max_new_tokens",
               "max_tokens", "min_tokens", "api_key_env", "tokenizer_name_or_path", "pad_token",
               "max_tokens_per_batch"}


@dataclasses.dataclass
class RunConfig:
    """Run-wide settings shared by every stage."""

    name: str = "run"
    run_dir: str | None = None  # default: runs/<name>
    seed: int = 42
    # What the terminal shows (the log file `<run>/logs/<stage>.log` always gets everything).
    log_level: str = "warning"
    # tensorboard (event files under <run>/logs/<stage>/), wandb (needs `pip install safealign[wandb]`; the
    # WANDB_* environment variables configure it, e.g. WANDB_MODE=offline, WANDB_PROJECT), or none.
    report_to: list[str] = dataclasses.field(default_factory=lambda: ["tensorboard"])
    # Threads of every thread pool (torch, OpenMP, BLAS, tokenizers) in every stage and subprocess;
    # None: OMP_NUM_THREADS when set, else the cores this process may use. See `safealign.threads`.
    num_threads: int | None = None
    # Hugging Face repo (owner/name) the aligned model is pushed to once its card is final (`--push-to-hub`).
    push_to_hub: str | None = None

    def __post_init__(self):
        from .threads import resolve_num_threads

        if self.num_threads is not None:
            resolve_num_threads(self.num_threads)
        if self.push_to_hub is not None and self.push_to_hub.count("/") != 1:
            raise ConfigError(f"run.push_to_hub: expected a Hub repo id owner/name (got {self.push_to_hub!r})")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"run.log_level: must be one of debug, info, warning, error (got {self.log_level!r})")
        bad = set(self.report_to) - {"tensorboard", "wandb", "none"}
        if bad:
            raise ConfigError(f"run.report_to: unknown reporter {sorted(bad)[0]!r}; use tensorboard, wandb or none")

    @property
    def directory(self) -> Path:
        return Path(self.run_dir or os.path.join("runs", self.name))


def section_class(name: str) -> type:
    mod, cls = SECTIONS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


# --------------------------------------------------------------------------- parsing and coercion
def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert `value` to the annotated type `tp`; raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args if a is not type(None))}"
                          f" (got {value!r})")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, args))} (got {value!r})")
        return value
    if origin in (list, tuple, typing.List) or tp in (list, tuple):
        if isinstance(value, str) and tp is not str:
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list (got {value!r})")
        if args and args[-1] is not Ellipsis:
            value = [coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        elif args:
            value = [coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        return list(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping (got {value!r})")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"{key}: must be one of {', '.join(str(m.value) for m in tp)} (got {value!r})") from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true or false (got {value!r})")
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{key}: expected an integer (got {value!r})")
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number (got {value!r})")
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number (got {value!r})") from None
        if not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number (got {value!r})")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string (got {value!r})")
        return str(value)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key)
    return value  # unusual TrainingArguments types: passed through, the class validates them


def build_dataclass(cls: type, values: dict[str, Any] | None, prefix: str) -> Any:
    """Instantiate `cls` from a mapping, rejecting unknown keys and wrong types with the key's name."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"{prefix}: expected a mapping of settings")
    values = dict(values or {})
    normalize = getattr(cls, "normalize_config_keys", None)  # e.g. a setting two library versions name differently
    if normalize is not None:
        values = normalize(values, prefix)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = _closest(key, fields)
            raise ConfigError(f"{prefix}.{key}: unknown key" + (f" (did you mean {close!r}?)" if close else ""))
        kwargs[key] = coerce(value, hints.get(key, Any), f"{prefix}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        msg = str(err)
        raise ConfigError(msg if msg.startswith(prefix + ".") else f"{prefix}.{msg}") from None
    except (ValueError, TypeError) as err:  # TrainingArguments' own checks
        raise ConfigError(f"{prefix}: {str(err).splitlines()[0]}") from None


def _closest(key: str, candidates) -> str | None:
    match = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.75)
    return match[0] if match else None


# --------------------------------------------------------------------------- the whole file
class Config:
    """The parsed pipeline config: `cfg.section("dpo")` returns the validated dataclass for that section."""

    def __init__(self, raw: dict[str, Any], source: str | None = None):
        self.raw = raw
        self.source = source
        self._built: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.section("run").name

    def section(self, name: str) -> Any:
        if name not in SECTIONS:
            raise ConfigError(f"{name}: unknown config section; known: {', '.join(SECTIONS)}")
        if name not in self._built:
            self._built[name] = build_dataclass(section_class(name), self.raw.get(name), name)
        return self._built[name]

    def validate(self, sections: list[str] | None = None) -> None:
        for name in sections or [s for s in SECTIONS if s in self.raw or s == "run"]:
            self.section(name)

    def to_dict(self, sections: list[str] | None = None) -> dict[str, Any]:
        """Resolved values (defaults filled in) with secrets removed."""
        return {name: redact(asdict_shallow(self.section(name))) for name in sections or list(SECTIONS)}

    def fingerprint(self, sections: list[str]) -> str:
        """Hash of the raw (user-given) settings of `sections`: a stage reruns when these change."""
        blob = json.dumps({s: self.raw.get(s) for s in sections}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_overrides(self, overrides: list[tuple[str, Any]]) -> "Config":
        raw = json.loads(json.dumps(self.raw, default=str))
        for key, value in overrides:
            section, _, field = key.partition(".")
            if not field:
                raise ConfigError(f"--set {key}: use section.key, e.g. dpo.{key}")
            if section not in SECTIONS:
                raise ConfigError(f"--set {key}: unknown config section {section!r}; known: {', '.join(SECTIONS)}")
            raw.setdefault(section, {}) or raw.__setitem__(section, {})
            raw[section][field] = value
        cfg = Config(raw, self.source)
        for section in {k.partition(".")[0] for k, _ in overrides}:
            cfg.section(section)
        return cfg


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None,
                default_section: str | None = None) -> Config:
    """Read YAML `path` (or start empty), apply `key=value` overrides, validate the touched sections."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(f"{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
        for key in raw:
            if key not in SECTIONS:
                close = _closest(key, SECTIONS)
                raise ConfigError(f"{key}: unknown config section" + (f" (did you mean {close!r}?)" if close else "")
                                  + f"; known: {', '.join(SECTIONS)}")
    pairs = []
    for text in overrides or []:
        key, value = parse_override(text)
        if "." not in key.split("[")[0] and default_section:
            key = _bare_key(key, text, default_section)
        pairs.append((key, value))
    cfg = Config(raw, str(path) if path else None)
    if pairs:
        cfg = cfg.with_overrides(pairs)
    cfg.validate()
    return cfg


def _section_keys(name: str) -> set[str]:
    return {f.name for f in dataclasses.fields(section_class(name)) if f.init}


def _bare_key(key: str, text: str, default_section: str) -> str:
    """`key` of a bare `--set key=value` as `<this command's section>.key`; a key that section does not have
    but others do is a ConfigError naming them (a bare key on `pipeline` means the `run` section)."""
    if key in _section_keys(default_section):
        return f"{default_section}.{key}"
    owners = [s for s in SECTIONS if s != default_section and key in _section_keys(s)]
    value = text.split("=", 1)[1]
    if owners:
        where = owners[0] if len(owners) == 1 else ", ".join(owners[:-1]) + " and " + owners[-1]
        raise ConfigError(f"--set {text}: a bare key means section {default_section!r} here, which has no {key!r}; "
                          f"{key} is a key of {where}: write --set {owners[0]}.{key}={value}")
    close = _closest(key, _section_keys(default_section))
    raise ConfigError(f"{default_section}.{key}: unknown key" + (f" (did you mean {close!r}?)" if close else ""))


# --------------------------------------------------------------------------- saving
def asdict_shallow(obj: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif dataclasses.is_dataclass(value):
            value = asdict_shallow(value)
        out[f.name] = value
    return json.loads(json.dumps(out, default=str))


def is_secret_key(key: str) -> bool:
    k = key.lower()
    if k.endswith("_env"):  # the NAME of an environment variable holding a secret, not the secret
        return False
    return k not in _NOT_SECRET and any(m in k for m in SECRET_MARKERS)


def redact(obj: Any) -> Any:
    """Drop values whose key names a secret (tokens, API keys); env-var *names* (`*_env`) are kept."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if is_secret_key(k) and v not in (None, "") else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def save_resolved(obj: Any, path: str | os.PathLike) -> None:
    """Write a dataclass (or Config) as YAML with secrets removed, atomically."""
    data = obj.to_dict() if isinstance(obj, Config) else redact(asdict_shallow(obj))
    write_text(path, yaml.safe_dump(data, sort_keys=False))
