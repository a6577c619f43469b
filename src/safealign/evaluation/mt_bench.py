"""MT-Bench in FastChat's formats: two-turn answers, single-answer grading by an OpenAI-compatible judge.

Follows FastChat's `gen_model_answer.py` / `gen_judgment.py` / `show_result.py` (llm_judge):
- answers: turn 1, then turn 2 with the model's own first answer in the conversation, at FastChat's
  per-category temperatures (`TEMPERATURE`); written as `model_answer/<model>.jsonl`
  ({question_id, answer_id, model_id, choices: [{index, turns}], tstamp});
- judging: `single-v1` (turn 1) and `single-v1-multi-turn` (turn 2); questions in math, reasoning and coding
  use the reference-based `single-math-v1[-multi-turn]` prompts; system prompt + filled template sent at
  temperature 0; ratings read with `[[x]]`, then `[x]`, else -1 (unparsable, counted and reported);
  written as `model_judgment/<judge>_single.jsonl` ({question_id, model, judge: [judge, prompt name],
  user_prompt, judgment, score, turn, tstamp});
- scores: means over parsable ratings, overall, per turn and per category -> `mt_bench.json`, radar PNG.

Every judgment is cached (`cache/mt_bench_judgments.jsonl`, key = question, turn, model, judge, prompt):
a rerun or a resumed run sends no request twice.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
import time
import uuid
from collections import defaultdict
from pathlib import Path

import datasets

from ..errors import DataError, SafeAlignError
from ..fileio import JsonlCache, read_jsonl, write_json, write_jsonl
from ..generation import generate
from .openai_client import ChatClient, ask_all
from .plots import radar_chart

log = logging.getLogger(__name__)

# FastChat llm_judge/common.py
TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
               "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
SINGLE_PROMPTS = ("single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn")
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


# --------------------------------------------------------------------------- inputs
def load_questions(source: str, split: str = "train") -> list[dict]:
    """FastChat question.jsonl (or a Hub dataset with the same fields): question_id, category, turns[2]."""
    if Path(source).is_file():
        rows = read_jsonl(source)
    else:
        try:
            rows = list(datasets.load_dataset(source, split=split))
        except Exception as err:  # noqa: BLE001 - offline / unknown id: one line for the user
            raise SafeAlignError(f"eval.mt_bench_questions: cannot load {source!r} "
                                 f"({str(err).splitlines()[0][:200]})") from None
    for i, q in enumerate(rows, 1):
        for field in ("question_id", "category", "turns"):
            if field not in q:
                raise DataError(source, i, field, "missing")
        if not isinstance(q["turns"], list) or not 1 <= len(q["turns"]) <= 2 or not all(
                isinstance(t, str) for t in q["turns"]):
            raise DataError(source, i, "turns", "expected a list of one or two strings")
    return rows


def load_judge_prompts(path: str) -> dict[str, dict]:
    prompts = {}
    for i, row in enumerate(read_jsonl(path), 1):
        for field in ("name", "system_prompt", "prompt_template", "output_format"):
            if field not in row:
                raise DataError(path, i, field, "missing")
        prompts[row["name"]] = row
    missing = [n for n in SINGLE_PROMPTS if n not in prompts]
    if missing:
        raise DataError(path, None, "name", f"judge prompts {missing} are missing")
    return prompts


def load_reference_answers(path: str | None) -> dict:
    if not path:
        return {}
    refs = {}
    for i, row in enumerate(read_jsonl(path), 1):
        try:
            refs[row["question_id"]] = row["choices"][0]["turns"]
        except (KeyError, IndexError, TypeError):
            raise DataError(path, i, "choices", "expected choices[0].turns") from None
    return refs


# --------------------------------------------------------------------------- answers
def generate_answers(model_path, name: str, questions: list[dict], cfg, model_dir: Path) -> list[dict]:
    """Two-turn answers in FastChat's model_answer format, grouped by temperature for batching."""
    cache = model_dir / "cache" / "generation.jsonl"
    turns: dict[int, list[str]] = {q["question_id"]: [] for q in questions}
    n_turns = max(len(q["turns"]) for q in questions)
    for t in range(n_turns):
        groups: dict[float, list[dict]] = defaultdict(list)
        for q in questions:
            if len(q["turns"]) > t:
                groups[TEMPERATURE.get(q["category"], 0.7)].append(q)
        for temp, qs in sorted(groups.items()):
            convs = []
            for q in qs:
                msgs = []
                for j in range(t):  # the model's own earlier answers, as FastChat builds the conversation
                    msgs += [{"role": "user", "content": q["turns"][j]},
                             {"role": "assistant", "content": turns[q["question_id"]][j]}]
                convs.append(msgs + [{"role": "user", "content": q["turns"][t]}])
            outs = generate(model_path, convs, max_new_tokens=cfg.mt_bench_max_new_tokens, temperature=temp,
                            top_p=1.0, seed=cfg.seed, batch_size=cfg.batch_size, cache_path=cache,
                            backend=cfg.backend, desc=f"{name}: MT-Bench turn {t + 1} (T={temp})")
            for q, out in zip(qs, outs):
                turns[q["question_id"]].append(out)
    now = time.time()
    return [{"question_id": q["question_id"], "answer_id": _answer_id(name, q["question_id"], turns[q["question_id"]]),
             "model_id": name, "choices": [{"index": 0, "turns": turns[q["question_id"]]}], "tstamp": now}
            for q in questions]


