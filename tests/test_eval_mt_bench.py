"""MT-Bench: FastChat prompt filling and rating parsing, and the judge protocol against a real HTTP server on
127.0.0.1 (retries on 429/500, malformed bodies and ratings, the judgment cache, resume after a failure)."""

import json
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers.openai_server import OpenAIServer  # noqa: E402

from safealign.errors import SafeAlignError  # noqa: E402
from safealign.evaluation import mt_bench as mb  # noqa: E402
from safealign.evaluation.openai_client import ChatClient, JudgeRequestError  # noqa: E402
from safealign.fileio import read_jsonl  # noqa: E402


@pytest.mark.parametrize("text,score", [
    ("Rating: [[7]]", 7), ("[[8.5]]", 8.5), ("first [[3]] then [[9]]", 3), ("Rating: [6]", 6),
    ("[5] but finally [[4]]", 4),  # [[x]] wins over an earlier [x], as in FastChat
    ("Rating: 7/10", -1), ("", -1), (None, -1), ("[[seven]]", -1), ("[[10]]", 10), ("[[ 7 ]]", -1),
])
def test_parse_rating_follows_fastchat(text, score):
    assert mb.parse_rating(text) == score


def _answers(questions):
    return [{"question_id": q["question_id"], "choices": [{"index": 0, "turns": [f"A1-{q['question_id']}",
                                                                                 f"A2-{q['question_id']}"]}]}
            for q in questions]


def test_judge_prompts_filled_as_fastchat(shared_mt_bench):
    questions = mb.load_questions(str(shared_mt_bench / "question.jsonl"))
    prompts = mb.load_judge_prompts(str(shared_mt_bench / "judge_prompts.jsonl"))
    refs = mb.load_reference_answers(str(shared_mt_bench / "reference_answer_gpt-4.jsonl"))
    assert len(questions) == 80 and set(mb.SINGLE_PROMPTS) <= set(prompts)
    tasks = mb.judge_tasks(questions, _answers(questions), refs, prompts, "m")
    assert len(tasks) == 160
    by = {(t["question_id"], t["turn"]): t for t in tasks}
    q = next(q for q in questions if q["category"] == "writing")
    t1, t2 = by[(q["question_id"], 1)], by[(q["question_id"], 2)]
    assert t1["prompt_name"] == "single-v1" and t2["prompt_name"] == "single-v1-multi-turn"
    assert t1["user_prompt"] == prompts["single-v1"]["prompt_template"].format(
        question=q["turns"][0], answer=f"A1-{q['question_id']}")
    assert t1["system_prompt"] == "You are a helpful assistant."
    assert f"### User:\n{q['turns'][1]}\n\n### Assistant A:\nA2-{q['question_id']}" in t2["user_prompt"]
    m = next(q for q in questions if q["category"] == "math")
    tm2 = by[(m["question_id"], 2)]
    assert tm2["prompt_name"] == "single-math-v1-multi-turn"
    ref = refs[m["question_id"]]
    assert f"### Reference answer:\n{ref[0]}" in tm2["user_prompt"] and ref[1] in tm2["user_prompt"]
    assert by[(m["question_id"], 1)]["user_prompt"].count(ref[0]) == 1
    assert {t["prompt_name"] for t in tasks if t["category"] in ("reasoning", "coding")} == {
        "single-math-v1", "single-math-v1-multi-turn"}
    assert not any(re.search(r"\{(question|answer|ref_answer)[_0-9]*\}", t["user_prompt"]) for t in tasks)
    assert mb.TEMPERATURE["writing"] == 0.7 and mb.TEMPERATURE["stem"] == 0.1 and mb.TEMPERATURE["math"] == 0.0


def test_aggregate_per_turn_and_category_leaves_out_unparsable():
    rows = [{"question_id": 1, "turn": 1, "score": 8}, {"question_id": 1, "turn": 2, "score": 6},
            {"question_id": 2, "turn": 1, "score": 3}, {"question_id": 2, "turn": 2, "score": -1}]
    res = mb.aggregate(rows, {1: "writing", 2: "math"})
    assert res["overall"] == pytest.approx(17 / 3)
    assert res["per_turn"] == {"1": 5.5, "2": 6.0}
    assert res["per_category"] == {"math": 3.0, "writing": 7.0}
    assert res["n_unparsable"] == 1 and res["unparsable"] == [{"question_id": 2, "turn": 2}]


QUESTIONS = [{"question_id": i, "category": c, "turns": [f"question {i} turn one?", f"question {i} turn two?"]}
             for i, c in enumerate(["writing", "math", "stem", "roleplay", "coding", "reasoning"], 1)]
PROMPTS = {n: {"name": n, "system_prompt": f"sys {n}", "output_format": "[[rating]]",
               "prompt_template": ("{question_1}|{answer_1}|{question_2}|{answer_2}" if "multi" in n else
                                   "{question}|{answer}") + ("|{ref_answer_1}" if "math" in n else "")}
           for n in mb.SINGLE_PROMPTS}
