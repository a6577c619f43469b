"""`safealign prepare`: every schema and file format, detection/forcing, cleaning, split, bad input, atomicity."""

import csv
import json
from pathlib import Path

import pytest

from safealign.cli import main
from safealign.data.config import DataConfig
from safealign.data.prepare import run_prepare
from safealign.data.schemas import detect_schema
from safealign.errors import DataError
from safealign.fileio import read_jsonl
from safealign.toy.config import ToyWorldConfig

CATS = ["animal_abuse", "self_harm"]


def pku_row(i: int, v2024: bool = False, **over) -> dict:
    row = {"prompt": f"question number {i // 2}?", "response_0": f"answer a{i}", "response_1": f"answer b{i}",
           "is_response_0_safe": i % 3 != 0, "is_response_1_safe": True,
           "better_response_id": i % 2, "safer_response_id": 1 if i % 3 == 0 else 0}
    if v2024:
        row.update({"response_0_harm_category": {c: (i % 3 == 0 and c == "self_harm") for c in CATS},
                    "response_1_harm_category": {c: False for c in CATS},
                    "response_0_severity_level": 2 if i % 3 == 0 else 0, "response_1_severity_level": 0,
                    "prompt_source": "x", "response_0_source": "m", "response_1_source": "m",
                    "response_0_sha256": "0", "response_1_sha256": "1"})
    row.update(over)
    return row


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def prepare(tmp_path, dataset, name="out", **cfg):
    data = DataConfig(dataset=str(dataset), **cfg)
    return run_prepare(data, ToyWorldConfig(num_pairs=300), tmp_path / name)


# --------------------------------------------------------------------------- schemas and formats
def test_pku2023_jsonl(tmp_path):
    src = write_jsonl(tmp_path / "pku.jsonl", [pku_row(i) for i in range(60)])
    summary = prepare(tmp_path, src)
    assert summary["schemas"] == {"pku2023": 60}
    recs = [r for s in ("train", "val", "test") for r in read_jsonl(tmp_path / "out" / f"{s}.jsonl")]
    assert len(recs) == 60
    rec = next(r for r in recs if r["response_0"] == "answer a3")
    assert rec["is_response_0_safe"] is False and rec["safer_response_id"] == 1 and rec["better_response_id"] == 1
    assert rec["is_harmful_prompt"] is True and rec["harm_categories"] == [] and rec["severity"] is None
    assert rec["source"] == "pku.jsonl" and len(rec["id"]) == 16
    for name in ("stats.json", "stats.md", "config.yaml"):
        assert (tmp_path / "out" / name).is_file()


def test_pku2024_json_list_and_harm_categories(tmp_path):
    src = tmp_path / "pku.json"
    src.write_text(json.dumps([pku_row(i, v2024=True) for i in range(30)]))
    summary = prepare(tmp_path, src)
    assert summary["schemas"] == {"pku2024": 30}
    assert summary["all"]["preference"]["harm_categories"] == {"self_harm": 10}
    recs = read_jsonl(tmp_path / "out" / "train.jsonl")
    flagged = [r for r in recs if r["harm_categories"]]
    assert flagged and all(r["harm_categories"] == ["self_harm"] and r["severity"] == 2 for r in flagged)


def test_pair_schema_csv(tmp_path):
    src = tmp_path / "pairs.csv"
    with open(src, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "response_chosen", "response_rejected", "helpful_label", "harmless_label"])
        for i in range(20):
            w.writerow([f"p{i}", f"chosen, with comma {i}", f"rejected {i}", i % 2, 1])
    prepare(tmp_path, src)
    recs = [r for s in ("train", "val", "test") for r in read_jsonl(tmp_path / "out" / f"{s}.jsonl")]
    rec = next(r for r in recs if r["prompt"] == "p3")
    assert rec["response_0"] == "chosen, with comma 3" and rec["response_1"] == "rejected 3"
    assert rec["better_response_id"] == 0 and rec["safer_response_id"] == 0
    rec = next(r for r in recs if r["prompt"] == "p4")
    assert rec["better_response_id"] == 1 and rec["safer_response_id"] == 0
    assert rec["is_response_0_safe"] is None and rec["is_harmful_prompt"] is None  # unknown in this schema


def test_beavertails_parquet_goes_to_safety_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"q{i}", "response": f"r{i}", "category": {"self_harm": i % 2 == 0, "animal_abuse": False},
             "is_safe": i % 2 == 1} for i in range(40)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bt.parquet")
    summary = prepare(tmp_path, tmp_path / "bt.parquet")
    assert summary["schemas"] == {"beavertails": 40}
    safety = [r for s in ("train", "val", "test") for r in read_jsonl(tmp_path / "out" / f"safety_{s}.jsonl")]
    assert len(safety) == 40 and read_jsonl(tmp_path / "out" / "train.jsonl") == []
    rec = next(r for r in safety if r["prompt"] == "q2")
    assert rec == {"id": rec["id"], "prompt": "q2", "response": "r2", "category": ["self_harm"], "is_safe": False,
                   "source": "bt.parquet"}


