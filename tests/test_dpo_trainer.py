"""SafeMMDPOTrainer on the tiny model with real (random-head) judges: the loss reduces to λ-weighted DPO,
gradients reach only the policy, online == precompute, λ dual ascent, NaN guard, atomic checkpoints."""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from helpers.dpo import make_cfg, make_run

from safealign.dpo.lagrange import STATE_FILE, LagrangeState
from safealign.dpo.train import build_trainer
from safealign.errors import SafeAlignError
from safealign.training import resolve_resume


def resolve_checkpoint(out, which):
    return resolve_resume(which, out, (STATE_FILE,))


@pytest.fixture(scope="module")
def judges(tmp_path_factory, tiny_base):
    root = tmp_path_factory.mktemp("judges")
    make_run(root, tiny_base)
    return root


@pytest.fixture
def run(tmp_path, tiny_base, judges):
    def _make(**over):
        make_run(tmp_path, tiny_base, rm_root=judges)
        return build_trainer(make_cfg(tmp_path, tiny_base, judges, **over))

    return _make


def _first_batch(trainer, n=4):
    return trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(n)]))


def _manual_logp(model, ids, prompt_len):
    """Σ log p over response tokens of one unpadded sequence (independent of the trainer's batching)."""
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    return sum(logp[t - 1, ids[t]].item() for t in range(prompt_len, len(ids)))


def test_reduction_to_lambda_weighted_dpo_on_a_real_model(run):
    lam = 0.7
    trainer, ctx = run(w=0.0, kl_coeff=0.0, lambda_init=lam)
    batch = _first_batch(trainer)
    with torch.no_grad():
        loss, metrics = trainer.pair_losses(trainer.model, batch, training=False)
    model, feats, cached = trainer.model.eval(), trainer.train_dataset.features[:4], ctx["cached"]["train"][:4]
    dpo_h, dpo_s = [], []
    for f, c in zip(feats, cached):
        pol = (_manual_logp(model, f["input_ids_0"], f["prompt_len_0"]), _manual_logp(model, f["input_ids_1"], f["prompt_len_1"]))
        ref = (c["ref_logp_0"], c["ref_logp_1"])
        for choice, out in ((f["better"], dpo_h), (f["safer"], dpo_s)):
            w, l = choice, 1 - choice
            out.append(-F.logsigmoid(torch.tensor(0.1 * ((pol[w] - ref[w]) - (pol[l] - ref[l])))).item())
    expected = (sum(dpo_h) / 4 + lam * sum(dpo_s) / 4) / (1 + lam)
    assert loss.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert metrics["beta_helpful_mean"] == pytest.approx(0.1) and metrics["beta_safety_mean"] == pytest.approx(0.1)


def test_gradients_reach_only_the_policy(run):
    trainer, _ = run(precompute=False)  # online: reference and both judges resident
    assert trainer.ref_model is not None and trainer.helpful_scorer and trainer.cost_scorer
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, _first_batch(trainer))
    loss.backward()
    policy_grads = [p.grad for p in trainer.model.parameters() if p.requires_grad]
    assert all(g is not None for g in policy_grads) and any(g.abs().sum() > 0 for g in policy_grads)
    for frozen in (trainer.ref_model, trainer.helpful_scorer[0], trainer.cost_scorer[0]):
        assert all(p.grad is None and not p.requires_grad for p in frozen.parameters())


def test_online_mode_matches_precompute_first_step(run):
    losses_ = {}
    for precompute in (True, False):
        trainer, _ = run(precompute=precompute, max_steps=1, save_strategy="no", eval_strategy="no")
        trainer.train()
        losses_[precompute] = trainer.state.log_history[0]
    for key in ("loss_total", "loss_helpful", "loss_safety", "delta_helpful_mean", "delta_safety_mean"):
        assert losses_[False][key] == pytest.approx(losses_[True][key], rel=1e-4, abs=1e-5), key


