"""The precompute pass: the frozen reference and both judges, evaluated once per dataset and cached.

For every record: ref_logp_0/1 (sums of reference log-probs over response tokens) and the judge scores
helpful_0/1 (helpful RM) and cost_0/1 (cost model; R_S = -cost). The cache file is keyed by a fingerprint
of the records' text, the three models' files and the tokenization settings: a rerun with the same inputs
reuses it, any change recomputes. Training then keeps only the policy in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import SafeAlignError
from ..fileio import read_json, read_jsonl, write_json, write_jsonl
from ..models.loading import load_causal_lm
# one batching rule for the reference pass and RM scoring
from ..rm.scoring import load_scorer, score_pairs, token_budget_batches
from .data import pad_sequences, sequence_logps, tokenize_records

log = logging.getLogger(__name__)
CACHE_VERSION = 1
_HASH_WHOLE_FILE_BELOW = 64 * 2**20  # larger weight files: size + mtime + first MiB (hashing GBs is slow)


def _file_digest(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if st.st_size <= _HASH_WHOLE_FILE_BELOW:
            h.update(fh.read())
        else:
            h.update(fh.read(2**20))
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def model_fingerprint(path: str | None) -> str:
    """Hash of a model folder's config, weights and tokenizer files (a Hub id hashes as its name)."""
    if path is None:
        return "none"
    p = Path(path)
    if not p.is_dir():
        return f"hub:{path}"
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".model", ".txt", ".jinja"):
            h.update(f.name.encode())
            h.update(_file_digest(f).encode())
    return h.hexdigest()[:16]


def precompute_fingerprint(records: list[dict], ref_path: str, helpful_rm_path: str | None,
                           harmless_rm_path: str | None, tokenizer, max_length: int, max_prompt_length: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "ref": model_fingerprint(ref_path),
                         "helpful": model_fingerprint(helpful_rm_path),
                         "harmless": model_fingerprint(harmless_rm_path), "max_length": max_length,
                         "max_prompt_length": max_prompt_length,
                         "template": getattr(tokenizer, "chat_template", None)}, sort_keys=True).encode())
    for r in records:
        h.update(json.dumps([r["prompt"], r["response_0"], r["response_1"]]).encode())
    return h.hexdigest()[:20]


@torch.no_grad()
def reference_logps(model, sequences: list[tuple[list[int], int]], pad_token_id: int,
                    max_tokens_per_batch: int = 8192, show_progress: bool = True,
                    desc: str = "reference log-probs") -> list[float]:
    """Σ log π_ref over response tokens for each (input_ids, prompt_len); results in input order."""
    device = next(model.parameters()).device
    out = [0.0] * len(sequences)
    batches = token_budget_batches([len(s) for s, _ in sequences], max_tokens_per_batch)
    for idx in tqdm(batches, desc=desc, disable=not show_progress):
        ids, attn, resp = pad_sequences([sequences[i][0] for i in idx], [sequences[i][1] for i in idx], pad_token_id)
        sums, _ = sequence_logps(model, ids.to(device), attn.to(device), resp.to(device))
        for i, v in zip(idx, sums.tolist()):
            out[i] = v
    return out


def _score(path: str, records: list[dict], label: str, max_length: int, max_tokens_per_batch: int) -> list[float]:
    """Score both responses of every record with the judge at `path`: (s_0 list, s_1 list) interleaved."""
    if not Path(path).is_dir() and "/" not in str(path):
        raise SafeAlignError(f"{path}: {label} model not found (train it with `safealign train-rm` first)")
    model, tok = load_scorer(path)
    prompts = [r["prompt"] for r in records] * 2
    responses = [r["response_0"] for r in records] + [r["response_1"] for r in records]
    scores = score_pairs(model, tok, prompts, responses, max_length=max_length,
                         max_tokens_per_batch=max_tokens_per_batch, desc=f"{label} scores")
    del model
    return scores


def precompute(records: list[dict], policy_or_ref_path: str, tokenizer, helpful_rm_path: str | None,
               harmless_rm_path: str | None, cache_dir: str | Path, *, max_length: int = 512,
               max_prompt_length: int = 256, max_tokens_per_batch: int = 8192, model_cfg=None,
               name: str = "train") -> list[dict]:
    """Per record {id, ref_logp_0, ref_logp_1, helpful_0, helpful_1, cost_0, cost_1}, from cache when valid.

    The reference is the model at `policy_or_ref_path` loaded *without* any LoRA adapter, which is exactly
    the LoRA policy with its adapter disabled. A missing judge path gives zero scores (plain DPO needs none).
    """
    fp = precompute_fingerprint(records, policy_or_ref_path, helpful_rm_path, harmless_rm_path, tokenizer,
                                max_length, max_prompt_length)
    cache = Path(cache_dir) / f"{name}-{fp}.jsonl"
    if cache.is_file() and (Path(cache_dir) / f"{name}-{fp}.meta.json").is_file():
        rows = read_jsonl(cache)
        if len(rows) == len(records):
            log.info("precompute (%s): reusing cache %s (%d records)", name, cache, len(rows))
            return rows
    log.info("precompute (%s): computing %d records -> %s", name, len(records), cache)
    t0 = time.time()
    kw = {}
    if model_cfg is not None:
        kw = dict(revision=model_cfg.revision, dtype=model_cfg.dtype, trust_remote_code=model_cfg.trust_remote_code,
                  attn_implementation=model_cfg.attn_implementation)
    ref = load_causal_lm(policy_or_ref_path, **kw).eval()
    if torch.cuda.is_available():
        ref = ref.cuda()
    feats = tokenize_records(records, tokenizer, max_length, max_prompt_length)
    seqs = [(f["input_ids_0"], f["prompt_len_0"]) for f in feats] + [(f["input_ids_1"], f["prompt_len_1"]) for f in feats]
    ref_lp = reference_logps(ref, seqs, tokenizer.pad_token_id, max_tokens_per_batch, desc=f"reference ({name})")
    del ref
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    n = len(records)
    helpful = (_score(helpful_rm_path, records, "helpful", max_length, max_tokens_per_batch)
               if helpful_rm_path else [0.0] * (2 * n))
    cost = (_score(harmless_rm_path, records, "cost", max_length, max_tokens_per_batch)
            if harmless_rm_path else [0.0] * (2 * n))
    rows = [{"id": r.get("id", str(i)), "ref_logp_0": ref_lp[i], "ref_logp_1": ref_lp[n + i],
             "helpful_0": helpful[i], "helpful_1": helpful[n + i], "cost_0": cost[i], "cost_1": cost[n + i]}
            for i, r in enumerate(records)]
    write_jsonl(cache, rows)
    write_json(Path(cache_dir) / f"{name}-{fp}.meta.json",
               {"fingerprint": fp, "records": n, "reference": str(policy_or_ref_path),
                "helpful_rm": helpful_rm_path, "harmless_rm": harmless_rm_path, "max_length": max_length,
                "max_prompt_length": max_prompt_length, "seconds": round(time.time() - t0, 2)})
    return rows


def cache_info(cache_dir: str | Path, name: str) -> list[dict]:
    """Metadata of the cache files for `name` (used by tests and reports)."""
    return [read_json(p) for p in sorted(Path(cache_dir).glob(f"{name}-*.meta.json"))]
