"""The pipeline end to end on configs/ci_small.yaml: every artifact, run.json, kill-and-rerun, --only/--from.

One real run is shared by the tests of this module (module fixture): it is started as a separate process,
killed with SIGKILL once the two reward models are done, and finished by a second, in-process run. About a
minute on 2 cores.
"""

import json
import sys
import time
from pathlib import Path

import pytest

from helpers.processes import kill_when

from safealign.config import load_config
from safealign.errors import ConfigError, SafeAlignError
from safealign.fileio import read_json, write_json
from safealign.pipeline.plan import build_plan, model_names, select_stages
from safealign.pipeline.runner import run_pipeline
from safealign.sweep.run import run_sweep

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "ci_small.yaml"
STAGES = ["prepare", "base", "sft", "helpful_rm", "harmless_rm", "dpo", "dpo_dpo", "dpo_mm_dpo", "evaluate_base",
          "evaluate_safe_mm_dpo", "evaluate_dpo", "evaluate_mm_dpo", "distill", "evaluate_distilled", "report"]
MODELS = ["base", "safe_mm_dpo", "dpo", "mm_dpo", "distilled"]
KILL_AFTER = "harmless_rm"


def cfg_for(run_dir, *sets):
    return load_config(CONFIG, [f"run.run_dir={run_dir}", *sets])


def stage_records(run_dir) -> dict:
    return read_json(Path(run_dir) / "run.json")["stages"]


def stage_status(run_dir, name: str) -> str | None:
    """The stage's status in run.json, None while there is none yet."""
    try:
        return stage_records(run_dir).get(name, {}).get("status")
    except (OSError, json.JSONDecodeError, KeyError):
        return None


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    killed = kill_when(["pipeline", "--config", CONFIG, "--run-dir", run_dir],
                       lambda: stage_status(run_dir, KILL_AFTER) == "done", timeout=240, poll=0.2)
    assert killed, "the first run ended before it could be killed"
    before = stage_records(run_dir)
    t0 = time.time()
    state = run_pipeline(cfg_for(run_dir))
    return {"dir": run_dir, "before": before, "state": state, "seconds": time.time() - t0}


@pytest.mark.slow
def test_every_artifact(ci_run):
    d = ci_run["dir"]
    for split in ("train", "val", "test"):
        assert (d / "data" / f"{split}.jsonl").stat().st_size > 0
    for f in ("stats.json", "stats.md"):
        assert (d / "data" / f).is_file()
    for m in ("base", "sft", "helpful_rm", "harmless_rm", "aligned", "aligned_dpo", "aligned_mm_dpo", "distilled"):
        assert (d / "models" / m / "config.json").is_file(), m
        assert list((d / "models" / m).glob("*.safetensors")), m
        assert not list((d / "models" / m).glob("*.bin")), m
    for stage in ("helpful_rm", "harmless_rm", "dpo", "sft"):
        assert list((d / "logs" / stage).rglob("events.out.tfevents*")), stage
    report = read_json(d / "results" / "report.json")
    assert set(report["models"]) == set(MODELS)
    for name, m in report["models"].items():
        assert 0 <= m["safety_rate"] <= 1 and 0 <= m["helpfulness"] <= 1, name
        assert m["safety_judge"] == "toy" and m["helpfulness_judge"] == "toy"
        assert (d / "results" / name / "safety.json").is_file()
        assert (d / "results" / name / "helpfulness.json").is_file()
    md = (d / "results" / "report.md").read_text()
    assert all(n in md for n in MODELS)
    assert (d / "run.md").is_file() and (d / "config.yaml").is_file()


@pytest.mark.slow
def test_run_json_bookkeeping(ci_run):
    data = read_json(ci_run["dir"] / "run.json")
    assert data["order"] == STAGES
    for name in STAGES:
        rec = data["stages"][name]
        assert rec["status"] == "done", name
        assert len(rec["config_hash"]) == 16 and len(rec["inputs_hash"]) == 16
        assert rec["seconds"] >= 0 and rec["finished_at"] >= rec["started_at"]
        assert rec["outputs"] and all(Path(p).exists() for p in rec["outputs"])
    assert data["stages"]["dpo_dpo"]["result"]["algorithm"] == "dpo"
    assert data["stages"]["dpo_mm_dpo"]["result"]["algorithm"] == "mm_dpo"
    assert data["stages"]["dpo"]["result"]["algorithm"] == "safe_mm_dpo"


@pytest.mark.slow
def test_kill_between_stages_then_rerun_recomputes_nothing_done(ci_run):
    before, after = ci_run["before"], ci_run["state"]["stages"]
    done_before = [s for s in STAGES if before.get(s, {}).get("status") == "done"]
    assert done_before[:5] == STAGES[:5]  # everything up to the kill point had finished
    for s in done_before:  # ... and was not run again
        assert after[s]["finished_at"] == before[s]["finished_at"], s
        assert after[s]["runs"] == 1, s
    ran = ci_run["state"]["last_invocation"]["ran"]
    assert ran == [s for s in STAGES if s not in done_before]
    assert set(ran) | set(ci_run["state"]["last_invocation"]["skipped"]) == set(STAGES)


