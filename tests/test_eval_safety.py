"""Safety/helpfulness evaluation on a real tiny model, `safealign evaluate all` through the CLI with a judge
served over HTTP on 127.0.0.1, and `safealign report` (tables, deltas, plots, training curves)."""

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from helpers.openai_server import OpenAIServer  # noqa: E402

from safealign.cli import main  # noqa: E402
from safealign.config import Config  # noqa: E402
from safealign.errors import DataError  # noqa: E402
from safealign.toy import ToyJudge, toy_prompts  # noqa: E402
from safealign.evaluation.run import evaluate_model  # noqa: E402
from safealign.fileio import read_json, read_jsonl, write_jsonl  # noqa: E402

GEN = {"max_new_tokens": 12, "batch_size": 16}


def _record(prompt: str, harmful: bool, categories: list[str]) -> dict:
    """A canonical preference record (docs/DESIGN.md) whose prompt is `prompt`."""
    return {"prompt": prompt, "response_0": "I cannot help with that.", "response_1": "Sure.",
            "better_response_id": 1, "safer_response_id": 0, "is_response_0_safe": True,
            "is_response_1_safe": not harmful, "harm_categories": categories, "is_harmful_prompt": harmful}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder whose data/test.jsonl holds toy-world harmful and benign prompts (canonical records)."""
    run = tmp_path_factory.mktemp("run")
    toy = ToyJudge()
    harmful, benign = toy_prompts(harmful=True)[::12], toy_prompts(harmful=False)[::20]
    rows = [_record(p, True, [toy.category(p)]) for p in harmful]
    rows += [_record(p, False, []) for p in benign]
    rows.append(dict(rows[0]))  # the same prompt in two pairs is asked once
    write_jsonl(run / "data" / "test.jsonl", rows)
    return run


def _cfg(run_dir, **eval_kw):
    return Config({"run": {"run_dir": str(run_dir)}, "eval": {**GEN, **eval_kw}})


def test_toy_judge_safety_and_helpfulness_on_a_tiny_model(tiny_base, run_dir, tmp_path):
    res = evaluate_model(_cfg(run_dir), "base", str(tiny_base), "safety", tmp_path)
    s = read_json(tmp_path / "base" / "safety.json")
    n_harmful = len(toy_prompts(harmful=True)[::12])
    assert s["judge"] == "toy" and s["n"] == n_harmful and res["safety"]["safety_rate"] == s["safety_rate"]
    # The headline rate is what the toy judge says about the saved answers.
    answers = read_jsonl(tmp_path / "base" / "safety_answers.jsonl")
    toy = ToyJudge()
    safe = [toy.judge(a["prompt"], a["answer"])[0] for a in answers]
    assert s["n_safe"] == sum(safe) and s["safety_rate"] == sum(safe) / len(safe)
    lo, hi = s["safety_ci"]
    assert 0 <= lo <= s["safety_rate"] <= hi <= 1
    assert sum(b["n"] for b in s["by_category"].values()) == n_harmful
    assert set(s["by_category"]) == {toy.category(a["prompt"]) for a in answers}
    assert len(read_jsonl(tmp_path / "base" / "failures.jsonl")) == s["n"] - s["n_safe"]
    assert (tmp_path / "base" / "failures.md").read_text().startswith("# Safety failures: base")
    h = read_json(tmp_path / "base" / "helpfulness.json")
    assert h["judge"] == "toy" and h["n"] == len(toy_prompts(harmful=False)[::20]) and 0 <= h["helpfulness"] <= 1
    assert s["generation"]["new_tokens"] > 0
    # A second run answers from the cache.
    again = evaluate_model(_cfg(run_dir), "base", str(tiny_base), "safety", tmp_path)
    assert again["safety"]["generation"]["num_generated"] == 0 and again["safety"]["n_safe"] == s["n_safe"]


def test_llm_judge_failures_and_a_second_judge(tiny_base, run_dir, tmp_path):
    flagged = toy_prompts(harmful=True)[::12][:3]

    def grader(body):
        text = body["messages"][-1]["content"]
        return "Harmful. [[UNSAFE]]\nCategory: x" if any(p in text for p in flagged) else "Fine. [[SAFE]]"

    with OpenAIServer(grader) as srv:
        cfg = _cfg(run_dir, judge="llm", extra_judges=["toy"], llm_judge_base_url=srv.base_url,
                   llm_judge_api_key_env="NO_KEY_ENV", helpfulness=False)
        res = evaluate_model(cfg, "m1", str(tiny_base), "safety", tmp_path)
        sent = srv.n_requests
        evaluate_model(cfg, "m1", str(tiny_base), "safety", tmp_path)
        assert srv.n_requests == sent  # verdicts cached per model
    s = res["safety"]
    assert s["judge"] == "llm" and s["n"] - s["n_safe"] == 3
    fails = read_jsonl(tmp_path / "m1" / "failures.jsonl")
    assert sorted(f["prompt"] for f in fails) == sorted(flagged)
    assert all(f["judge"] == "llm" and "[[UNSAFE]]" in f["detail"]["judgment"] for f in fails)
    assert set(s["by_judge"]) == {"llm", "toy"} and 0 <= s["judge_agreement"]["toy"] <= 1
    assert "Grader said" in (tmp_path / "m1" / "failures.md").read_text()
    assert res["helpfulness"] is None


def test_evaluate_all_cli_then_report(tiny_base, run_dir, tmp_path, capsys):
    qs = [{"question_id": i, "category": c, "turns": [f"Question {i}: tell me about {c}.", "Now say it shorter."]}
          for i, c in enumerate(["writing", "math", "stem"], 81)]
    qfile = tmp_path / "question.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in qs))
    prompts = tmp_path / "judge_prompts.jsonl"
    tmpl = {"single-v1": "[Question]\n{question}\n[Answer]\n{answer}",
            "single-math-v1": "[Question]\n{question}\n[Ref]\n{ref_answer_1}\n[Answer]\n{answer}",
            "single-v1-multi-turn": "{question_1}|{answer_1}|{question_2}|{answer_2}",
            "single-math-v1-multi-turn": "{question_1}|{ref_answer_1}|{answer_1}|{question_2}|{ref_answer_2}|{answer_2}"}
    prompts.write_text("".join(json.dumps({"name": n, "type": "single", "system_prompt": "judge", "prompt_template": t,
                                           "output_format": "[[rating]]"}) + "\n" for n, t in tmpl.items()))
    refs = tmp_path / "ref.jsonl"
    refs.write_text(json.dumps({"question_id": 82, "choices": [{"index": 0, "turns": ["r1", "r2"]}]}) + "\n")
    # TensorBoard logs of a training stage, for the report's curves.
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(run_dir / "logs" / "dpo"))
    for step in range(5):
        w.add_scalar("train/loss", 1.0 / (step + 1), step)
        w.add_scalar("train/lambda", 0.1 * step, step)
    w.close()

    def judge(body):
        return "Meh." if "Question 83" in body["messages"][-1]["content"] and "shorter" not in \
            body["messages"][-1]["content"] else "OK. Rating: [[6]]"

    out = tmp_path / "results"
    with OpenAIServer(judge) as srv:
        cfg = {"run": {"run_dir": str(run_dir)},
               "eval": {**GEN, "max_safety_prompts": 8, "max_helpful_prompts": 6, "mt_bench_questions": str(qfile),
                        "mt_bench_judge_prompts": str(prompts), "mt_bench_reference_answers": str(refs),
                        "mt_bench_judge_base_url": srv.base_url, "mt_bench_api_key_env": "NO_KEY_ENV",
                        "mt_bench_max_new_tokens": 8, "judge_concurrency": 2}}
        cfg_file = tmp_path / "cfg.yaml"
        cfg_file.write_text(yaml.safe_dump(cfg))
        rc = main(["evaluate", "all", "--config", str(cfg_file), "--model", f"base={tiny_base}",
                   "--model", f"aligned={tiny_base}", "--output", str(out)])
        assert rc == 0 and srv.n_requests == 12  # 3 questions x 2 turns x 2 models
    for name in ("base", "aligned"):
        d = out / name
        for f in ("safety.json", "failures.jsonl", "failures.md", "helpfulness.json", "mt_bench.json",
                  "mt_bench_radar.png", f"mt_bench/model_answer/{name}.jsonl",
                  "mt_bench/model_judgment/gpt-4_single.jsonl", "eval.json", "eval.md", "config.yaml"):
            assert (d / f).is_file(), f"{name}/{f}"
        mt = read_json(d / "mt_bench.json")
        assert mt["n_unparsable"] == 1 and mt["overall"] == 6 and mt["per_category"]["stem"] == 6
        ans = read_jsonl(d / "mt_bench" / "model_answer" / f"{name}.jsonl")
        assert [a["question_id"] for a in ans] == [81, 82, 83] and all(len(a["choices"][0]["turns"]) == 2 for a in ans)
        judged = read_jsonl(d / "mt_bench" / "model_judgment" / "gpt-4_single.jsonl")
        assert {tuple(j["judge"]) for j in judged if j["question_id"] == 82} == {
            ("gpt-4", "single-math-v1"), ("gpt-4", "single-math-v1-multi-turn")}
    assert "NO_KEY_ENV" in (out / "base" / "config.yaml").read_text() or "redacted" in (out / "base" / "config.yaml").read_text()
    eff = {"parameters": 1000, "disk_mb": 0.5, "tokens_per_second": 123.4, "peak_memory_mb": 7.0}
    (out / "aligned" / "efficiency.json").write_text(json.dumps(eff))

    rc = main(["report", "--config", str(cfg_file), "--results", str(out)])
    assert rc == 0
    rep = read_json(out / "report.json")
    assert set(rep["models"]) == {"base", "aligned"} and rep["base"] == "base"
    a = rep["models"]["aligned"]
    for key in ("safety_rate", "safety_ci", "helpfulness", "safety_judge", "helpfulness_judge", "by_category",
                "mt_bench", "delta_vs_base"):
        assert key in a
    assert a["delta_vs_base"]["safety_rate"] == 0 and a["delta_vs_base"]["mt_bench"] == 0
    assert a["efficiency"] == eff and rep["models"]["base"]["delta_vs_base"] is None
    for png in ("safety_by_category.png", "mt_bench_radar.png", "curves_dpo.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "| aligned |" in md and "## MT-Bench by category" in md and "| aligned | 1,000 | 0.50 | 123.4 | 7.0 |" in md
    assert rep["not_included"] == []
    # --models: only the named folders (a folder an earlier run left behind stays out, and is named)
    assert main(["report", "--config", str(cfg_file), "--results", str(out), "--models", "aligned",
                 "--output", str(tmp_path / "only")]) == 0
    only = read_json(tmp_path / "only" / "report.json")
    assert list(only["models"]) == ["aligned"] and only["not_included"] == ["base"] and only["base"] is None
    rc = main(["report", "--config", str(cfg_file), "--results", str(out), "--models", "aligned,algined",
               "--output", str(tmp_path / "typo")])
    assert rc != 0 and not (tmp_path / "typo" / "report.json").exists()  # a typo writes nothing
    assert "algined" in capsys.readouterr().err


def test_helpful_rm_mean_score_and_win_rate_vs_base(tiny_base, run_dir, tmp_path):
    """The judges are the run's (`reward.*_rm_path` here) and the win-rate base is the run's base policy
    (`layout.policy_start`: `model.name_or_path` when it is neither tiny nor warmed up)."""
    import shutil

    from safealign.models.loading import load_score_model, load_tokenizer

    rm = tmp_path / "helpful_rm"
    tok = load_tokenizer(str(tiny_base))
    load_score_model(str(tiny_base), pad_token_id=tok.pad_token_id).save_pretrained(rm)
    tok.save_pretrained(rm)
    copy = tmp_path / "copy_of_base"
    shutil.copytree(tiny_base, copy)  # another path, same weights: every comparison is a tie
    cfg = Config({"run": {"run_dir": str(run_dir)}, "model": {"name_or_path": str(tiny_base)},
                  "reward": {"helpful_rm_path": str(rm), "harmless_rm_path": str(rm)},
                  "eval": {**GEN, "judge": "cost-model", "max_safety_prompts": 4, "max_helpful_prompts": 5}})
    res = evaluate_model(cfg, "copy", str(copy), "safety", tmp_path / "out")
    h = res["helpfulness"]
    assert h["judge"] == "helpful-rm" and h["n"] == 5  # auto: the run has a helpful RM
    assert h["base_model"] == str(tiny_base) and h["helpful_rm_path"] == str(rm)
    assert h["win_rate"] == 0.5 and h["helpfulness"] == 0.5 and h["mean_score"] == pytest.approx(h["base_mean_score"])
    assert (tmp_path / "out" / ".cache" / "base_generation.jsonl").is_file()
    assert res["safety"]["judge"] == "cost-model"
    from safealign.evaluation.report import build_report

    rep = build_report(tmp_path / "out")
    assert list(rep["models"]) == ["copy"] and rep["models"]["copy"]["helpfulness_judge"] == "helpful-rm"
    # without a helpful RM in the run, `auto` skips helpfulness instead of failing
    bare = Config({"run": {"run_dir": str(run_dir)}, "reward": {"harmless_rm_path": str(rm)},
                   "eval": {**GEN, "judge": "cost-model", "max_safety_prompts": 2}})
    assert evaluate_model(bare, "copy", str(copy), "safety", tmp_path / "out2")["helpfulness"] is None


def test_another_split_and_data_output_dir(tiny_base, tmp_path):
    """`split="val"` asks the validation prompts (the sweep's case, no faked run folder), read from
    `data.output_dir` through the layout; a prompt's categories are the union over its records."""
    toy = ToyJudge()
    harmful, benign = toy_prompts(harmful=True)[1:4], toy_prompts(harmful=False)[1:3]
    rows = [_record(p, True, [toy.category(p)]) for p in harmful] + [_record(p, False, []) for p in benign]
    rows.append(_record(harmful[0], True, ["extra_category"]))
    data = tmp_path / "prepared"
    write_jsonl(data / "val.jsonl", rows)
    cfg = Config({"run": {"run_dir": str(tmp_path / "run")}, "data": {"output_dir": str(data)}, "eval": GEN})
    res = evaluate_model(cfg, "base", str(tiny_base), "safety", split="val")
    out = tmp_path / "run" / "results" / "base"  # the layout's results folder
    answers = read_jsonl(out / "safety_answers.jsonl")
    assert [a["prompt"] for a in answers] == harmful and res["safety"]["n"] == 3
    assert answers[0]["categories"] == [toy.category(harmful[0]), "extra_category"]
    assert [a["prompt"] for a in read_jsonl(out / "helpfulness_answers.jsonl")] == benign
    assert res["split"] == "val" and read_json(out / "safety.json")["prompt_split"] == "val"
    with pytest.raises(DataError, match="test.jsonl: file not found"):
        evaluate_model(cfg, "base", str(tiny_base), "safety")  # no test split prepared there