def _answer_id(name, qid, turns) -> str:
    # shortuuid-like, but stable: the same answers keep the same id across reruns
    return uuid.uuid5(uuid.NAMESPACE_URL, json.dumps([name, qid, turns])).hex[:22]


# --------------------------------------------------------------------------- judging
def judge_tasks(questions, answers, refs, judge_prompts, model: str) -> list[dict]:
    """One task per (question, turn): the judge prompt filled exactly as FastChat's run_judge_single."""
    by_id = {a["question_id"]: a for a in answers}
    tasks = []
    for q in questions:
        ans = by_id[q["question_id"]]["choices"][0]["turns"]
        ref = refs.get(q["question_id"])
        math = q["category"] in NEED_REF_CATS
        if math and ref is None:
            log.warning("MT-Bench: question %s (%s) has no reference answer; using the general judge prompt",
                        q["question_id"], q["category"])
            math = False
        for turn in (1, 2):
            if turn > len(q["turns"]):
                continue
            name = ("single-math-v1" if math else "single-v1") + ("-multi-turn" if turn == 2 else "")
            tasks.append({"question_id": q["question_id"], "category": q["category"], "turn": turn, "model": model,
                          "prompt_name": name, "system_prompt": judge_prompts[name]["system_prompt"],
                          "user_prompt": fill_judge_prompt(judge_prompts[name], q, ans, ref, multi_turn=turn == 2)})
    return tasks


def fill_judge_prompt(prompt: dict, question: dict, answer_turns: list[str], ref_turns: list[str] | None,
                      multi_turn: bool) -> str:
    kwargs = {}
    if ref_turns is not None:
        kwargs["ref_answer_1"] = ref_turns[0]
        if multi_turn:
            kwargs["ref_answer_2"] = ref_turns[1]
    if multi_turn:
        return prompt["prompt_template"].format(question_1=question["turns"][0], question_2=question["turns"][1],
                                                answer_1=answer_turns[0], answer_2=answer_turns[1], **kwargs)
    return prompt["prompt_template"].format(question=question["turns"][0], answer=answer_turns[0], **kwargs)


def parse_rating(judgment: str) -> float:
    """FastChat's rule: the first `[[x]]`, else the first `[x]`, else -1 (unparsable)."""
    match = ONE_SCORE.search(judgment or "") or ONE_SCORE_BACKUP.search(judgment or "")
    if not match:
        return -1
    try:
        return ast.literal_eval(match.groups()[0])
    except (ValueError, SyntaxError):  # e.g. "[[7.]]" parses; "[[1.2.3]]" cannot match the pattern
        return -1


def task_key(task: dict, judge_model: str) -> str:
    blob = json.dumps([task["question_id"], task["turn"], task["model"], judge_model, task["prompt_name"],
                       task["system_prompt"], task["user_prompt"]])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def run_judgments(tasks: list[dict], client, judge_model: str, cache_path: Path, concurrency: int = 8,
                  max_tokens: int = 2048, show_progress: bool = True) -> list[dict]:
    """Judge every task (cached ones are not sent again); returns FastChat judgment rows in task order.

    A task whose requests fail for good is left out of the cache and reported in one error after all others
    are done: a rerun sends only those.
    """
    cache = JsonlCache(cache_path)
    keys = [task_key(t, judge_model) for t in tasks]
    todo = {k: (client, t, max_tokens) for k, t in zip(keys, tasks) if k not in cache}
    log.info("MT-Bench judge: %d judgments, %d cached, %d to request", len(tasks), len(tasks) - len(todo), len(todo))
    _, errors = ask_all(_judge_one, todo, cache, concurrency=concurrency, desc=f"judging ({judge_model})",
                        show_progress=show_progress)
    if errors:
        key, err = errors[0]
        t = todo[key][1]
        raise SafeAlignError(f"MT-Bench judge: {len(errors)} of {len(todo)} judgments failed (finished ones are "
                             f"cached; rerun to resume). First: question {t['question_id']} turn {t['turn']}: {err}")
    rows = []
    for k, t in zip(keys, tasks):
        hit = cache.get(k)
        rows.append({"question_id": t["question_id"], "model": t["model"], "judge": [judge_model, t["prompt_name"]],
                     "user_prompt": t["user_prompt"], "judgment": hit["judgment"],
                     "score": parse_rating(hit["judgment"]), "turn": t["turn"], "tstamp": hit["tstamp"]})
    return rows


