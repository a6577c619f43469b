"""Helpers for the distillation end-to-end test: the teacher's safe-answer set, tiny reward models
trained with the project's losses, and toy-world safety/helpfulness rates (ToyJudge) of a model."""

from __future__ import annotations

import random
from pathlib import Path

import torch


def teacher_examples(rows: list[dict]) -> list[dict]:
    """The teacher learns safe behaviour: the safer answer to a harmful prompt (when safe), the more helpful
    answer to a benign prompt."""
    out = []
    for r in rows:
        if r["is_harmful_prompt"]:
            i = r["safer_response_id"]
            if r[f"is_response_{i}_safe"]:
                out.append({"prompt": r["prompt"], "response": r[f"response_{i}"]})
        else:
            i = r["better_response_id"]
            out.append({"prompt": r["prompt"], "response": r[f"response_{i}"]})
    return out


def train_tiny_rm(base_path, rows: list[dict], dimension: str, out_dir, epochs: int = 2, lr: float = 2e-3,
                  batch: int = 32, seed: int = 0) -> Path:
    """A score model on the base, trained with the pairwise ranking loss (helpful) or the cost ranking +
    sign losses (harmless), saved with save_pretrained so `rm.scoring.load_scorer` reads it."""
    from safealign.chat import encode_pair
    from safealign.losses import cost_ranking_loss, cost_sign_loss, pairwise_ranking_loss
    from safealign.models.loading import load_score_model, load_tokenizer
    from safealign.rm.modeling import pad_right, sequence_scores

    tok = load_tokenizer(str(base_path))
    model = load_score_model(str(base_path), dtype="float32", pad_token_id=tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    pairs = []
    for r in rows:
        key = "better_response_id" if dimension == "helpful" else "safer_response_id"
        w = r[key]
        enc = [encode_pair(tok, r["prompt"], r[f"response_{i}"], max_length=128)["input_ids"] for i in (w, 1 - w)]
        unsafe = [0 if r[f"is_response_{i}_safe"] else 1 for i in (w, 1 - w)]
        pairs.append((enc, unsafe))
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.train()
    for _ in range(epochs):
        rng.shuffle(pairs)
        for start in range(0, len(pairs), batch):
            chunk = pairs[start:start + batch]
            ids, mask = pad_right([p[0][0] for p in chunk] + [p[0][1] for p in chunk], tok.pad_token_id)
            scores = sequence_scores(model, ids, mask)
            a, b = scores[: len(chunk)], scores[len(chunk):]
            if dimension == "helpful":
                loss = pairwise_ranking_loss(a, b).mean()
            else:  # a = safer, b = less safe; c > 0 means unsafe
                labels = torch.tensor([p[1][0] for p in chunk] + [p[1][1] for p in chunk])
                loss = cost_ranking_loss(b, a).mean() + cost_sign_loss(scores, labels).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir


def toy_rates(model_path, rows: list[dict], max_new_tokens: int = 40) -> dict:
    """Safety rate on the harmful prompts and helpfulness on the benign prompts of `rows` (greedy answers)."""
    from safealign.toy import ToyJudge
    from safealign.generation import generate, release

    judge = ToyJudge()
    prompts = sorted({r["prompt"] for r in rows})
    harmful = [p for p in prompts if judge.is_harmful_prompt(p)]
    benign = [p for p in prompts if not judge.is_harmful_prompt(p)]
    answers = generate(str(model_path), harmful + benign, max_new_tokens=max_new_tokens, batch_size=32,
                       show_progress=False)
    release()
    a_h, a_b = answers[: len(harmful)], answers[len(harmful):]
    return {"safety_rate": sum(judge.is_safe(p, a) for p, a in zip(harmful, a_h)) / max(1, len(harmful)),
            "helpfulness": sum(judge.is_helpful(p, a) for p, a in zip(benign, a_b)) / max(1, len(benign)),
            "harmful_prompts": len(harmful), "benign_prompts": len(benign),
            "example": (harmful[:1] + a_h[:1] + benign[:1] + a_b[:1])}
