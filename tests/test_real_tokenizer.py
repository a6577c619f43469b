"""The chat format with the real Mistral-7B-v0.1 tokenizer on real text (PKU-SafeRLHF rows, MT-Bench).

Every stage tokenizes (prompt, response) with `chat.encode_pair` and prompts with `chat.prompt_text`; these
tests check, on real text, that what training sees is what generation produces and scoring reads.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from helpers.real import (BOS_ID, EOS_ID, HELLO_WORLD_IDS, mistral_tokenizer, mistral_tokenizer_dir,  # noqa: F401
                          mt_bench_questions, read_jsonl, real_path)

from safealign.chat import encode_pair, encode_prompt, prompt_text, response_text

GEN_PROMPT = [8602, 8048, 12738, 28747]  # " ASSISTANT:" -> ▁ASS IST ANT :
STRAY_SPACE = 28705  # "▁" alone: what a response tokenized on its own would start with


def _pku_pairs():
    rows = read_jsonl(real_path("pku_saferlhf", "pku_saferlhf_2024_alpaca7b_test_first10.jsonl"))
    return [(r["prompt"], r[f"response_{i}"]) for r in rows for i in (0, 1)]


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_real_tokenizer_loads_through_load_tokenizer(mistral_tokenizer):
    tok = mistral_tokenizer
    assert len(tok) == 32000
    assert tok("Hello world")["input_ids"] == HELLO_WORLD_IDS
    assert (tok.bos_token_id, tok.eos_token_id) == (BOS_ID, EOS_ID)
    assert tok.pad_token_id == EOS_ID  # Mistral base has no pad token: load_tokenizer sets pad = eos
    assert tok.padding_side == "right"


def test_ids_equal_sentencepiece_itself_on_real_text(mistral_tokenizer, mistral_tokenizer_dir):
    """The converted (fast) tokenizer against the SentencePiece model it came from, on every real text here."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(mistral_tokenizer_dir / "tokenizer.model"))
    answers = read_jsonl(real_path("judge_validation", "mt_bench_pairwise", "model_answer", "phi-3.jsonl"))
    texts = [t for pair in _pku_pairs() for t in pair]
    texts += [t for q in read_jsonl(mt_bench_questions()) for t in q["turns"]]
    texts += [t for a in answers for t in a["choices"][0]["turns"]]
    assert len(texts) > 300
    mismatched = [t[:60] for t in texts if _ids(mistral_tokenizer, t) != sp.encode(t)]
    assert not mismatched, mismatched[:3]