REFS = {i: ["ref one", "ref two"] for i in (2, 5, 6)}


def _responder(body):
    user = body["messages"][-1]["content"]
    assert body["messages"][0]["role"] == "system" and body["temperature"] == 0
    if user.startswith("question 3 turn one?") and "turn two" not in user:
        return "I refuse to give a number."  # a malformed rating
    return f"Fine. Rating: [[{len(user) % 9 + 1}]]"


def test_judge_protocol_retries_caching_and_malformed_ratings(tmp_path):
    tasks = mb.judge_tasks(QUESTIONS, _answers(QUESTIONS), REFS, PROMPTS, "tiny")
    cache = tmp_path / "judgments.jsonl"
    with OpenAIServer(_responder) as srv:
        client = ChatClient(srv.base_url, "gpt-4", "NO_SUCH_KEY_ENV", backoff_base=0.01, max_retries=4, timeout=5)
        srv.fail_next = [{"status": 429, "retry_after": 0}, {"status": 500}, {"raw": "{not json"}, {"status": 503}]
        t0 = time.perf_counter()
        rows = mb.run_judgments(tasks, client, "gpt-4", cache, concurrency=4, show_progress=False)
        assert time.perf_counter() - t0 < 10
        assert client.retries == 4 and client.requests == len(tasks) + 4 and client.failures == 0
        assert srv.n_requests == len(tasks) + 4
        assert [(r["question_id"], r["turn"]) for r in rows] == [(t["question_id"], t["turn"]) for t in tasks]
        assert {tuple(r["judge"]) for r in rows if r["question_id"] == 2} == {
            ("gpt-4", "single-math-v1"), ("gpt-4", "single-math-v1-multi-turn")}
        bad = [r for r in rows if r["score"] == -1]
        assert [(r["question_id"], r["turn"]) for r in bad] == [(3, 1)]
        assert set(rows[0]) == {"question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp"}
        # A rerun pays nothing: every judgment comes from the cache.
        before = srv.n_requests
        again = mb.run_judgments(tasks, client, "gpt-4", cache, concurrency=4, show_progress=False)
        assert srv.n_requests == before and [r["score"] for r in again] == [r["score"] for r in rows]
        # A non-retryable error fails at once.
        srv.fail_next = [{"status": 401}]
        with pytest.raises(JudgeRequestError, match="HTTP 401"):
            client.chat([{"role": "user", "content": "x"}])


def test_resume_after_an_interrupted_judging_run(tmp_path):
    tasks = mb.judge_tasks(QUESTIONS, _answers(QUESTIONS), REFS, PROMPTS, "tiny")
    cache = tmp_path / "judgments.jsonl"
    down = {"on": True}

    def flaky(body):  # the endpoint goes down for every question-4 request while `down`
        if down["on"] and "question 4" in body["messages"][-1]["content"]:
            return {"status": 500}
        return _responder(body)

    with OpenAIServer(flaky) as srv:
        client = ChatClient(srv.base_url, "gpt-4", None, backoff_base=0.001, max_retries=2, timeout=5)
        with pytest.raises(SafeAlignError, match="2 of 12 judgments failed"):
            mb.run_judgments(tasks, client, "gpt-4", cache, concurrency=3, show_progress=False)
        assert len(read_jsonl(cache)) == 10  # everything that succeeded is kept
        down["on"] = False
        before = srv.n_requests
        rows = mb.run_judgments(tasks, client, "gpt-4", cache, concurrency=3, show_progress=False)
        assert srv.n_requests - before == 2 and len(rows) == 12


def test_timeouts_are_retried(tmp_path):
    with OpenAIServer(lambda b: "Rating: [[6]]") as srv:
        srv.fail_next = [{"sleep": 1.5, "then": "Rating: [[1]]"}]
        client = ChatClient(srv.base_url, "judge", None, backoff_base=0.01, max_retries=2, timeout=0.5)
        assert mb.parse_rating(client.chat([{"role": "user", "content": "x"}])) == 6
        assert client.retries == 1


def test_missing_api_key_for_a_remote_endpoint_is_one_line(monkeypatch):
    monkeypatch.delenv("SAFEALIGN_TEST_KEY", raising=False)
    with pytest.raises(SafeAlignError, match="SAFEALIGN_TEST_KEY"):
        ChatClient("https://api.example.com/v1", "gpt-4", "SAFEALIGN_TEST_KEY")


def test_question_file_errors_name_the_row(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps(QUESTIONS[0]) + "\n" + json.dumps({"question_id": 9, "category": "x"}) + "\n")
    with pytest.raises(SafeAlignError, match=r"q.jsonl:2: turns: missing"):
        mb.load_questions(str(bad))
