"""The issue-14 wiring on the tiny model with real (random-head) judges: dpo_safe and safedpo losses by hand,
the interpretable constraint's weighted J_C reaching λ, per-category multipliers saved and checked on resume,
conflict/agree metrics, constrained selection, and the config's checks."""

import json

import pytest
import torch
import torch.nn.functional as F
from helpers.dpo import first_batch, make_cfg, make_run, toy_records, trainer_factory, write_jsonl

from safealign import losses
from safealign.dpo import objective
from safealign.dpo.constraints import STATE_FILE as GROUPS_FILE
from safealign.dpo.constraints import on_policy_terms
from safealign.dpo.lagrange import STATE_FILE
from safealign.dpo.train import build_trainer
from safealign.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def judges(tmp_path_factory, tiny_base):
    return make_run(tmp_path_factory.mktemp("judges14"), tiny_base)


@pytest.fixture
def run(tmp_path, tiny_base, judges):
    return trainer_factory(tmp_path, tiny_base, judges)


def _batch(trainer, n=8):
    return first_batch(trainer, n)


def _pairs(trainer, batch):
    """The batch's log-probs and cached values as `objective.Pairs` (the trainer's own forward)."""
    from safealign.dpo.data import sequence_logps

    with torch.no_grad():
        pol, ntok = sequence_logps(trainer.model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    keys = ("ref_logp_0", "ref_logp_1", "helpful_0", "helpful_1", "cost_0", "cost_1")
    return objective.Pairs.from_batch(batch, pol, ntok, tuple(batch[k] for k in keys))


def test_dpo_safe_is_dpo_on_the_safety_pairs(run):
    trainer, _ = run(algorithm="dpo_safe", kl_coeff=0.0, max_steps=1, save_strategy="no", eval_strategy="no")
    batch = _batch(trainer)
    trainer.model.eval()
    with torch.no_grad():
        loss, m = trainer.pair_losses(trainer.model, batch, training=False)
    t = _pairs(trainer, batch)
    w, l_ = objective.pick(t.safer, t.lp0, t.lp1)
    rw, rl = objective.pick(t.safer, t.ref0, t.ref1)
    expected = (-F.logsigmoid(0.1 * ((w - rw) - (l_ - rl)))).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert m["loss_safety"] == pytest.approx(expected.item(), rel=1e-5)


def test_safedpo_reorders_by_the_labels_drops_both_unsafe_and_offsets(run):
    trainer, _ = run(algorithm="safedpo", kl_coeff=0.0, safedpo_delta=2.0, max_steps=1, save_strategy="no",
                     eval_strategy="no")
    batch = _batch(trainer, 16)
    trainer.model.eval()
    with torch.no_grad():
        loss, _ = trainer.pair_losses(trainer.model, batch, training=False)
    t = _pairs(trainer, batch)
    per, kept = [], 0
    for i in range(16):  # the rule by hand, pair by pair
        b, u = int(t.better[i]), (int(t.unsafe_0[i]), int(t.unsafe_1[i]))
        if u[b] and u[1 - b]:
            continue
        chosen = 1 - b if u[b] else b
        lp, ref = (t.lp0[i], t.lp1[i]), (t.ref0[i], t.ref1[i])
        h = (lp[chosen] - ref[chosen]) - (lp[1 - chosen] - ref[1 - chosen])
        offset = 2.0 if u[0] != u[1] else 0.0
        per.append(-F.logsigmoid(0.1 * h - offset))
        kept += 1
    assert kept > 0
    assert loss.item() == pytest.approx(torch.stack(per).mean().item(), rel=1e-5)


def test_safedpo_refuses_unknown_safety_labels_naming_file_row_field(tmp_path, tiny_base, judges):
    make_run(tmp_path, tiny_base, rm_root=judges)
    recs = toy_records(24)
    recs[5]["is_response_1_safe"] = None
    write_jsonl(tmp_path / "data" / "train.jsonl", recs)
    with pytest.raises(DataError, match=r"train\.jsonl:6: is_response_1_safe"):
        build_trainer(make_cfg(tmp_path, tiny_base, judges, algorithm="safedpo"))


def test_weighted_jc_reaches_lambda(run):
    trainer, _ = run(constraint="unsafe_choice", constraint_choice="policy", lambda_lr=0.5, lambda_init=1.0,
                     max_steps=1, save_strategy="no", eval_strategy="no")
    batch = _batch(trainer)
    t = _pairs(trainer, batch)
    v, w = losses.constraint_terms("unsafe_choice", t.lp0, t.lp1, t.c0, t.c1, 1.0, t.harmful_flag())
    with torch.no_grad():
        trainer.pair_losses(trainer.model, batch, training=True)
    st = trainer.lagrange
    assert st.jc_count == pytest.approx(float(w.sum()), rel=1e-5)
    jc = float((v * w).sum() / w.sum())
    assert st.jc_sum / st.jc_count == pytest.approx(jc, rel=1e-4)
    trainer.constraint.step()
    assert st.lam == pytest.approx(max(0.0, 1.0 + 0.5 * (jc - 0.05)), rel=1e-4)  # d = 0.05 by default


def test_conflict_and_agree_metrics_and_constrained_selection(run):
    trainer, _ = run(max_steps=1, save_strategy="no", eval_steps=1)
    batch = _batch(trainer)
    with torch.no_grad():
        _, m = trainer.pair_losses(trainer.model, batch, training=False)
    n_conflict = int((batch["better"] != batch["safer"]).sum())
    assert m["pairs_conflict"] == (n_conflict, 8) and m["pairs_agree"] == (8 - n_conflict, 8)
    assert m["loss_helpful_conflict"][1] == n_conflict and m["jc"][1] > 0
    out = trainer.evaluate()
    assert "eval_loss_safety_conflict" in out and "eval_jc_agree" in out
    feasible = out["eval_jc"] <= trainer.args.cost_threshold
    expected = out["eval_helpful_choice"] if feasible else -1.0 - (out["eval_jc"] - 0.05)
    assert out["eval_constrained_helpfulness"] == pytest.approx(expected)
    assert objective.constrained_helpfulness(0.7, 0.04, 0.05) == 0.7
    assert objective.constrained_helpfulness(0.9, 0.3, 0.05) == pytest.approx(-1.25)  # below any feasible one
    assert objective.constrained_helpfulness(None, None, 0.05) == 0.0


def test_per_category_state_in_checkpoints_and_resume_checks_groups(run, tmp_path):
    trainer, ctx = run(constraints="per_category", category_thresholds={"animal_abuse": 0.0}, lambda_max=20.0,
                       max_steps=4, save_steps=2, eval_strategy="no")
    g = trainer.constraint.grouped
    assert "animal_abuse" in g.keys and "default" in g.keys and g.thresholds["animal_abuse"] == 0.0
    assert _batch(trainer)["member"].shape == (8, len(g.keys))
    trainer.train()
    ckpt = tmp_path / "checkpoints" / "dpo" / "checkpoint-4"
    assert (ckpt / STATE_FILE).is_file() and (ckpt / GROUPS_FILE).is_file()
    saved = json.loads((ckpt / GROUPS_FILE).read_text())
    assert saved["lam"] == g.lam and len(saved["history"]) == 4
    assert trainer.constraint.lam == max(g.lam.values())
    # resuming with other thresholds is refused: the multipliers would mean something else
    other, _ = run(constraints="per_category", category_thresholds={"animal_abuse": 0.1}, max_steps=6,
                   save_steps=2, eval_strategy="no")
    with pytest.raises(ConfigError, match="thresholds differ"):
        other.train(resume_from_checkpoint=str(ckpt))


def test_on_policy_terms_by_kind():
    costs = torch.tensor([1.0, -2.0, 0.5, -0.1])
    harmful = [True, True, False, False]
    v, w = on_policy_terms("unsafe_choice", costs, harmful)
    assert v.tolist() == [1.0, 0.0, 1.0, 0.0] and w.tolist() == [1.0, 1.0, 0.0, 0.0]  # the compliance rate
    v, w = on_policy_terms("cost", costs, harmful)
    assert v.tolist() == costs.tolist() and w.tolist() == [1.0] * 4  # the seed's mean cost
    v, w = on_policy_terms("harmful_unsafe_rate", costs, [False] * 4)
    assert w.tolist() == [1.0] * 4  # nothing flagged: every sample counts


@pytest.mark.parametrize("over, message", [
    ({"cost_threshold": 1.5}, r"cost_threshold: constraint unsafe_choice is a rate"),
    ({"cost_threshold": 0.0}, r"lambda_max: cost_threshold = 0 \(zero tolerance\)"),
    ({"category_thresholds": {"x": 2.0}}, r"category_thresholds\.x: constraint unsafe_choice is a rate"),
    ({"category_thresholds": {"x": 0.0}, "constraints": "per_category"}, r"lambda_max: category_thresholds\.x = 0"),
    ({"constraint": "nope"}, r"dpo\.constraint: must be one of"),
    ({"safedpo_delta": -1.0}, r"safedpo_delta: must be >= 0"),
])
def test_config_checks(tmp_path, tiny_base, over, message):
    from safealign.config import Config

    with pytest.raises(ConfigError, match=message):
        Config({"dpo": over}).section("dpo")


def test_threshold_default_per_kind():
    from safealign.config import Config

    assert Config({}).section("dpo").constraint == "unsafe_choice"
    assert Config({}).section("dpo").cost_threshold == 0.05
    assert Config({"dpo": {"constraint": "cost"}}).section("dpo").cost_threshold == 0.0
    assert Config({"dpo": {"constraint": "cost", "cost_threshold": -2}}).section("dpo").cost_threshold == -2.0