def _judge_one(client, task: dict, max_tokens: int) -> str:
    messages = [{"role": "system", "content": task["system_prompt"]}, {"role": "user", "content": task["user_prompt"]}]
    return client.chat(messages, temperature=0.0, max_tokens=max_tokens)


# --------------------------------------------------------------------------- scores
def aggregate(rows: list[dict], categories: dict) -> dict:
    """FastChat show_result's means (score -1 left out), plus per category and the unparsable count."""
    valid = [r for r in rows if r["score"] != -1]

    def mean(xs):
        xs = list(xs)
        return sum(xs) / len(xs) if xs else None

    per_turn = {str(t): mean(r["score"] for r in valid if r["turn"] == t) for t in sorted({r["turn"] for r in rows})}
    cats = sorted({categories[r["question_id"]] for r in rows})
    return {
        "overall": mean(r["score"] for r in valid),
        "per_turn": per_turn,
        "per_category": {c: mean(r["score"] for r in valid if categories[r["question_id"]] == c) for c in cats},
        "n_judgments": len(rows), "n_scored": len(valid), "n_unparsable": len(rows) - len(valid),
        "unparsable": [{"question_id": r["question_id"], "turn": r["turn"]} for r in rows if r["score"] == -1],
    }


def judge_file_name(judge_model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", judge_model) + "_single.jsonl"


def evaluate_mt_bench(cfg, name: str, model_path, out_dir: Path, client=None) -> dict:
    """Answers, judgments, scores and the radar chart for one model; returns mt_bench.json."""
    if not cfg.mt_bench_questions or not cfg.mt_bench_judge_prompts:
        raise SafeAlignError("eval.mt_bench_questions / eval.mt_bench_judge_prompts: set both to run MT-Bench "
                             "(FastChat's question.jsonl and judge_prompts.jsonl)")
    model_dir = Path(out_dir) / name
    questions = load_questions(cfg.mt_bench_questions, cfg.mt_bench_questions_split)
    if cfg.mt_bench_max_questions:
        questions = questions[: cfg.mt_bench_max_questions]
    judge_prompts = load_judge_prompts(cfg.mt_bench_judge_prompts)
    refs = load_reference_answers(cfg.mt_bench_reference_answers)
    answers = generate_answers(model_path, name, questions, cfg, model_dir)
    write_jsonl(model_dir / "mt_bench" / "model_answer" / f"{name}.jsonl", answers)
    client = client or ChatClient(cfg.mt_bench_judge_base_url, cfg.mt_bench_judge_model, cfg.mt_bench_api_key_env,
                                  timeout=cfg.judge_timeout, max_retries=cfg.judge_max_retries)
    tasks = judge_tasks(questions, answers, refs, judge_prompts, name)
    rows = run_judgments(tasks, client, cfg.mt_bench_judge_model, model_dir / "cache" / "mt_bench_judgments.jsonl",
                         concurrency=cfg.judge_concurrency, max_tokens=cfg.mt_bench_judge_max_tokens)
    write_jsonl(model_dir / "mt_bench" / "model_judgment" / judge_file_name(cfg.mt_bench_judge_model), rows)
    result = aggregate(rows, {q["question_id"]: q["category"] for q in questions})
    result.update(model=name, judge=cfg.mt_bench_judge_model, judge_base_url=cfg.mt_bench_judge_base_url,
                  n_questions=len(questions),
                  requests={"sent": client.requests, "retries": client.retries, "failures": client.failures})
    if result["n_unparsable"]:
        log.warning("MT-Bench %s: %d judgments had no parsable rating (score -1, left out of the means)",
                    name, result["n_unparsable"])
    radar_chart({name: result["per_category"]}, model_dir / "mt_bench_radar.png", title=f"MT-Bench: {name}")
    write_json(model_dir / "mt_bench.json", result)
    return result
