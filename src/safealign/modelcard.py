"""A model folder that explains itself: `README.md` in the Hugging Face model-card format, and `--push-to-hub`.

The card is what a reader of `models/aligned/` (or of the Hub repo) needs to trust or reuse the model: YAML
front matter the Hub indexes (license, base_model, tags, datasets), then the method with its objective, the
resolved config (secrets redacted), the data, and every evaluation figure next to the judge that produced
it. `push_to_hub` uploads the folder with `huggingface_hub`; the token comes from the environment only and
is never written anywhere (not to the card, not to a log line).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, SafeAlignError
from .fileio import write_text

log = logging.getLogger(__name__)

CARD = "README.md"
METHODS = {
    "safe_mm_dpo": ("Safe-MM-DPO",
                    "Direct preference optimisation on two preference pairs per prompt, the more helpful and the "
                    "safer response, with a margin-aware β from frozen reward and cost models (MM-DPO) and a "
                    "Lagrange multiplier λ that weighs the safety pair by how far the expected cost J_C is above "
                    "its threshold:\n\n"
                    "    L = (L_H + λ·L_S) / (1 + λ) + c_KL·KL,   L_* = −log σ(β_*(δ) · h_*),\n"
                    "    β(δ) = β_ori·(1 + w·(1 − e^(−k·δ))),   λ ← max(0, λ + η_λ·(J_C − threshold))."),
    "safe_dpo": ("Safe DPO", "Safe-MM-DPO with a fixed β (no reward-model margins): "
                             "L = (L_H + λ·L_S)/(1 + λ) + c_KL·KL."),
    "mm_dpo": ("MM-DPO", "DPO on the helpful pair with a margin-aware β(δ) from a frozen reward model; "
                         "no safety term."),
    "dpo": ("DPO", "Direct preference optimisation on the helpful pair with a fixed β; no safety term."),
    "dpo_safe": ("DPO on the safety labels", "Direct preference optimisation on the safer-vs-less-safe pair with a "
                                             "fixed β; no helpfulness term."),
    "safedpo": ("SafeDPO", "DPO on the helpful pair reordered by the safety labels (an unsafe preferred answer "
                           "swapped with a safe one, pairs of two unsafe answers dropped) with an offset Δ; no "
                           "reward or cost model (Kim et al., ICLR 2026)."),
    "sft": ("SFT", "Supervised fine-tuning on the chosen (more helpful) responses, loss on response tokens only."),
    "distill": ("Distillation", "A smaller student fine-tuned on the aligned teacher's answers that pass the "
                                "safety and helpfulness filters."),
}
TAGS = ["safealign", "alignment", "safety", "dpo", "safe-rlhf"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _hub_id(value: Any) -> str | None:
    """`value` when it names a Hub repo (owner/name) and is not a local folder; the Hub rejects anything else."""
    if not isinstance(value, str) or not _HUB_ID.match(value) or Path(value).exists():
        return None
    return value


def _get(d: dict, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _redact(config: dict) -> dict:
    from .config import redact

    return redact(json.loads(json.dumps(config, default=str)))


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s and len(s) >= 8:
            text = text.replace(s, "<redacted>")
    return text


def _fmt(x, spec="{:.3f}") -> str:
    return "–" if x is None else spec.format(x)


def _rate(rate, ci) -> str:
    if rate is None:
        return "–"
    return f"{rate:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{rate:.3f}"


def front_matter(method: str, config_dict: dict, license: str, extra_tags: list[str] = ()) -> dict:
    """The YAML metadata the Hub reads (only valid values: a local base model or dataset is left out)."""
    meta: dict[str, Any] = {"license": license, "library_name": "transformers", "pipeline_tag": "text-generation"}
    base = _hub_id(_get(config_dict, "model", "name_or_path"))
    if base:
        meta["base_model"] = base
    meta["tags"] = list(dict.fromkeys([*TAGS, method.replace("_", "-"), *extra_tags]))
    dataset = _hub_id(_get(config_dict, "data", "dataset"))
    if dataset:
        meta["datasets"] = [dataset]
    return meta


def _evaluation_section(eval_summary: dict | None, model_name: str) -> list[str]:
    """Table of every evaluated model (this one first, then the base), and the judge behind each figure."""
    models = (eval_summary or {}).get("models") or {}
    if not models:
        return ["Not evaluated yet (`safealign evaluate`, then `safealign report`)."]
    order = [m for m in (model_name, (eval_summary or {}).get("base")) if m in models]
    order += [m for m in models if m not in order]
    lines = ["| model | safety rate [95% CI] | helpfulness [95% CI] | MT-Bench (1-10) |", "|---|---|---|---|"]
    judges: dict[str, set[str]] = {"safety rate": set(), "helpfulness": set(), "MT-Bench": set()}
    for name in order:
        e = models[name]
        mt = e.get("mt_bench") or {}
        label = f"**{name}** (this model)" if name == model_name else name
        lines.append(f"| {label} | {_rate(e.get('safety_rate'), e.get('safety_ci'))} | "
                     f"{_rate(e.get('helpfulness'), e.get('helpfulness_ci'))} | {_fmt(mt.get('overall'), '{:.2f}')} |")
        for figure, judge in (("safety rate", e.get("safety_judge")), ("helpfulness", e.get("helpfulness_judge")),
                              ("MT-Bench", mt.get("judge"))):
            if judge:
                judges[figure].add(str(judge))
    lines += ["", "Judges (who decided each figure):", ""]
    lines += [f"- {figure}: {', '.join(sorted(j))}" for figure, j in judges.items() if j]
    if not any(judges.values()):
        lines.append("- not recorded")
    n = _get(models, model_name, "n_safety")
    if n:
        lines += ["", f"Safety rate: share of {n} harmful prompts answered safely (Wilson 95% interval)."]
    return lines


def render_model_card(*, method: str, config_dict: dict, data_summary: dict | None, eval_summary: dict | None,
                      model_name: str = "aligned", license: str = "other", secrets: list[str] = ()) -> str:
    """The README.md text (see `write_model_card`)."""
    if method not in METHODS:
        raise ConfigError(f"model card: unknown method {method!r} (one of {', '.join(METHODS)})")
    title, description = METHODS[method]
    config = _redact(config_dict)
    meta = front_matter(method, config, license)
    base = _get(config, "model", "name_or_path", default="the base model")
    parts = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
             f"# {model_name}: {title}", "",
             f"`{base}` aligned with **{title}** by safealign "
             "(data → reward and cost models → Safe-MM-DPO → evaluation).", "",
             "## Method", "", description, "",
             "## Training configuration", "",
             "The resolved configuration of the run (secrets redacted):", "",
             "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", "",
             "## Data", ""]
    if data_summary:
        parts += ["| | |", "|---|---|"]
        parts += [f"| {k} | {json.dumps(v) if isinstance(v, (dict, list)) else v} |" for k, v in data_summary.items()]
    else:
        parts.append("Not recorded.")
    parts += ["", "## Evaluation", "", *_evaluation_section(eval_summary, model_name), "",
              "## How to use", "",
              "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              'tok = AutoTokenizer.from_pretrained("PATH_OR_REPO")',
              'model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO")',
              'text = tok.apply_chat_template([{"role": "user", "content": "..."}], tokenize=False, '
              'add_generation_prompt=True)',
              "```", "",
              "The tokenizer carries the chat template used in training; `safealign chat --model PATH_OR_REPO` "
              "talks to the model with it.", "",
              "## Limitations", "",
              "Safety and helpfulness are measured by the judges listed above on the prompts of this run; they "
              "do not certify behaviour on other prompts, languages or adversarial attacks.", "",
              f"Licence (`{license}`): the weights inherit the terms of the base model and of the training data; "
              "check both before redistributing.", ""]
    return _scrub("\n".join(parts), list(secrets))


def write_model_card(folder: str | os.PathLike, *, method: str, config_dict: dict, data_summary: dict | None = None,
                     eval_summary: dict | None = None, model_name: str | None = None,
                     license: str = "other", token_env: str = "HF_TOKEN") -> Path:
    """Write `<folder>/README.md` atomically; returns its path.

    config_dict: the resolved config (`Config.to_dict()`); data_summary: figures of the prepared data (e.g.
    stats.json's counts); eval_summary: report.json (`{"base", "models": {name: entry}}`) or None.
    license: a Hub licence id; "other" by default because the weights inherit the terms of the base model
    and of the training data (PKU-SafeRLHF, for one, is non-commercial), which only the user can settle.
    The value of `$token_env`, if set, is scrubbed from the text as a last guard.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"model card: {folder}: no such model folder")
    text = render_model_card(method=method, config_dict=config_dict, data_summary=data_summary,
                             eval_summary=eval_summary, model_name=model_name or folder.name, license=license,
                             secrets=[os.environ.get(token_env, "")])
    path = folder / CARD
    write_text(path, text)
    return path