def test_lambda_rises_when_cost_exceeds_threshold_and_stays_nonnegative(run):
    trainer, _ = run(constraint="cost", cost_threshold=-100.0, lambda_lr=0.01, lambda_init=1.0, max_steps=3,
                     save_strategy="no", eval_strategy="no")
    trainer.train()
    hist = trainer.lagrange.history
    assert [h[0] for h in hist] == [1, 2, 3]
    lams = [1.0] + [h[1] for h in hist]
    assert all(b > a for a, b in zip(lams, lams[1:]))
    for (_, lam, jc), prev in zip(hist, lams):  # each update is exactly λ + lr (J_C − threshold)
        assert lam == pytest.approx(prev + 0.01 * (jc + 100.0))
    trainer, _ = run(constraint="cost", cost_threshold=100.0, lambda_lr=0.01, lambda_init=0.5, max_steps=2,
                     save_strategy="no", eval_strategy="no")
    trainer.train()
    assert [h[1] for h in trainer.lagrange.history] == [0.0, 0.0]


def test_lagrange_state_update_every_n_and_cap():
    st = LagrangeState(lam=1.0)
    st.accumulate(3.0)
    assert not st.step(lr=0.5, threshold=1.0, lambda_max=None, every=2)
    st.accumulate(float("nan"))  # ignored
    st.accumulate(5.0)
    assert st.step(lr=0.5, threshold=1.0, lambda_max=None, every=2)
    assert st.lam == pytest.approx(1.0 + 0.5 * (4.0 - 1.0)) and st.jc_count == 0
    st.accumulate(100.0)
    st.step(0.5, 1.0, 3.0, 1)
    assert st.lam == 3.0
    assert LagrangeState.from_dict(st.to_dict()) == st


def test_dpo_variant_ignores_safety_and_lambda(run, tmp_path):
    trainer, ctx = run(algorithm="dpo", max_steps=1, save_strategy="no", eval_strategy="no")
    assert ctx["harmless_rm"] is not None  # judges that exist are used: ablations share the cache
    trainer, ctx = run(algorithm="dpo", max_steps=1, save_strategy="no", eval_strategy="no",
                       helpful_rm_path=str(tmp_path / "none_h"), harmless_rm_path=str(tmp_path / "none_c"))
    assert ctx["helpful_rm"] is None and ctx["harmless_rm"] is None  # plain DPO needs no judge
    batch = _first_batch(trainer)
    with torch.no_grad():
        loss, m = trainer.pair_losses(trainer.model, batch, training=False)
    assert loss.item() == pytest.approx(m["loss_helpful"] + 0.1 * m["loss_kl"], rel=1e-5)


def test_nan_steps_are_skipped_then_stop(run):
    trainer, _ = run(max_nan_steps=2, max_steps=10, save_strategy="no", eval_strategy="no")
    for f in trainer.train_dataset.features:
        f["ref_logp_0"] = math.nan
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(SafeAlignError, match="non-finite loss"):
        trainer.train()
    assert trainer.lagrange.nan_steps_total == 3
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no update happened


def test_checkpoints_are_complete_and_atomic(run, tmp_path):
    trainer, ctx = run(max_steps=4, save_steps=2, eval_strategy="no")
    trainer.train()
    out = ctx["args"].output_dir
    assert sorted(os.listdir(out)) == ["checkpoint-2", "checkpoint-4"]  # no staging leftovers
    files = set(os.listdir(os.path.join(out, "checkpoint-4")))
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
            "safealign_state.json", "config.yaml"} <= files
    assert resolve_checkpoint(out, "latest").endswith("checkpoint-4")
    # a save killed before its rename leaves only staging; a folder without the λ state is not complete
    os.makedirs(os.path.join(out, ".staging", "checkpoint-6"))
    os.makedirs(os.path.join(out, "checkpoint-8"))
    assert resolve_checkpoint(out, "latest").endswith("checkpoint-4")
    with pytest.raises(SafeAlignError, match="not a complete"):
        resolve_checkpoint(out, os.path.join(out, "checkpoint-8"))


def test_a_save_that_dies_midway_leaves_no_checkpoint(run):
    trainer, ctx = run(max_steps=2, save_steps=1, eval_strategy="no")

    def die(output_dir):  # the process "dies" after the weights and optimizer are written
        raise KeyboardInterrupt("killed while saving")

    trainer._save_rng_state = die
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    out = ctx["args"].output_dir
    assert os.listdir(out) == [".staging"]  # the partial save is only in staging
    assert resolve_checkpoint(out, "latest") is None  # nothing to resume: a fresh start
    trainer, ctx = run(max_steps=2, save_steps=1, eval_strategy="no")
    trainer.train()  # a fresh start clears staging
    assert sorted(os.listdir(out)) == ["checkpoint-1", "checkpoint-2"]


