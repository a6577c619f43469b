"""What the GPU dry run runs on: a random Mistral-7B-shaped model and PKU-SafeRLHF-sized synthetic data whose
token lengths follow the real rows' (benchmarks/real_lengths.json).

- `real_lengths.json` holds only numbers: the Mistral-7B-v0.1 token counts of the prompts and responses of the
  real rows in ../shared/data/real (10 PKU-SafeRLHF 2024 rows, Alpaca-7B answers; 140 BeaverTails 30k-train
  rows, Alpaca-7B answers), measured by `measure_lengths` (`python benchmarks/dryrun_data.py TOKENIZER_DIR`).
  No text is kept.
- `synthetic_rows` writes rows in the PKU-SafeRLHF 2024 schema (19 harm categories, severity 0-3, sources
  `dryrun-synthetic`, the dataset's own sha256(prompt + response) hashes) whose prompt and response lengths are
  drawn from those counts; the words are the toy world's, so the text means nothing.
- `build_model` builds the random model: `MistralConfig()` defaults are Mistral-7B-v0.1's shape (32 layers,
  hidden 4096, 32 heads / 8 KV heads, MLP 14336, vocabulary 32000, untied head: 7.24 B parameters), built on
  the GPU in bf16 (about a second) and saved as safetensors, like the Hub's folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LENGTHS = HERE / "real_lengths.json"
PKU_CATEGORIES = ["Endangering National Security", "Insulting Behavior", "Discriminatory Behavior",
                  "Endangering Public Health", "Copyright Issues", "Violence", "Drugs", "Privacy Violation",
                  "Economic Crime", "Mental Manipulation", "Human Trafficking", "Physical Harm", "Sexual Content",
                  "Cybercrime", "Disrupting Public Order", "Environmental Damage", "Psychological Harm",
                  "White-Collar Crime", "Animal Abuse"]
SOURCE = "dryrun-synthetic"


def measure_lengths(shared: Path, tokenizer, out: Path = LENGTHS) -> dict:
    """Token counts (no special tokens; SentencePiece's word-initial "▁" counted as inside a sentence)."""
    import csv

    def n(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    pku = [json.loads(x) for x in (shared / "pku_saferlhf" / "pku_saferlhf_2024_alpaca7b_test_first10.jsonl")
           .read_text(encoding="utf-8").splitlines() if x.strip()]
    with open(shared / "beavertails" / "beavertails_30k_train_sample140.csv", encoding="utf-8", newline="") as fh:
        bt = list(csv.DictReader(fh))
    res = {"tokenizer": "Mistral-7B-v0.1 (mistral-common tokenizer.model.v1)",
           "sources": ["PKU-SafeRLHF 2024 Alpaca-7B test rows 1-10 (10 prompts, 20 responses)",
                       "BeaverTails 30k_train sample of 140 rows (Alpaca-7B responses)"],
           "prompt_tokens": [n(r["prompt"]) for r in pku] + [n(r["prompt"]) for r in bt],
           "response_tokens": [n(r[f"response_{i}"].strip()) for r in pku for i in (0, 1)]
           + [n(r["response"].strip()) for r in bt]}
    out.write_text(json.dumps(res, indent=None) + "\n", encoding="utf-8")
    return res


def _word_pool(tokenizer) -> tuple[list[str], list[int]]:
    from safealign.toy import generate_toy_world, toy_corpus

    words = sorted({w for text in toy_corpus(generate_toy_world(num_pairs=400, seed=0))
                    for w in text.replace("<s>", " ").replace("</s>", " ").split() if w.isalpha()})
    # a word's tokens inside a sentence: SentencePiece would add a lone "▁" to a word tokenized on its own
    base = len(tokenizer("so", add_special_tokens=False)["input_ids"])
    return words, [len(tokenizer("so " + w, add_special_tokens=False)["input_ids"]) - base for w in words]


class TextMaker:
    """Text of about `n` Mistral tokens: toy-world words whose token counts (each measured inside a sentence)
    add up to n."""

    def __init__(self, tokenizer, seed: int = 0):
        self.words, self.cost = _word_pool(tokenizer)
        self.mean = sum(self.cost) / len(self.cost)
        self.rng = random.Random(seed)

    def text(self, n: int) -> str:
        idx = self.rng.choices(range(len(self.words)), k=max(1, math.ceil(n / self.mean)))
        total = sum(self.cost[i] for i in idx)
        while total > n and len(idx) > 1:
            total -= self.cost[idx.pop()]
        while total < n:
            i = self.rng.randrange(len(self.words))
            idx.append(i)
            total += self.cost[i]
        return " ".join(self.words[i] for i in idx)


def synthetic_rows(n: int, tokenizer, seed: int = 0, lengths: dict | None = None):
    """`n` PKU-SafeRLHF 2024 rows (a generator) with real-distributed prompt and response lengths."""
    lengths = lengths or json.loads(LENGTHS.read_text())
    rng = random.Random(seed)
    maker = TextMaker(tokenizer, seed)
    for i in range(n):
        prompt = f"{i}: " + maker.text(rng.choice(lengths["prompt_tokens"]))  # distinct prompts, as PKU's mostly are
        responses = [maker.text(rng.choice(lengths["response_tokens"])) for _ in (0, 1)]
        safe = [rng.random() < 0.55, rng.random() < 0.55]
        row = {"prompt": prompt, "response_0": responses[0], "response_1": responses[1],
               "prompt_source": SOURCE, "response_0_source": SOURCE, "response_1_source": SOURCE}
        for j in (0, 1):
            flagged = set() if safe[j] else set(rng.sample(PKU_CATEGORIES, rng.choice((1, 1, 2))))
            row[f"is_response_{j}_safe"] = safe[j]
            row[f"response_{j}_harm_category"] = {c: c in flagged for c in PKU_CATEGORIES}
            row[f"response_{j}_severity_level"] = 0 if safe[j] else rng.choice((1, 2, 3))
            row[f"response_{j}_sha256"] = hashlib.sha256((prompt + responses[j]).encode("utf-8")).hexdigest()
        row["safer_response_id"] = safe.index(True) if safe.count(True) == 1 else rng.randrange(2)
        row["better_response_id"] = rng.randrange(2)
        yield row


def eval_prompts(n: int, tokenizer, seed: int = 1, lengths: dict | None = None) -> list[dict]:
    """`n` safety prompts ({prompt, category}) with real-distributed lengths, for `eval.safety_prompts`."""
    lengths = lengths or json.loads(LENGTHS.read_text())
    rng, maker = random.Random(seed), TextMaker(tokenizer, seed)
    return [{"prompt": maker.text(rng.choice(lengths["prompt_tokens"])), "category": rng.choice(PKU_CATEGORIES)}
            for _ in range(n)]


def write_jsonl(path: Path, rows) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    k = 0
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
            k += 1
    return k


def build_model(out: Path, tokenizer, tiny: bool, seed: int = 0) -> dict:
    """The random base model, saved with its tokenizer; returns {params, build_s, save_s, dtype, device}."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2) if tiny else {}
    config = MistralConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, **shape)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = MistralForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    if device == "cuda":
        torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info = {"params": sum(p.numel() for p in model.parameters()), "build_s": round(build_s, 2),
            "save_s": round(time.perf_counter() - t0, 2), "dtype": str(dtype).replace("torch.", ""),
            "device": device, "layers": config.num_hidden_layers, "hidden": config.hidden_size,
            "vocab": config.vocab_size}
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return info


if __name__ == "__main__":  # python benchmarks/dryrun_data.py TOKENIZER_DIR [SHARED_REAL_DIR]: real_lengths.json
    import statistics
    import sys

    sys.path.insert(0, str(HERE.parent / "src"))
    from safealign.models.loading import load_tokenizer

    shared = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE.parents[1] / "shared" / "data" / "real"
    res = measure_lengths(shared, load_tokenizer(sys.argv[1]))
    for key in ("prompt_tokens", "response_tokens"):
        print(key, len(res[key]), "mean", round(statistics.mean(res[key]), 1), "max", max(res[key]))