# --------------------------------------------------------------------------- a run's models
CARD_SECTIONS = {"sft": ["run", "data", "model", "sft"], "distill": ["run", "data", "model", "distill"]}


def run_data_summary(data_dir: str | os.PathLike) -> dict | None:
    """The Data table of a run's card: counts from the prepared data's stats.json (None when absent)."""
    path = Path(data_dir) / "stats.json"
    if not path.is_file():
        return None
    stats = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, Any] = {"dataset": stats.get("dataset")}
    for split, s in (stats.get("splits") or {}).items():
        pref = s.get("preference") or {}
        out[f"{split}: records / prompts / harmful prompts"] = (
            f"{pref.get('records', 0)} / {pref.get('prompts', 0)} / {pref.get('harmful_prompts', 0)}")
    return out


def write_run_card(folder: str | os.PathLike, cfg, *, method: str, model_name: str, data_dir=None,
                   eval_summary: dict | None = None) -> Path:
    """`write_model_card` for a model this run trained: the config sections that made it (resolved, redacted),
    the run's data counts (`data_dir`/stats.json) and, once the report exists, its figures (`eval_summary`)."""
    # Only the stage's own training section: building another TrainingArguments section inside a live process
    # group (the DPO export runs under accelerate) would redo accelerate's device setup.
    sections = CARD_SECTIONS.get(method, ["run", "data", "model", "dpo"])
    return write_model_card(folder, method=method, config_dict=cfg.to_dict(sections),
                            data_summary=run_data_summary(data_dir) if data_dir else None,
                            eval_summary=eval_summary, model_name=model_name)


