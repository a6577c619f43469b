"""configs/real_smoke.yaml end to end: the real Mistral-7B-v0.1 tokenizer under a random tiny Mistral, the real
PKU-SafeRLHF rows (padded with toy rows), BeaverTails-Evaluation, the over-refusal sample and MT-Bench against a
real HTTP judge on 127.0.0.1, through `safealign pipeline` as a user runs it from the repository root.

Skipped without ../shared or without the tokenizer. About 1.5 minutes on 2 cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from helpers.openai_server import OpenAIServer, demo_responder
from helpers.real import HELLO_WORLD_IDS, MT_BENCH, REPO, mistral_tokenizer_folder, read_jsonl, real_path

from safealign.cli import main
from safealign.fileio import read_json
from safealign.models.loading import load_tokenizer

CONFIG = REPO / "configs" / "real_smoke.yaml"
PKU = "pku_saferlhf/pku_saferlhf_2024_alpaca7b_test_first10.jsonl"
MODELS = ["base", "safe_mm_dpo", "distilled"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    pku = real_path(PKU)
    beavertails = real_path("beavertails", "BeaverTails-Evaluation.json")
    real_path("safety_prompts", "alpaca_harmless_val.json")
    if not (MT_BENCH / "question.jsonl").is_file():
        pytest.skip(f"{MT_BENCH} is absent")
    tokenizer_dir = mistral_tokenizer_folder()
    run_dir = tmp_path_factory.mktemp("real_smoke") / "run"
    mp = pytest.MonkeyPatch()
    mp.chdir(REPO)  # the config's ../shared paths are relative to the repository root, as in CI
    mp.setenv("SAFEALIGN_DEMO_JUDGE_KEY", "local")
    try:
        with OpenAIServer(demo_responder) as judge:
            t0 = time.perf_counter()
            rc = main(["pipeline", "--config", str(CONFIG), "--run-dir", str(run_dir),
                       "--set", f"model.tokenizer_name_or_path={tokenizer_dir}",
                       "--set", f"eval.mt_bench_judge_base_url={judge.base_url}"])
            seconds = time.perf_counter() - t0
            requests = list(judge.requests)
    finally:
        mp.undo()
    print(f"real_smoke pipeline: {seconds:.1f} s")
    return {"rc": rc, "dir": run_dir, "seconds": seconds, "requests": requests, "pku": pku,
            "beavertails": beavertails, "tokenizer_dir": tokenizer_dir}


@pytest.mark.slow
def test_every_stage_ran(smoke):
    assert smoke["rc"] == 0
    stages = read_json(smoke["dir"] / "run.json")["stages"]
    assert {n: s["status"] for n, s in stages.items()} == {
        "prepare": "done", "base": "done", "sft": "done", "helpful_rm": "done", "harmless_rm": "done", "dpo": "done",
        "evaluate_base": "done", "evaluate_safe_mm_dpo": "done", "distill": "done", "evaluate_distilled": "done",
        "report": "done"}


@pytest.mark.slow
def test_real_rows_kept_and_padding_marked(smoke):
    stats = read_json(smoke["dir"] / "data" / "stats.json")
    assert stats["sources"] == {"toy-world": 54, Path(PKU).name: 10} and stats["rows_dropped"] == 0
    records = [r for s in ("train", "val", "test") for r in read_jsonl(smoke["dir"] / "data" / f"{s}.jsonl")]
    real = {r["prompt"]: r for r in read_jsonl(smoke["pku"])}
    kept = [r for r in records if r["source"] == Path(PKU).name]
    assert sorted(r["prompt"] for r in kept) == sorted(real)
    for r in kept:  # the real texts and labels as they were, the model that wrote each answer kept
        row = real[r["prompt"]]
        assert (r["response_0"], r["response_1"]) == (row["response_0"], row["response_1"])
        for key in ("better_response_id", "safer_response_id", "is_response_0_safe", "is_response_1_safe"):
            assert r[key] == row[key]
        assert r["sources"]["response_0"] == row["response_0_source"]
    assert all(r["source"] == "toy-world" for r in records if r["source"] != Path(PKU).name)


@pytest.mark.slow
def test_base_is_a_random_mistral_on_the_real_tokenizer(smoke):
    base = smoke["dir"] / "models" / "base"
    config = json.loads((base / "config.json").read_text())
    assert config["architectures"] == ["MistralForCausalLM"] and config["vocab_size"] == 32000
    tok = load_tokenizer(str(base))
    assert tok("Hello world")["input_ids"] == HELLO_WORLD_IDS
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    original = load_tokenizer(str(smoke["tokenizer_dir"]))
    texts = [r["prompt"] + " " + r["response_0"] for r in read_jsonl(smoke["pku"])]
    assert [tok(t)["input_ids"] for t in texts] == [original(t)["input_ids"] for t in texts]
    for name in ("sft", "helpful_rm", "harmless_rm", "aligned", "distilled"):
        assert json.loads((smoke["dir"] / "models" / name / "config.json").read_text())["vocab_size"] == 32000


@pytest.mark.slow
def test_benchmarks_over_refusal_and_mt_bench(smoke):
    with open(smoke["beavertails"], encoding="utf-8") as fh:
        bt = {r["prompt"]: r["category"] for r in json.load(fh)}
    for name in MODELS:
        res = smoke["dir"] / "results" / name
        safety = read_json(res / "safety.json")
        bench = safety["benchmarks"]["beavertails-eval"]
        assert safety["judge"] == "refusal" and safety["n"] == bench["n"] == 16
        assert set(safety["by_judge"]) == {"refusal", "cost-model"}
        answers = read_jsonl(res / "safety_answers.jsonl")
        assert all(a["prompt"] in bt and a["categories"] == [bt[a["prompt"]]] for a in answers)
        assert sum(c["n"] for c in bench["categories"].values()) == 16
        over = read_json(res / "over_refusal.json")
        assert over["n"] == 16 and set(over["benchmarks"]) == {"alpaca-benign"}
        assert 0 <= over["refusal_rate"] <= 1 and over["ci95"][0] <= over["refusal_rate"] <= over["ci95"][1]
        mt = read_json(res / "mt_bench_results.json")[name]
        assert mt["n"] + mt["unparsable"] == 8  # 4 questions x 2 turns
    judged = [r for r in smoke["requests"] if r["model"] == "demo-judge"]
    assert len(judged) == 8 * len(MODELS)  # every MT-Bench judgment went over HTTP to the local judge


@pytest.mark.slow
def test_report_says_the_model_is_random(smoke):
    report = (smoke["dir"] / "results" / "report.md").read_text()
    assert "random initial weights, not a pretrained language model" in report
    data = read_json(smoke["dir"] / "results" / "report.json")
    assert list(data["models"]) == MODELS and "random initial weights" in data["note"]
    assert "beavertails-eval" in report and "Over-refusal" in report


def test_config_reads_the_shared_files_relative_to_the_repo():
    """The config's ../shared paths are the ones tests/helpers/real.py uses (no pipeline run needed)."""
    cfg = yaml.safe_load(CONFIG.read_text())
    shared = REPO.parent / "shared"
    assert cfg["data"]["dataset"].split(",") == [f"../shared/data/real/{PKU}", "toy"]
    for key in ("mt_bench_questions", "mt_bench_judge_prompts", "mt_bench_reference_answers"):
        assert cfg["eval"][key].startswith("../shared/data/mt_bench/")
    if shared.is_dir():
        for path in [cfg["data"]["dataset"].split(",")[0], cfg["eval"]["safety_prompts_dir"]] + [
                cfg["eval"][k] for k in ("mt_bench_questions", "mt_bench_judge_prompts", "mt_bench_reference_answers")]:
            assert (REPO / path).exists(), path