def test_tensorboard_events_in_logs_dir(tmp_path, tiny_base, judges):
    from safealign.config import Config

    make_run(tmp_path, tiny_base, rm_root=judges)
    cfg = make_cfg(tmp_path, tiny_base, judges, max_steps=2, save_strategy="no", eval_strategy="no")
    raw = dict(cfg.raw, run=dict(cfg.raw["run"], report_to=["tensorboard"]))
    trainer, ctx = build_trainer(Config(raw))
    trainer.train()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "logs" / "dpo").iterdir())


def test_empty_response_is_a_response_span_ending_in_eos(tmp_path, tiny_base, judges):
    """The shared record rules allow an empty answer; DPO gives it a response span (separator + EOS) whose
    log-probability is finite, and the loss over a batch holding it is finite."""
    from helpers.dpo import toy_records, write_jsonl

    make_run(tmp_path, tiny_base, rm_root=judges)
    rows = toy_records(24)
    rows[0]["response_1"] = ""
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    trainer, ctx = build_trainer(make_cfg(tmp_path, tiny_base, judges))
    tok, f = ctx["tokenizer"], trainer.train_dataset.features[0]
    span = f["input_ids_1"][f["prompt_len_1"]:]
    assert 1 <= len(span) <= 2 and span[-1] == tok.eos_token_id
    assert tok.decode(span, skip_special_tokens=True).strip() == ""
    assert f["input_ids_1"][:f["prompt_len_1"]] == f["input_ids_0"][:f["prompt_len_0"]]  # same prompt tokens
    assert math.isfinite(ctx["cached"]["train"][0]["ref_logp_1"]) and ctx["cached"]["train"][0]["ref_logp_1"] < 0
    with torch.no_grad():
        loss, _ = trainer.pair_losses(trainer.model, _first_batch(trainer), training=False)
    assert torch.isfinite(loss)


def test_zero_optimizer_steps_is_a_config_error(run):
    from safealign.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^dpo.num_train_epochs: 24 training examples .* no optimizer step"):
        run(num_train_epochs=0.1)  # 24 pairs / 4 a batch = 6 batches: 0.6 of a step


def test_ablation_stage_has_its_own_checkpoints_logs_and_model(tmp_path, tiny_base, judges):
    from safealign.config import Config

    make_run(tmp_path, tiny_base, rm_root=judges)
    cfg = make_cfg(tmp_path, tiny_base, judges, algorithm="mm_dpo")
    raw = dict(cfg.raw, run=dict(cfg.raw["run"], report_to=["tensorboard"]))
    trainer, ctx = build_trainer(Config(raw), stage="dpo_mm_dpo")
    assert trainer.args.output_dir == str(tmp_path / "checkpoints" / "dpo_mm_dpo")
    assert ctx["output"] == tmp_path / "models" / "aligned_mm_dpo"
    boards = [cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == "TensorBoardCallback"]
    assert [cb.logging_dir for cb in boards] == [str(tmp_path / "logs" / "dpo_mm_dpo")]


def test_the_config_decides_the_starting_policy_not_a_leftover_folder(tmp_path, tiny_base, judges):
    from safealign.config import Config

    make_run(tmp_path, tiny_base, rm_root=judges)
    (tmp_path / "models" / "sft").mkdir(parents=True)
    (tmp_path / "models" / "sft" / "config.json").write_text("{}")  # left over from another run
    cfg = make_cfg(tmp_path, tiny_base, judges)
    _, ctx = build_trainer(cfg)
    assert ctx["policy"] == str(tiny_base)  # sft is off: model.name_or_path
    (tmp_path / "models" / "sft" / "config.json").unlink()
    with pytest.raises(SafeAlignError, match=r"models/sft: the starting policy \(sft.enabled\) is not trained yet"):
        build_trainer(Config(dict(cfg.raw, sft={"enabled": True})))
