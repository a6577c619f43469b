"""Real data through `safealign prepare` and the evaluation prompt loaders (files under ../shared/data/real).

The NC files are read in place or copied into pytest's temporary folder only; nothing is copied into the repo.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers.real import read_jsonl, real_path

from safealign.cli import main
from safealign.data.config import DataConfig
from safealign.data.prepare import run_prepare
from safealign.toy.config import ToyWorldConfig

PKU = ("pku_saferlhf", "pku_saferlhf_2024_alpaca7b_test_first10.jsonl")


def _records(out: Path) -> list[dict]:
    return [r for s in ("train", "val", "test") for r in read_jsonl(out / f"{s}.jsonl")]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- PKU-SafeRLHF 2024 rows
def test_prepare_real_pku_rows_keeps_every_field_meaning(tmp_path):
    src = real_path(*PKU)
    raw = read_jsonl(src)
    assert len(raw) == 10 and all(len(r["response_0_harm_category"]) == 19 for r in raw)
    summary = run_prepare(DataConfig(dataset=str(src), show=0), ToyWorldConfig(), tmp_path / "out")
    assert summary["schemas"] == {"pku2024": 10} and summary["rows_dropped"] == 0  # every hash checks out
    by_prompt = {r["prompt"]: r for r in _records(tmp_path / "out")}
    assert len(by_prompt) == 10
    for row in raw:
        rec = by_prompt[row["prompt"]]
        assert (rec["response_0"], rec["response_1"]) == (row["response_0"], row["response_1"])
        assert rec["better_response_id"] == row["better_response_id"]
        assert rec["safer_response_id"] == row["safer_response_id"]
        assert (rec["is_response_0_safe"], rec["is_response_1_safe"]) == (row["is_response_0_safe"],
                                                                        row["is_response_1_safe"])
        flagged = {k for i in (0, 1) for k, v in row[f"response_{i}_harm_category"].items() if v}
        assert rec["harm_categories"] == sorted(flagged)
        assert rec["severity"] == max(row["response_0_severity_level"], row["response_1_severity_level"])
        assert 0 <= rec["severity"] <= 3
        assert rec["is_harmful_prompt"] == (bool(flagged) or not (row["is_response_0_safe"]
                                                                   and row["is_response_1_safe"]))
        assert rec["sources"] == {"prompt": row["prompt_source"], "response_0": row["response_0_source"],
                                  "response_1": row["response_1_source"]}
        assert rec["source"] == src.name
    assert sum(r["better_response_id"] != r["safer_response_id"] for r in raw) == 1  # kept as such
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["all"]["preference"]["better_is_safer"] == 0.9


def _tampered(tmp_path: Path) -> Path:
    rows = read_jsonl(real_path(*PKU))
    rows[2]["response_0"] = rows[2]["response_0"].replace("the", "teh", 1)  # one word changed, hash kept
    assert hashlib.sha256((rows[2]["prompt"] + rows[2]["response_0"]).encode()).hexdigest() != rows[2][
        "response_0_sha256"]
    return _write(tmp_path / "pku_tampered.jsonl", rows)


def test_hash_mismatch_is_dropped_and_counted_or_stops_the_run(tmp_path, capsys):
    src = _tampered(tmp_path)
    assert main(["prepare", "--dataset", str(src), "--output", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert f"{src}:3: response_0_sha256: sha256(prompt + response_0) is " in err and "--on-error skip" in err
    assert not (tmp_path / "a").exists()
    assert main(["prepare", "--dataset", str(src), "--output", str(tmp_path / "b"), "--on-error", "skip",
                 "--show", "0"]) == 0
    out = capsys.readouterr().out
    assert "dropped: hash_mismatch 1" in out and f"skipped: {src}:3: response_0_sha256" in out
    stats = json.loads((tmp_path / "b" / "stats.json").read_text())
    assert stats["dropped"] == {"hash_mismatch": 1} and stats["rows_kept"] == 9
    assert stats["errors"][0].endswith("[hash_mismatch]")
    assert "| hash_mismatch | 1 |" in (tmp_path / "b" / "stats.md").read_text()


def test_missing_prompt_or_response_follows_on_error(tmp_path, capsys):
    rows = read_jsonl(real_path(*PKU))
    del rows[1]["response_1"]
    rows[4]["prompt"] = "   "
    src = _write(tmp_path / "pku_holes.jsonl", rows)
    assert main(["prepare", "--dataset", str(src), "--output", str(tmp_path / "a")]) == 2
    assert f"{src}:2: response_1: missing (--on-error skip drops such rows" in capsys.readouterr().err
    assert main(["prepare", "--dataset", str(src), "--output", str(tmp_path / "b"), "--on-error", "skip",
                 "--show", "0"]) == 0
    out = capsys.readouterr().out
    assert "kept 8; dropped: missing_field 1, empty_field 1" in out
    assert f"skipped: {src}:2: response_1: missing [missing_field]" in out
    assert f"skipped: {src}:5: prompt: empty [empty_field]" in out


def test_beavertails_sample_without_is_safe_is_a_clear_error(tmp_path, capsys):
    src = real_path("beavertails", "beavertails_30k_train_sample140.csv")
    assert main(["prepare", "--dataset", str(src), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{src}: is_safe: column missing" in err and "eval.safety_prompts" in err
    assert main(["prepare", "--dataset", str(src), "--output", str(tmp_path / "o"), "--schema", "beavertails"]) == 2
    assert f"{src}: is_safe: column missing for schema beavertails" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_cut_off_and_empty_files_say_so(tmp_path, capsys, suffix):
    rows = read_jsonl(real_path(*PKU))
    text = json.dumps(rows, indent=1) if suffix == ".json" else "".join(json.dumps(r) + "\n" for r in rows)
    cut = tmp_path / f"cut{suffix}"
    cut.write_text(text[: len(text) // 2], encoding="utf-8")
    assert main(["prepare", "--dataset", str(cut), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Unterminated string starting at" in err and "column" in err and "the text ends early: cut off?" in err
    empty = tmp_path / f"empty{suffix}"
    empty.write_text("", encoding="utf-8")
    assert main(["prepare", "--dataset", str(empty), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{empty}: no rows in this file (it is empty)" in err and "columns []" not in err