def test_beavertails_string_category_and_folder_of_mixed_files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [pku_row(i) for i in range(10)])
    write_jsonl(folder / "b.jsonl", [{"prompt": f"q{i}", "response": "r", "category": "self_harm", "is_safe": False}
                                     for i in range(10)])
    (folder / "notes.txt").write_text("ignored")
    summary = prepare(tmp_path, folder)
    assert summary["schemas"] == {"pku2023": 10, "beavertails": 10}
    safety = [r for s in ("train", "val", "test") for r in read_jsonl(tmp_path / "out" / f"safety_{s}.jsonl")]
    assert {tuple(r["category"]) for r in safety} == {("self_harm",)}


def test_detection_and_forcing(tmp_path):
    assert detect_schema(pku_row(0)) == "pku2023"
    assert detect_schema(pku_row(0, v2024=True)) == "pku2024"
    assert detect_schema(["prompt", "response_chosen", "response_rejected", "helpful_label", "harmless_label"]) == "pair"
    assert detect_schema(["prompt", "response", "category", "is_safe"]) == "beavertails"
    assert detect_schema(["text", "label"]) is None
    src = write_jsonl(tmp_path / "p.jsonl", [pku_row(i, v2024=True) for i in range(10)])
    assert prepare(tmp_path, src, name="o1", schema="pku2023")["schemas"] == {"pku2023": 10}
    with pytest.raises(DataError, match="response_chosen: column missing for schema pair"):
        prepare(tmp_path, src, name="o2", schema="pair")
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"text": "x", "label": 1}])
    with pytest.raises(DataError, match="cannot detect the schema"):
        prepare(tmp_path, odd, name="o3")


# --------------------------------------------------------------------------- cleaning and split
def test_cleaning_drops_are_counted_by_reason(tmp_path):
    rows = [pku_row(i) for i in range(20)]
    rows += [pku_row(0), pku_row(1, response_0="answer b1", response_1="answer a1")]  # exact dup; swapped dup
    rows += [pku_row(100, prompt=None), pku_row(101, response_1="   "), pku_row(102, response_1="answer a102")]
    rows += [pku_row(103, is_response_0_safe=None)]
    rows += [pku_row(104, response_0=" ".join(["w"] * 50))]
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    summary = prepare(tmp_path, src, max_tokens=30, min_tokens=3)
    assert summary["dropped"] == {"duplicate": 2, "missing_field": 2, "empty_field": 1, "identical_responses": 1,
                                  "too_long": 1}
    assert summary["rows_read"] == 27 and summary["rows_kept"] == 20
    # "question number N?" + "answer xN" = 5 words: min_tokens 6 drops every row, which is an error
    with pytest.raises(DataError, match=r"no usable rows left \(dropped: too_short 23, "):
        prepare(tmp_path, src, name="o2", min_tokens=6)
    assert not (tmp_path / "o2").exists()


def test_split_by_prompt_disjoint_and_deterministic(tmp_path):
    src = write_jsonl(tmp_path / "s.jsonl", [pku_row(i) for i in range(400)])
    prepare(tmp_path, src, name="a")
    prepare(tmp_path, src, name="b")
    prepare(tmp_path, src, name="c", seed=7)
    prompts = {}
    for s in ("train", "val", "test"):
        a = (tmp_path / "a" / f"{s}.jsonl").read_bytes()
        assert a == (tmp_path / "b" / f"{s}.jsonl").read_bytes()
        prompts[s] = {r["prompt"] for r in read_jsonl(tmp_path / "a" / f"{s}.jsonl")}
    assert not (prompts["train"] & prompts["val"] or prompts["train"] & prompts["test"] or prompts["val"] & prompts["test"])
    assert [len(prompts[s]) for s in ("train", "val", "test")] == [160, 20, 20]
    assert (tmp_path / "c" / "train.jsonl").read_bytes() != (tmp_path / "a" / "train.jsonl").read_bytes()


def test_toy_dataset_stats(tmp_path):
    summary = run_prepare(DataConfig(), ToyWorldConfig(num_pairs=500, seed=1), tmp_path / "toy")
    assert summary["schemas"] == {"pku2024": 500} and summary["rows_dropped"] == 0
    allp = summary["all"]["preference"]
    assert 0.5 < allp["better_is_safer"] < 0.8 and len(allp["harm_categories"]) == 14
    stats = json.loads((tmp_path / "toy" / "stats.json").read_text())
    assert len(stats["samples"]) == 3 and "## Splits" in (tmp_path / "toy" / "stats.md").read_text()