def test_without_sentencepiece_load_tokenizer_says_what_to_install(mistral_tokenizer_dir):
    code = ("import sys; sys.modules['sentencepiece'] = None\n"
            "from safealign.models.loading import load_tokenizer\n"
            "from safealign.errors import SafeAlignError\n"
            f"try:\n    load_tokenizer({str(mistral_tokenizer_dir)!r})\n"
            "except SafeAlignError as e:\n    print('ERR', e)\n"
            "else:\n    print('LOADED')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "ERR" in out.stdout and "sentencepiece" in out.stdout.split("ERR", 1)[1], out.stdout + out.stderr[-500:]


def test_pku_pairs_one_bos_one_eos_and_whole_text_ids(mistral_tokenizer):
    tok = mistral_tokenizer
    for prompt, response in _pku_pairs():
        enc = encode_pair(tok, prompt, response, max_length=4096)
        ids, n = enc["input_ids"], enc["prompt_len"]
        assert ids[0] == BOS_ID and ids.count(BOS_ID) == 1
        assert ids[-1] == EOS_ID and ids.count(EOS_ID) == 1
        # the boundary is exact AND the ids are those of tokenizing the whole conversation text at once
        whole = _ids(tok, prompt_text(tok, prompt) + response_text(response) + tok.eos_token)
        assert ids == whole
        assert ids[:n] == encode_prompt(tok, prompt, 4096) and ids[n - 4:n] == GEN_PROMPT
        assert tok.decode(ids[n:-1]) == response.strip()  # newlines and double spaces survive
        # the bug this guards: the response tokenized alone starts with a stray "▁" the model never generates
        assert _ids(tok, response_text(response))[0] == STRAY_SPACE and ids[n] != STRAY_SPACE


def test_generated_answer_is_tokenized_as_training_saw_it(mistral_tokenizer):
    """Generation encodes prompt_text without special tokens, decodes the new ids with skip_special_tokens and
    strips (generation._run_hf); the scorer re-encodes (prompt, answer) with encode_pair. A model that emits
    the training ids of a response must come back to exactly those ids."""
    tok = mistral_tokenizer
    for prompt, response in _pku_pairs():
        enc = encode_pair(tok, prompt, response, max_length=4096)
        n = enc["prompt_len"]
        generation_input = _ids(tok, prompt_text(tok, prompt))
        assert generation_input == enc["input_ids"][:n]
        emitted = enc["input_ids"][n:]  # the answer ids, ending with eos
        answer = tok.decode(emitted[:-1], skip_special_tokens=True).strip()
        assert encode_pair(tok, prompt, answer, max_length=4096)["input_ids"] == enc["input_ids"]


def test_mt_bench_two_turn_prompt_contains_turn_one_as_trained(mistral_tokenizer):
    tok = mistral_tokenizer
    questions = {q["question_id"]: q for q in read_jsonl(mt_bench_questions())}
    answers = read_jsonl(real_path("judge_validation", "mt_bench_pairwise", "model_answer", "phi-3.jsonl"))
    assert len(answers) == 80
    for a in answers:
        q = questions[a["question_id"]]["turns"]
        a1 = a["choices"][0]["turns"][0].strip()
        turn1 = encode_pair(tok, q[0], a1, max_length=8192)
        conv = [{"role": "user", "content": q[0]}, {"role": "assistant", "content": a1},
                {"role": "user", "content": q[1]}]
        ids = encode_prompt(tok, conv, 8192)
        assert ids.count(BOS_ID) == 1 and ids[0] == BOS_ID
        assert ids.count(EOS_ID) == 1  # closes the first answer only
        assert ids[-4:] == GEN_PROMPT
        # turn 2 is generated after exactly the ids a (q1, a1) training pair has
        assert ids[:len(turn1["input_ids"])] == turn1["input_ids"]
        assert tok.decode(turn1["input_ids"][turn1["prompt_len"]:-1]) == a1


def test_truncating_the_longest_real_prompts_keeps_bos_and_generation_prompt(mistral_tokenizer):
    tok = mistral_tokenizer
    texts = [p for p, _ in _pku_pairs()] + [t for q in read_jsonl(mt_bench_questions()) for t in q["turns"]]
    longest = sorted(texts, key=lambda t: -len(_ids(tok, prompt_text(tok, t))))[:8]
    full_len = len(_ids(tok, prompt_text(tok, longest[0])))
    assert full_len > 300  # real long prompts, not toy ones
    for text in longest:
        for max_prompt in (16, 64):
            enc = encode_pair(tok, text, "I cannot help with that.", max_length=2 * max_prompt,
                              max_prompt_length=max_prompt)
            ids, n = enc["input_ids"], enc["prompt_len"]
            assert n == max_prompt and ids[0] == BOS_ID and ids.count(BOS_ID) == 1
            assert ids[n - 4:n] == GEN_PROMPT
            assert ids[:n] == encode_prompt(tok, text, max_prompt)
            assert tok.decode(ids[n:-1]) == "I cannot help with that." and ids[-1] == EOS_ID
            # the kept tail is the end of the question
            assert ids[1:n] == _ids(tok, prompt_text(tok, text))[-(n - 1):]


def test_truncated_response_has_no_eos(mistral_tokenizer):
    """A response cut to fit max_length ends without eos: training must not teach the model to stop there."""
    prompt, response = _pku_pairs()[0]
    enc = encode_pair(mistral_tokenizer, prompt, response, max_length=80, max_prompt_length=40)
    assert len(enc["input_ids"]) == 80 and EOS_ID not in enc["input_ids"]


def test_reward_readout_is_at_the_trailing_eos_when_pad_is_eos(mistral_tokenizer):
    from transformers import MistralConfig, MistralForSequenceClassification

    from safealign.rm.modeling import pad_right, sequence_scores
    from safealign.rm.scoring import score_pairs

    tok = mistral_tokenizer
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=32000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                        num_labels=1, pad_token_id=tok.pad_token_id)
    model = MistralForSequenceClassification(cfg).eval()
    pairs = _pku_pairs()[:4]
    seqs = [encode_pair(tok, p, r, max_length=1024)["input_ids"] for p, r in pairs]
    ids, mask = pad_right(seqs, tok.pad_token_id)
    assert (ids[mask == 0] == EOS_ID).all()  # padding is eos, indistinguishable by id from the real eos
    with torch.no_grad():
        batched = sequence_scores(model, ids, mask)
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        per_token = model.score(hidden)[..., 0]  # (B, T)
        hf_pooled = model(input_ids=ids, attention_mask=mask).logits[:, 0]
        for i, s in enumerate(seqs):
            alone = sequence_scores(model, torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long))
            assert batched[i].item() == pytest.approx(alone.item(), abs=1e-4)
            assert batched[i].item() == pytest.approx(per_token[i, len(s) - 1].item(), abs=1e-4)  # at the eos
            # transformers' own pooling reads the last token that is not pad_token_id: the one before eos
            assert hf_pooled[i].item() == pytest.approx(per_token[i, len(s) - 2].item(), abs=1e-4)
    scored = score_pairs(model, tok, [p for p, _ in pairs], [r for _, r in pairs], max_length=1024,
                         max_tokens_per_batch=1500, show_progress=False)
    assert scored == pytest.approx(batched.tolist(), abs=1e-4)