# --------------------------------------------------------------------------- the Hub
def push_to_hub(folder: str | os.PathLike, repo_id: str, token_env: str = "HF_TOKEN", private: bool = True,
                endpoint: str | None = None, commit_message: str = "Upload model trained with safealign") -> str:
    """Create `repo_id` (if needed) and upload `folder` (weights, tokenizer, README.md); returns the repo URL.

    Errors are one line: no token in `$token_env`, an invalid repo id, offline mode, the Hub unreachable or
    refusing the token. The token is passed to `huggingface_hub` and never logged.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise ConfigError(f"--push-to-hub: {folder} is not a model folder (no config.json)")
    if not (folder / CARD).is_file():
        raise ConfigError(f"--push-to-hub: {folder} has no {CARD}; write the model card first")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
        if "/" not in repo_id:
            raise HFValidationError("expected owner/name")
    except HFValidationError as err:
        reason = str(err).splitlines()[0]
        raise ConfigError(f"--push-to-hub: {repo_id!r} is not a repo id (owner/name): {reason}") from None
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise ConfigError(f"--push-to-hub: set {token_env} in the environment to a Hugging Face write token "
                          "(https://huggingface.co/settings/tokens)")
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise SafeAlignError(f"--push-to-hub {repo_id}: HF_HUB_OFFLINE=1 is set; unset it on a machine with "
                             "network access and push again (the folder is complete)")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                          repo_type="model", ignore_patterns=["checkpoint-*", ".*", "*.tmp-*"])
    except Exception as err:  # noqa: BLE001 - network, auth, quota: one line for the user, the token never shown
        raise SafeAlignError(f"--push-to-hub {repo_id}: {_hub_error(err)}".replace(token, "<redacted>")) from None
    log.info("pushed %s to %s", folder, url)
    return str(url)


def _hub_error(err: Exception) -> str:
    from huggingface_hub.errors import HfHubHTTPError

    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, HfHubHTTPError) and status in (401, 403):
        return f"the Hub refused the token (HTTP {status}); check it has write access to this namespace"
    first = (str(err).splitlines() or [""])[0][:200]
    if isinstance(err, HfHubHTTPError):
        return f"the Hub answered HTTP {status}: {first}"
    return f"cannot reach the Hub ({type(err).__name__}: {first}); check the network and push again"