@pytest.mark.slow
def test_second_run_skips_everything(ci_run):
    d = ci_run["dir"]
    weights = d / "models" / "aligned" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    state = run_pipeline(cfg_for(d))
    assert state["last_invocation"]["ran"] == []
    assert state["last_invocation"]["skipped"] == STAGES
    assert weights.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_only_from_and_stale_downstream(ci_run):
    d = ci_run["dir"]
    prev = stage_records(d)
    state = run_pipeline(cfg_for(d), only_stage="evaluate_dpo")
    assert state["last_invocation"]["ran"] == ["evaluate_dpo"]
    # results/dpo was rewritten, so the report (which reads it) is stale; nothing else is
    state = run_pipeline(cfg_for(d))
    assert state["last_invocation"]["ran"] == ["report"]
    state = run_pipeline(cfg_for(d), from_stage="report")
    assert state["last_invocation"]["ran"] == ["report"]
    recs = stage_records(d)
    assert recs["report"]["runs"] == prev["report"]["runs"] + 2
    assert recs["dpo"]["finished_at"] == prev["dpo"]["finished_at"]


@pytest.mark.slow
def test_config_change_reruns_only_what_reads_it(ci_run):
    d = ci_run["dir"]
    state = run_pipeline(cfg_for(d, "eval.max_new_tokens=12"))
    assert state["last_invocation"]["ran"] == [s for s in STAGES if s.startswith("evaluate_")] + ["report"]


@pytest.mark.slow
def test_interrupted_stage_resumes_from_its_checkpoint(ci_run):
    d = ci_run["dir"]
    assert list((d / "checkpoints" / "harmless_rm").glob("checkpoint-*"))
    data = read_json(d / "run.json")
    data["stages"]["harmless_rm"]["status"] = "running"  # what a kill during the stage leaves behind
    write_json(d / "run.json", data)
    state = run_pipeline(cfg_for(d, "eval.max_new_tokens=12"), only_stage="harmless_rm")
    rec = state["stages"]["harmless_rm"]
    assert rec["status"] == "done" and rec["resumed"] is True


def test_missing_input_names_the_stage_that_makes_it(tmp_path):
    with pytest.raises(SafeAlignError, match="run stage prepare first"):
        run_pipeline(cfg_for(tmp_path / "fresh"), only_stage="helpful_rm")


def test_stage_selection_and_plan(tmp_path):
    cfg = cfg_for(tmp_path / "r")
    plan = build_plan(cfg)
    assert [s.name for s in plan] == STAGES
    assert select_stages(plan, only_stage="evaluate") == {s for s in STAGES if s.startswith("evaluate_")}
    assert select_stages(plan, from_stage="distill") == {"distill", "evaluate_distilled", "report"}
    with pytest.raises(ConfigError, match="unknown stage"):
        select_stages(plan, only_stage="nope")
    # a single run of another algorithm: the ablation equal to it is dropped
    cfg = cfg_for(tmp_path / "r", "dpo.algorithm=dpo")
    assert model_names(cfg) == ["dpo", "mm_dpo"]
    assert [s.name for s in build_plan(cfg)][5:7] == ["dpo", "dpo_mm_dpo"]
    with pytest.raises(ConfigError, match="pipeline.ablations\\[0\\]"):
        cfg_for(tmp_path / "r", "pipeline.ablations=[ppo]")


def test_base_policy_is_one_rule_from_the_config(tmp_path):
    """The start of alignment and the report's `base` come from the config, never from a leftover folder."""
    d = tmp_path / "r"
    (d / "models" / "sft").mkdir(parents=True)
    (d / "models" / "sft" / "config.json").write_text("{}")  # left by an earlier run with sft on
    plan = {s.name: s for s in build_plan(cfg_for(d, "sft.enabled=false"))}
    assert not plan["sft"].enabled and plan["evaluate_base"].extra["model"] == str(d / "models" / "base")
    assert d / "models" / "sft" not in plan["dpo"].inputs and d / "models" / "base" in plan["dpo"].inputs
    plan = {s.name: s for s in build_plan(cfg_for(d))}  # sft on: it is the start and the report's base
    assert plan["evaluate_base"].extra["model"] == str(d / "models" / "sft") and d / "models" / "sft" in plan["dpo"].inputs
    hub = {s.name: s for s in build_plan(cfg_for(d, "sft.enabled=false", "model.name_or_path=some/hub-model"))}
    assert not hub["base"].enabled and hub["evaluate_base"].extra["model"] == "some/hub-model"
    assert hub["evaluate_base"].inputs == [d / "data" / "test.jsonl"]