# --------------------------------------------------------------------------- bad input through the CLI
BAD = [
    (lambda: pku_row(1, better_response_id=2), 3, "better_response_id", "must be 0 or 1"),
    (lambda: pku_row(1, is_response_0_safe="maybe"), 3, "is_response_0_safe", "expected true or false"),
    (lambda: pku_row(1, prompt=["not", "text"]), 3, "prompt", "expected a string"),
    (lambda: pku_row(1, safer_response_id="1"), 3, "safer_response_id", "must be 0 or 1"),
    (lambda: '{"prompt": "cut off', 3, None, "unreadable line"),
    (lambda: "[1, 2]", 3, None, "expected an object"),
]


@pytest.mark.parametrize("bad,row,field,problem", BAD)
def test_bad_row_exit_2_names_file_row_field(tmp_path, capsys, bad, row, field, problem):
    src = write_jsonl(tmp_path / "bad.jsonl", [pku_row(4), pku_row(5), bad(), pku_row(6)])
    out = tmp_path / "out"
    assert main(["prepare", "--dataset", str(src), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    expected = f"{src}:{row}: {field}: " if field else f"{src}:{row}: "
    assert err.startswith("error: " + expected) and problem in err, err
    assert not out.exists() and not list(tmp_path.glob(".out*"))  # nothing half-written


def test_bad_csv_and_json_rows(tmp_path, capsys):
    src = tmp_path / "bad.csv"
    src.write_text("prompt,response_0,response_1,is_response_0_safe,is_response_1_safe,better_response_id,"
                   "safer_response_id\np,a,b,true,false,0,1\np2,a,b,TRUE,0,7,1\n")
    assert main(["prepare", "--dataset", str(src), "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {src}:3: better_response_id: must be 0 or 1 (got '7')"
    src = tmp_path / "bad.json"
    src.write_text(json.dumps([pku_row(0), pku_row(1, response_1_severity_level=-1, response_0_harm_category={})]))
    assert main(["prepare", "--dataset", str(src), "--output", str(tmp_path / "o"), "--schema", "pku2024"]) == 2
    assert f"{src}:2: response_1_severity_level: expected a severity level" in capsys.readouterr().err
    assert main(["prepare", "--dataset", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_on_error_skip_counts_malformed(tmp_path, capsys):
    rows = [pku_row(i) for i in range(10)] + [pku_row(50, better_response_id=5), "not json"]
    src = write_jsonl(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "out"
    assert main(["prepare", "--dataset", str(src), "--output", str(out), "--on-error", "skip", "--show", "2"]) == 0
    stdout = capsys.readouterr().out
    assert "malformed 2" in stdout and len([ln for ln in stdout.splitlines() if ln.startswith("{")]) == 2
    stats = json.loads((out / "stats.json").read_text())
    assert stats["dropped"] == {"malformed": 2} and stats["errors"][0].startswith(f"{src}:11: better_response_id")
    assert "malformed" in (out / "stats.md").read_text()


def test_failed_rerun_keeps_previous_output_and_refuses_foreign_folder(tmp_path, capsys):
    src = write_jsonl(tmp_path / "ok.jsonl", [pku_row(i) for i in range(10)])
    out = tmp_path / "out"
    assert main(["prepare", "--dataset", str(src), "--output", str(out)]) == 0
    before = (out / "train.jsonl").read_bytes()
    write_jsonl(src, [pku_row(i) for i in range(10)] + [pku_row(1, better_response_id=9)])
    assert main(["prepare", "--dataset", str(src), "--output", str(out)]) == 2
    assert (out / "train.jsonl").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["ok.jsonl", "out"]
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    assert main(["prepare", "--dataset", "toy", "--output", str(foreign)]) == 1
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_cli_defaults_and_config_errors(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["prepare", "--run-dir", str(run_dir), "--set", "toy.num_pairs=200", "--set", "val_fraction=0.2",
                 "--set", "test_fraction=0.0"]) == 0
    assert (run_dir / "data" / "train.jsonl").is_file() and not read_jsonl(run_dir / "data" / "test.jsonl")
    assert main(["prepare", "--set", "train_fraction=0.5", "--output", str(tmp_path / "x")]) == 2
    assert "data.train_fraction: train_fraction + val_fraction + test_fraction must sum to 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_crash_while_writing_leaves_nothing(tmp_path, monkeypatch):
    import safealign.data.stats as stats_module

    def boom(_stats):
        raise RuntimeError("disk full")

    monkeypatch.setattr(stats_module, "render_markdown", boom)
    src = write_jsonl(tmp_path / "ok.jsonl", [pku_row(i) for i in range(10)])
    with pytest.raises(RuntimeError, match="disk full"):
        prepare(tmp_path, src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.jsonl"]  # no out/, no temporary folder


def test_hub_id_goes_through_datasets_offline(tmp_path, capsys):
    # Offline here (HF_DATASETS_OFFLINE=1): the real load_dataset call fails and is reported as one line, exit 2.
    assert main(["prepare", "--dataset", "PKU-Alignment/PKU-SafeRLHF", "--split", "test", "--revision", "main",
                 "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: PKU-Alignment/PKU-SafeRLHF[test]: cannot load from the Hub") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