def test_every_stage_reads_the_layouts_paths(tmp_path):
    """`data.output_dir` reaches every stage that reads the data; each training stage has its own checkpoints."""
    d, data = tmp_path / "r", tmp_path / "prepared"
    plan = {s.name: s for s in build_plan(cfg_for(d, f"data.output_dir={data}"))}
    assert plan["prepare"].outputs == [data / f"{s}.jsonl" for s in ("train", "val", "test")]
    for name in ("sft", "helpful_rm", "harmless_rm", "dpo", "dpo_dpo", "distill"):
        assert data in plan[name].inputs, name
        assert plan[name].checkpoint_dir == d / "checkpoints" / name
    assert all(s.inputs[0] == data / "test.jsonl" for n, s in plan.items() if n.startswith("evaluate_"))
    assert plan["dpo_mm_dpo"].outputs == [d / "models" / "aligned_mm_dpo" / "config.json"]
    assert plan["dpo_mm_dpo"].cfg.section("dpo").algorithm == "mm_dpo"


@pytest.mark.slow
def test_launcher_runs_a_training_stage_in_a_child_process(ci_run):
    """`pipeline.launcher` (accelerate launch / torchrun on GPUs) here is plain python: same CLI, same outputs."""
    d = ci_run["dir"]
    weights = d / "models" / "aligned_dpo" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    state = run_pipeline(cfg_for(d, "eval.max_new_tokens=12", f"pipeline.launcher={sys.executable}"),
                         only_stage="dpo_dpo")
    rec = state["stages"]["dpo_dpo"]
    assert rec["status"] == "done" and rec["result"]["algorithm"] == "dpo"
    assert weights.stat().st_mtime_ns != mtime
    assert (d / "stage_configs" / "dpo_dpo.yaml").is_file()


@pytest.mark.slow
def test_sweep_end_to_end_and_resume(ci_run, capsys):
    """Two grid points on the finished CI run: trained, evaluated on validation prompts, selected, written;
    a second call trains nothing."""
    d = ci_run["dir"]
    cfg = cfg_for(d, "sweep.lambda_init=[0.5, 2.0]", "sweep.w=[0.5]", "dpo.max_steps=2")
    res = run_sweep(cfg)
    out = d / "sweep"
    assert [p["id"] for p in res["points"]] == ["lambda0.5_w0.5", "lambda2_w0.5"]
    assert res["selection"]["best"] in {"lambda0.5_w0.5", "lambda2_w0.5"}
    for f in ("sweep.json", "sweep.md", "sweep.png", "best.yaml", "points.jsonl"):
        assert (out / f).is_file(), f
    best = load_config(out / "best.yaml")  # a valid config, ready for the full training
    chosen = next(p for p in res["points"] if p["id"] == res["selection"]["best"])
    assert best.section("dpo").lambda_init == chosen["lambda_init"] and "sweep" not in best.raw
    val_prompts = {json.loads(line)["prompt"] for line in (d / "data" / "val.jsonl").read_text().splitlines()}
    for pid in ("lambda0.5_w0.5", "lambda2_w0.5"):  # validation prompts, never the test split
        for answers in ("safety_answers.jsonl", "helpfulness_answers.jsonl"):
            asked = [json.loads(line)["prompt"] for line in (out / "eval" / pid / answers).read_text().splitlines()]
            assert 0 < len(asked) <= 8 and set(asked) <= val_prompts, (pid, answers)
        assert (out / "points" / pid / "models" / "aligned" / "config.json").is_file()
        assert list((d / "checkpoints" / f"sweep_{pid}").glob("checkpoint-*"))
    capsys.readouterr()
    again = run_sweep(cfg)
    assert again["points"] == res["points"]
    assert capsys.readouterr().out.count("skipped (already evaluated)") == 2
    import shutil  # a sweep folder moved elsewhere still knows its finished points

    shutil.copytree(out, d / "sweep_moved")
    moved = run_sweep(cfg, output_dir=d / "sweep_moved")
    assert [p["id"] for p in moved["points"]] == [p["id"] for p in res["points"]]
    assert capsys.readouterr().out.count("skipped (already evaluated)") == 2


@pytest.mark.slow
def test_killed_mid_stage_resumes_from_its_checkpoint(ci_run):
    """SIGKILL during DPO training, after a checkpoint: the rerun continues from it instead of starting over."""
    d = ci_run["dir"]
    sets = ["dpo.max_steps=30", "dpo.save_steps=4", "dpo.eval_steps=100", "dpo.logging_steps=1"]
    ckpt = d / "checkpoints" / "dpo"

    def checkpoint_written() -> bool:
        done = [p for p in ckpt.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
        return bool(done) and stage_status(d, "dpo") == "running"

    # the pause lets the checkpoint's rename settle; a torn one must not load anyway
    argv = ["pipeline", "--config", CONFIG, "--run-dir", d, "--only", "dpo"] + [x for s in sets for x in ("--set", s)]
    kill_when(argv, checkpoint_written, timeout=180, poll=0.05, settle=0.3)
    rec = stage_records(d)["dpo"]
    if rec["status"] != "running":
        pytest.skip("the DPO stage finished before it could be killed (machine too fast for the window)")
    state = run_pipeline(cfg_for(d, *sets), only_stage="dpo")
    rec = state["stages"]["dpo"]
    assert rec["status"] == "done" and rec["resumed"] is True
    assert rec["result"]["resumed_from"] == "latest"
    assert rec["result"]["global_step"] == 30
