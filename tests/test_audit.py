"""Regression tests for the hostile audit of 2026-12-05 (/work/shared/reports/hostile-audit-2026-12-05.md),
kvcalc issue 23: one test per finding, named after it (test_f2_..., test_u5_...)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

import kvcalc
from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.formulas.kv import kv_bytes_per_sequence
from kvcalc.specs.catalog import load_model

runner = CliRunner()


def cli(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def one_line_error(result, *needles):
    """Exit 2, no traceback, one 'kvcalc: error:' line holding every needle."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    err = result.stderr if hasattr(result, "stderr") else result.output
    lines = [x for x in err.splitlines() if x.startswith("kvcalc: error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------------------- F2
# A sequence lives in one data-parallel replica: the fullest replica holds ceil(batch / dp) whole sequences.

@pytest.mark.parametrize("model,gpu,ep,w", [("llama-4-scout", "rtx-pro-6000", 4, "auto"),
                                            ("mixtral-8x7b", "l40s", 4, "auto"), ("deepseek-v2-lite", "l4", 2, "auto"),
                                            ("deepseek-v3", "h200", 8, "fp8"), ("qwen3-30b-a3b", "l40s", 2, "auto")])
@pytest.mark.parametrize("batch", [None, 5])
def test_f2_capacity_and_estimate_agree_under_ep(model, gpu, ep, w, batch):
    # no max_position_embeddings, so the longest context is memory's, not the model's cap
    spec = load_model(model).model_copy(update={"max_position_embeddings": None})
    ctx = 8192
    plan = kvcalc.capacity(spec, gpu, context=ctx, ep=ep, weight_dtype=w, batch=batch)
    n, longest = plan["max_sequences_at_context"], plan["max_context_at_batch"]
    assert n >= ep  # at least one sequence in every replica

    def fits(b, c):
        return kvcalc.estimate(spec, gpu, batch=b, context=c, ep=ep, weight_dtype=w).memory.fits

    assert fits(n, ctx) and not fits(n + 1, ctx)  # N is the most, both ways
    b = batch or 1
    assert fits(b, longest) and not fits(b, longest + 1)  # the longest context at the batch, both ways


def test_f2_one_sequence_is_whole_in_its_replica():
    # audit: llama-4-scout on 4 rtx-pro-6000 at batch 1 held a quarter of the 1.5M-token sequence per GPU
    m = load_model("llama-4-scout")
    e = kvcalc.estimate(m, "rtx-pro-6000", ep=4, batch=1, context=1_500_000)
    whole = kv_bytes_per_sequence(m, 1_500_000, 2.0)
    assert e.memory.kv_cache_bytes == pytest.approx(whole)
    assert not e.memory.fits
    # batch 5 over 4 replicas: the fullest holds 2 sequences (ceil(5 / 4)), not 1.25
    e5 = kvcalc.estimate(m, "rtx-pro-6000", ep=4, batch=5, context=4096)
    assert e5.memory.kv_cache_bytes == pytest.approx(2 * kv_bytes_per_sequence(m, 4096, 2.0))


@pytest.mark.parametrize("ep,tp", [(2, 1), (4, 1), (8, 2), (16, 4)])
def test_f2_the_fullest_replica_holds_ceil_batch_over_dp_whole_sequences(ep, tp):
    from kvcalc.estimator import evaluate
    from kvcalc.formulas.memory import replica_batch
    from kvcalc.specs.catalog import load_gpu

    m, hw = load_model("deepseek-v2-lite"), load_gpu("h100-sxm")  # MLA: the latent is whole on every GPU of tp
    seq = kv_bytes_per_sequence(m, 2048, 2.0)
    dp = ep // tp
    for batch in (1, dp - 1 or 1, dp, dp + 1, 3 * dp + 1, 37):
        ev = evaluate(m, hw, batch=batch, context=2048, prompt=2048, weight_dtype="bf16", kv_dtype="bf16", tp=tp, ep=ep)
        assert ev.memory["kv_cache"] == pytest.approx(-(-batch // dp) * seq)
        assert replica_batch(batch, ep, tp) == -(-batch // dp)
    import numpy as np  # sweep's arrays: the same rule elementwise

    assert replica_batch(np.array([1, dp, dp + 1]), ep, tp).tolist() == [1, 1, 2]


def test_f2_decode_reads_the_whole_latent_of_one_sequence():
    # deepseek-v3, fp8, batch 1, 32768 tokens: --ep 8 reads the same KV per GPU as --tp 8 (the MLA latent,
    # replicated under TP): 61 layers x (512 + 64) x 2 bytes x 32768 = 2.30 GB, not an eighth of it
    kv = 61 * 576 * 2 * 32768
    from kvcalc.estimator import evaluate
    from kvcalc.specs.catalog import load_gpu

    m, hw = load_model("deepseek-v3"), load_gpu("h200")
    kw = {"batch": 1, "context": 32768, "prompt": 32768, "weight_dtype": "fp8", "kv_dtype": "bf16"}
    for ev in (evaluate(m, hw, ep=8, **kw), evaluate(m, hw, tp=8, **kw)):
        read = sum(t.op.cost.kv_read_bytes for t in ev.decode.ops)
        assert read == pytest.approx(kv, rel=1e-3)


# ---------------------------------------------------------------------------------------------------------- F3
def test_f3_capacity_with_a_gpu_count_no_power_of_two_reaches():
    # F3 was a GPU count that is no power of two refused although it shards the model. llama-2-13b's 40 heads at 40
    # GPUs did not in fact shard: its MLP width, 13,824 = 2^9 x 27, divides over no multiple of 5 (vLLM's
    # MergedColumnParallelLinear asserts it; the seventh audit, B6), so that one is now refused, naming the width.
    # GPT-3 175B (96 heads, width 49,152 = 96 x 512) does shard over 96 GPUs, and capacity reaches it.
    with pytest.raises(KvcalcError, match="divide the MLP width 13,824"):
        kvcalc.capacity("llama-2-13b", "t4", context=300_000, gpus=40)
    r = cli("capacity", "-m", "gpt-3-175b", "-g", "h100-pcie", "-c", 1_000_000, "--gpus", 96, "-f", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["tensor_parallel"] == 96


# ---------------------------------------------------------------------------------------------------------- F4
def _deepseek_v2_lite_config(tmp_path, **changes):
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "fixtures/hf/DeepSeek-V2-Lite/config.json").read_text())
    data.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path, data


def test_f4_a_moe_spec_with_no_moe_layer_is_refused_naming_the_field(tmp_path):
    # Refused rather than read as dense: a [moe] table that places no MoE layer is a mistake in the spec (the
    # audit's every = 64), and reading it as dense would hide it. 27 layers, first_k_dense_replace 27.
    path, data = _deepseek_v2_lite_config(tmp_path, first_k_dense_replace=27)
    assert data["num_hidden_layers"] == 27
    with pytest.raises(KvcalcError, match=r"moe: no layer is a MoE layer \(moe.first_dense_layers 27 .*"
                                          r"first_k_dense_replace"):
        load_model(str(path))
    for args in (["estimate", "-m", path, "--ep", 2], ["estimate", "-m", path]):
        one_line_error(cli(*args), "moe.first_dense_layers")
    toml = tmp_path / "e.toml"
    shown = cli("show", "model", "deepseek-v2-lite", "-f", "toml").stdout
    toml.write_text(shown.replace("\nevery = 1\n", "\nevery = 64\n") if "\nevery = 1\n" in shown
                    else shown.replace("[moe]\n", "[moe]\nevery = 64\n"))
    one_line_error(cli("sweep", "-m", toml, "--out", tmp_path / "s.csv"), "moe.every 64")
    assert not (tmp_path / "s.csv").exists()
    # one MoE layer left is a MoE model: 26 dense + 1
    path, _ = _deepseek_v2_lite_config(tmp_path, first_k_dense_replace=26)
    assert load_model(str(path)).moe_layers == 1


# ---------------------------------------------------------------------------------------------------------- F7
def _kvcalc(*args, env=None, **kw):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "kvcalc", *map(str, args)], capture_output=kw.pop("capture", True),
                          text=True, env={**os.environ, **(env or {})}, check=False, **kw)


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_f7_a_full_or_closed_stdout_is_one_line_and_exit_2(fmt, tmp_path):
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "kvcalc", "estimate", "-m", "llama-3-8b", "-f", fmt], stdout=full,
                           stderr=subprocess.PIPE, text=True, check=False)
    assert r.returncode == 2 and r.stderr == "kvcalc: error: cannot write to stdout (the device is full)\n"
    # stdout closed (`>&-`): the shell runs kvcalc with descriptor 1 shut
    r = subprocess.run(["bash", "-c", f'exec "{sys.executable}" -m kvcalc estimate -m llama-3-8b -f {fmt} >&-'],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert r.stderr == "kvcalc: error: stdout is closed: nothing to print the output to (redirect it to a file)\n"


def test_f7_show_toml_to_a_full_device_too():  # typer.echo's path, not json.dump's
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "kvcalc", "show", "model", "llama-3-8b", "-f", "toml"], stdout=full,
                           stderr=subprocess.PIPE, text=True, check=False)
    assert (r.returncode, r.stderr.count("\n"), "Traceback" in r.stderr) == (2, 1, False)


# ---------------------------------------------------------------------------------------------------------- F8
def _ledger(tmp_path, source: str, edit, name="ledger.csv"):
    """The first data row of a bundled ledger, edited; (path, header line count 1)."""
    import csv
    import io
    from pathlib import Path

    rows = list(csv.DictReader(io.StringIO((Path(__file__).parent.parent / source).read_text())))
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerow(edit(dict(rows[0])))
    path = tmp_path / name
    path.write_text(out.getvalue())
    return path


def test_f8_serve_ledger_row_cut_short_names_file_line_and_column(tmp_path):
    src = (__import__("pathlib").Path(__file__).parent.parent / "validation/serve/trtllm-perf-overview.csv")
    head = src.read_text().splitlines()[:2]
    path = tmp_path / "s.csv"
    path.write_text("\n".join([*head, "trt-99,llama-3.1-8b,h200,1,fp8,fp8,128"]) + "\n")  # 7 of 11 cells
    one_line_error(cli("validate", "--serve", path), f"{path}: line 3, column output_len: missing", "7 of the header's 11")


def test_f8_serve_bench_ledger_and_engine_memory_ledger_name_a_non_numeric_cell(tmp_path):
    path = _ledger(tmp_path, "validation/serve/vllm-bench-rtx-pro-6000-qwen3-32b.csv",
                   lambda r: {**r, "median_tpot_ms": "n/a"})
    one_line_error(cli("validate", "--serve", path), f"{path}: line 2, column median_tpot_ms: expected a number, got 'n/a'")
    path = _ledger(tmp_path, "validation/engine-memory/vllm.csv", lambda r: {**r, "logged_kv_tokens": "n/a"})
    one_line_error(cli("validate", "--engine-memory", path),
                   f"{path}: line 2, column logged_kv_tokens: expected a number, got 'n/a'")
    # an empty logged figure is allowed (the log did not print it); an empty tp is not
    path = _ledger(tmp_path, "validation/engine-memory/vllm.csv", lambda r: {**r, "tp": ""})
    one_line_error(cli("validate", "--engine-memory", path), f"{path}: line 2, column tp: expected a number, got ''")


@pytest.mark.parametrize("row, column, why", [
    ("100,500,,H100", "dtype", "empty"),  # the audit's blank dtype
    ("100,500,bf16,", "device", "empty"),
    ("100,x,bf16,H100", "achieved_tflops", "expected a positive number, got 'x'"),
    ("100,-5,bf16,H100", "achieved_tflops", "expected a positive number, got '-5'"),  # O7: a log axis
    (",5,bf16,H100", "arithmetic_intensity", "expected a positive number, got ''"),
    ("nan,5,bf16,H100", "arithmetic_intensity", "expected a positive number, got 'nan'"),
])
def test_f8_o7_roofline_measured_cells_name_file_line_and_column(tmp_path, row, column, why):
    m = tmp_path / "m.csv"
    m.write_text(f"arithmetic_intensity,achieved_tflops,dtype,device\n1,10,bf16,H100\n{row}\n")
    out = tmp_path / "r.png"
    one_line_error(cli("roofline", "-m", "llama-3-8b", "--measured", m, "--out", out),
                   f"--measured: {m}: line 3, column {column}: {why}")
    assert not out.exists()


# --------------------------------------------------------------------------------------------------------- F10
def test_f10_import_writes_astral_characters_as_toml_escapes_that_read_back(tmp_path):
    from pathlib import Path

    gpt2 = Path(__file__).parent / "fixtures/hf/gpt2"
    out = tmp_path / "x.toml"
    assert cli("import", gpt2, "--name", "\U0001F999", "--out", out).exit_code == 0
    text = out.read_text(encoding="utf-8")
    assert 'name = "\\U0001F999"' in text and "\\ud83e" not in text  # TOML's escape, not JSON's surrogate pair
    assert text.isascii()
    assert load_model(str(out)).name == "\U0001F999"
    assert cli("estimate", "-m", out, "-f", "json").exit_code == 0


def test_f10_a_newline_in_the_source_path_cannot_become_a_statement(tmp_path):
    import shutil
    import tomllib
    from pathlib import Path

    folder = tmp_path / 'a\nname = "evil"\n[attention]\nkind = "mha'
    folder.mkdir()
    shutil.copy(Path(__file__).parent / "fixtures/hf/gpt2/config.json", folder / "config.json")
    out = tmp_path / "ok.toml"
    assert cli("import", folder, "--name", "ok", "--out", out).exit_code == 0
    text = out.read_text()
    assert text.startswith("# Written by `kvcalc import` from ") and text.splitlines()[0].endswith("/config.json")
    assert "\\u000A" in text.splitlines()[0]
    data = tomllib.loads(text)
    assert data["name"] == "ok" and load_model(str(out)).name == "ok"


hypothesis = pytest.importorskip("hypothesis")


@hypothesis.given(hypothesis.strategies.text(hypothesis.strategies.characters(blacklist_categories=("Cs",))))
def test_f10_every_string_reads_back_from_the_toml_writer(s):
    import tomllib

    from kvcalc.specs.toml_out import toml_comment, toml_string

    written = toml_string(s)
    assert written.isascii() and tomllib.loads(f"x = {written}")["x"] == s
    comment = toml_comment(s)
    assert "\n" not in comment and "\r" not in comment and tomllib.loads(f"{comment}\ny = 1") == {"y": 1}


# ---------------------------------------------------------------------------------------------------------- W3
def test_w3_deepseek_v3_counts_the_router_score_correction_bias():
    """DeepSeek-V3's gate keeps e_score_correction_bias, n_routed_experts values per MoE layer, when topk_method is
    "noaux_tc" (MoEGate.__init__ in https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/modeling_deepseek.py;
    the checkpoint stores model.layers.N.mlp.gate.e_score_correction_bias). With it the main model (the MTP module
    excluded, as README_WEIGHTS.md does) has 671,026,419,200 parameters: the count a meta-device instantiation of
    the HF model gives, as published module by module ('Total Parameters: 671,026,419,200', with
    'layers.3.mlp.gate.e_score_correction_bias: 256'), and the audit's independent oracle's."""
    from pathlib import Path

    from kvcalc.formulas.params import total_params

    spec = load_model("deepseek-v3")
    assert spec.moe_layers == 61 - 3 and spec.moe.num_experts == 256
    assert total_params(spec) == 671_026_419_200 == 671_026_404_352 + 58 * 256
    # the same from its config.json, which says topk_method "noaux_tc"
    config = Path(__file__).parent / "fixtures/hf/DeepSeek-V3/config.json"
    assert json.loads(config.read_text())["topk_method"] == "noaux_tc"
    assert total_params(load_model(str(config))) == 671_026_419_200
    # Kimi K2 (DeepSeek-V3's layout, 384 experts, 60 MoE layers): 1,026,408,232,448, the count the same kind of
    # instantiation gives (its config.json: topk_method "noaux_tc")
    assert total_params(load_model("kimi-k2")) == 1_026_408_232_448 == 1_026_408_209_408 + 60 * 384
    # DeepSeek-V2-Lite's gate is greedy: no bias (15,706,484,224 = its published 15.7B)
    v2 = Path(__file__).parent / "fixtures/hf/DeepSeek-V2-Lite/config.json"
    assert json.loads(v2.read_text())["topk_method"] == "greedy"
    assert total_params(load_model(str(v2))) == 15_706_484_224


# ------------------------------------------------------------------------------------------------- N1, N2, I2
@pytest.fixture
def unbounded_spec(tmp_path):
    """mistral-7b without max_position_embeddings: every layer slides (window 4096), so any context fits."""
    path = tmp_path / "m.toml"
    path.write_text("\n".join(x for x in cli("show", "model", "mistral-7b", "-f", "toml").stdout.splitlines()
                              if not x.startswith("max_position_embeddings")) + "\n")
    return path


def test_n1_tables_say_unbounded_never_inf(unbounded_spec):
    for args in (["compare", "-m", unbounded_spec, "--attn", "mqa,linear"],
                 ["capacity", "-m", unbounded_spec, "-c", 4096, "-b", 4]):
        r = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        assert "unbounded" in r.stdout and "inf" not in r.stdout.replace("Infinity", "")
    from kvcalc.cli.output import fmt_number

    assert (fmt_number(math.inf), fmt_number(math.nan), fmt_number(8192)) == ("unbounded", "—", "8,192")


def _nulls(d, path=""):
    if isinstance(d, dict):
        for k, v in d.items():
            if v is None and not k.endswith("_note") and not d.get(f"{k}_note"):
                yield path + k
            yield from _nulls(v, f"{path}{k}.")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _nulls(v, f"{path}{i}.")


@pytest.mark.parametrize("args", [
    ["estimate", "-m", "llama-3-8b"],
    ["estimate", "-m", "llama-3-8b", "--speculate", "eagle,k=4"],
    ["capacity", "-m", "llama-3-8b", "-c", "4096"],
    ["capacity", "-m", "llama-3-8b", "-c", "4096", "-e", "vllm"],
    ["capacity", "-m", "llama-2-13b", "-g", "t4", "-c", "300000", "--gpus", "8"],  # nothing fits: no min GPUs
    ["serve", "-m", "llama-3-8b", "-i", "1000", "--output-len", "1", "-n", "4"],  # the audit's tpot_ms null
    ["serve", "-m", "llama-3-8b", "-i", "1000", "--output-len", "100", "-n", "4"],
    ["compare", "-m", "gpt-3-175b"],
])
def test_n2_every_json_null_carries_a_note(args):
    r = runner.invoke(app, [*args, "-f", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert list(_nulls(d)) == []
    if "--output-len" in args and "1" == args[args.index("--output-len") + 1]:
        assert d["tpot_ms"] is None and "no token follows the first" in d["tpot_ms_note"]
    if "--gpus" in args:
        assert d["min_gpus_for_weights"] is None and "holds one sequence" in d["min_gpus_for_weights_note"]


def test_n2_the_unbounded_note_matches_the_model(unbounded_spec):
    rows = json.loads(runner.invoke(app, ["compare", "-m", str(unbounded_spec), "--attn", "linear", "-f", "json"]).stdout)
    own, linear = rows
    assert own["max_context_at_batch"] is None and "sliding-window" in own["max_context_at_batch_note"]
    # every layer linear: no window anywhere, and no layer grows at all
    assert linear["max_context_at_batch"] is None
    assert "window" not in linear["max_context_at_batch_note"]
    assert "no layer's cache grows" in linear["max_context_at_batch_note"]


def test_i2_capacity_csv_has_the_same_columns_under_every_memory_rule():
    import csv
    import io

    headers, rows = [], []
    for engine in ("auto", "roofline", "vllm", "sglang", "trtllm"):
        r = runner.invoke(app, ["capacity", "-m", "llama-3-8b", "-c", "4096", "-e", engine, "-f", "csv"])
        assert r.exit_code == 0, r.output
        reader = csv.DictReader(io.StringIO(r.stdout))
        headers.append(reader.fieldnames)
        rows.append(next(reader))
    assert all(h == headers[0] for h in headers)
    em = [c for c in headers[0] if c.startswith("engine_memory.")]
    assert len(em) >= 20 and "engine_memory.kv_tokens" in em
    assert all(rows[0][c] == "" for c in em)  # kvcalc's rule: present and empty
    assert rows[2]["engine_memory.engine"] == "vllm" and int(rows[2]["engine_memory.kv_tokens"]) > 0


# ---------------------------------------------------------------------------------------------------------- U1
def test_u1_roofline_and_sweep_take_weight_dtype_auto_as_estimate_does(tmp_path):
    out = tmp_path / "r.png"
    assert cli("roofline", "-m", "kimi-k2", "--weight-dtype", "auto", "-o", out).exit_code == 0 and out.exists()
    df = kvcalc.sweep(["kimi-k2", "llama-3-8b"], ["h200"], weight_dtype=["auto"], batch=[1], context=[1024])
    # auto: the checkpoint's own format (kimi-k2's quantization_config: fp8 with 128 x 128 blocks), else bf16
    assert list(df["weight_dtype"]) == ["fp8-block", "bf16"]
    assert df["weight_dtype"].tolist()[0] == kvcalc.estimate("kimi-k2", "h200").inputs.weight_dtype


def test_u1_kv_dtype_errors_name_the_flag_and_list_kv_formats(tmp_path):
    line = one_line_error(cli("roofline", "-m", "llama-3-8b", "--kv-dtype", "xx", "-o", tmp_path / "r.png"),
                          "--kv-dtype: unknown dtype 'xx'", "nvfp4")
    assert "fp8-block" not in line and "int4-g128" not in line  # weight formats are not KV formats
    one_line_error(cli("sweep", "-m", "llama-3-8b", "--kv-dtype", "xx", "--out", tmp_path / "s.csv"), "--kv-dtype")


# ---------------------------------------------------------------------------------------------------------- U3
def test_u3_capacity_names_the_cuda_graph_memory_when_it_alone_leaves_no_room():
    # H100 SXM: 79.22 GiB visible x 0.9 = 71.3 GiB, less than the 79 GiB set aside on every GPU
    one_line_error(cli("capacity", "-m", "llama-3-8b", "-c", 4096, "-e", "vllm", "--cuda-graph-memory", 79),
                   "--cuda-graph-memory: the 79 GiB", "more GPUs do not change it")
    assert cli("capacity", "-m", "llama-3-8b", "-c", 4096, "-e", "vllm", "--cuda-graph-memory", 1).exit_code == 0


# ---------------------------------------------------------------------------------------------------- U4, O1
def test_u4_fit_published_names_its_own_flag(tmp_path):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("x,y\n1,2\n")
    line = one_line_error(cli("profiles", "fit-published", "--measurements", wrong, "--out-dir", tmp_path),
                          "--measurements:", "needs the columns")
    assert "--published" not in line


def test_o1_fit_published_without_scipy_and_its_out_dir_checked_first(tmp_path, monkeypatch):
    import importlib.util

    from kvcalc.ledgers import published

    def no_fit(*a, **k):
        raise AssertionError("the fit ran")

    monkeypatch.setattr(published, "fit_gpt_fast", no_fit)
    one_line_error(cli("profiles", "fit-published", "--out-dir", tmp_path / "missing"), "--out-dir:", "not a folder")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else real(name, *a))
    one_line_error(cli("profiles", "fit-published", "--out-dir", tmp_path), "needs scipy", "kvcalc[profiles]")


# ---------------------------------------------------------------------------------------------------------- U5
@pytest.mark.parametrize("call, needle", [
    (lambda: kvcalc.sweep("llama-3-8b"), "models: expected a list"),  # was read letter by letter: model 'l'
    (lambda: kvcalc.compare("llama-3-8b", "mqa"), "attn: expected a list"),
    (lambda: kvcalc.estimate(5), "model: expected a name"),
    (lambda: kvcalc.load_gpu(None), "gpu: expected a name"),
    (lambda: kvcalc.load_model(["llama-3-8b"]), "model: expected a name"),
    (lambda: kvcalc.estimate("llama-3-8b", attn=5), "attn: expected a string or None"),
    (lambda: kvcalc.estimate("llama-3-8b", speculate=5), "speculate: expected a string or None"),
    (lambda: kvcalc.estimate("llama-3-8b", gpu=3.0), "gpu: expected a name"),
    (lambda: kvcalc.serve("llama-3-8b", input_len=100, output_len=10, concurrency=1, disaggregate=5),
     "disaggregate: expected (prefill GPUs, decode GPUs)"),
    (lambda: kvcalc.capacity("llama-3-8b", context=4096, engine="vllm", vllm_version=[0, 11]),
     "vllm_version: expected a release"),
    (lambda: kvcalc.serve_frontier("llama-3-8b", input_len=100, output_len=10, concurrencies=4, tps=[1]),
     "concurrencies: expected a list"),
    (lambda: kvcalc.plot.roofline(["h100"], batch=[0]), "batch: expected a whole number"),
    (lambda: kvcalc.plot.roofline(["h100"], attn=[]), "attn: empty list"),
    (lambda: kvcalc.plot.roofline("h100"), "gpus: expected a list"),
])
def test_u5_wrong_types_in_the_python_api_are_one_line_errors_naming_the_argument(call, needle):
    with pytest.raises(KvcalcError) as err:
        call()
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_u5_natural_spellings_are_accepted():
    with pytest.warns(Warning):
        plan = kvcalc.capacity("llama-3-8b", context=4096, engine="vllm", vllm_version=0.11)
    assert plan["engine_memory"]["vllm_version"] == "0.11"
    a = kvcalc.serve("llama-3-8b", input_len=1000, output_len=100, concurrency=4, disaggregate="1:1")
    b = kvcalc.serve("llama-3-8b", input_len=1000, output_len=100, concurrency=4, disaggregate=(1, 1))
    assert a["disaggregate"] == "1:1" and a["requests_per_s"] == b["requests_per_s"]
    assert len(kvcalc.sweep(("llama-3-8b",), ("h100",), batch=(1, 2), context=(128,))) == 2  # tuples are lists


# ---------------------------------------------------------------------------------------------------- U6, U7, U8
def test_u6_a_typod_spec_key_is_reported_first_and_an_empty_name_refused(tmp_path):
    gpu = cli("show", "gpu", "h100-sxm", "-f", "toml").stdout
    typo = tmp_path / "g.toml"
    typo.write_text(gpu.replace("\nmemory_bandwidth_GBps =", "\nmemory_bandwith_GBps ="))
    line = one_line_error(cli("estimate", "-m", "llama-3-8b", "-g", typo),
                          f"{typo}: memory_bandwith_GBps: unknown field (did you mean memory_bandwidth_GBps?)")
    assert "more)" not in line
    empty = tmp_path / "e.toml"
    empty.write_text("\n".join('name = ""' if x.startswith("name = ") else x for x in gpu.splitlines()) + "\n")
    one_line_error(cli("estimate", "-m", "llama-3-8b", "-g", empty), f"{empty}: name: empty")


def test_u7_empty_names_are_clear(tmp_path):
    from pathlib import Path

    one_line_error(cli("import", Path(__file__).parent / "fixtures/hf/gpt2", "--name", ""), "--name: empty")
    one_line_error(cli("estimate", "-m", ""), "--model: empty")
    one_line_error(cli("estimate", "-m", "llama-3-8b", "-g", " "), "--gpu: empty")


def test_u8_compare_own_twice_says_own():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        r = cli("compare", "-m", "llama-3-8b", "--attn", "own,gqa8")  # own,own is refused as listed twice (the
        # twentieth audit, W6); gqa8 is Llama-3-8B's own layout
    assert r.exit_code == 0
    # own is the first row, not a second one skipped (the thirty-seventh audit, agree 4); gqa8 repeats it
    assert "compare skipped gqa8 (the same cache as the model's own attention)" in r.stderr and "None" not in r.stderr
    assert "skipped own" not in r.stderr
    one_line_error(cli("compare", "-m", "llama-3-8b", "--attn", "own,own"), "--attn: own listed twice")


# ---------------------------------------------------------------------------------------------------------- O2
def test_o2_a_cache_path_too_long_is_one_line(tmp_path):
    r = _kvcalc("estimate", "-m", "org/name", env={"HF_HUB_CACHE": str(tmp_path / ("x" * 300))})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "cannot read the Hugging Face cache for org/name" in r.stderr and "File name too long" in r.stderr


def test_o2_an_ascii_stdout_gets_ascii_punctuation():
    r = _kvcalc("estimate", "-m", "llama-3-8b", "--explain", env={"PYTHONIOENCODING": "ascii", "COLUMNS": "120"})
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "batch 1 - context 4,096 - prompt 4,096" in r.stdout  # the title's middle dots
    assert r.stdout.isascii()


# ---------------------------------------------------------------------------------------------------------- O3
def test_o3_parquet_without_pyarrow_is_refused_before_the_sweep(tmp_path, monkeypatch):
    import importlib.util

    import kvcalc.grid

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("pyarrow", "fastparquet") else real(name, *a))

    def no_sweep(*a, **k):
        raise AssertionError("the sweep ran")

    monkeypatch.setattr(kvcalc.grid, "sweep", no_sweep)
    one_line_error(cli("sweep", "-m", "llama-3-8b", "--out", tmp_path / "s.parquet"), "--out: Parquet needs pyarrow")


# ---------------------------------------------------------------------------------------------------------- O4
def test_o4_a_narrow_terminal_gets_key_value_lines_and_loses_no_number():
    rows = json.loads(cli("compare", "-m", "llama-3-8b", "-f", "json").stdout)
    narrow = _kvcalc("compare", "-m", "llama-3-8b", env={"COLUMNS": "20"}).stdout
    assert all(len(x) <= 20 for x in narrow.splitlines())
    for r in rows:  # every row's numbers whole, on their own 'column: value' line
        assert f"variant: {r['variant']}" in narrow
        assert f"max b: {r['max_batch_at_context']:,}" in narrow
        assert f"ms/step: {r['decode_ms']:.2f}" in narrow
    plan = json.loads(cli("capacity", "-m", "llama-3-8b", "-c", 4096, "-f", "json").stdout)
    narrow = _kvcalc("capacity", "-m", "llama-3-8b", "-c", 4096, env={"COLUMNS": "30"}).stdout
    assert "…" not in narrow and all(len(x) <= 30 for x in narrow.splitlines())
    assert f"{plan['tokens_per_s']:,.0f} tokens/s" in " ".join(narrow.split())
    wide = _kvcalc("estimate", "-m", "llama-3-8b", env={"COLUMNS": "100"}).stdout
    assert "┃ quantity" in wide  # a terminal wide enough keeps the table
    narrow = _kvcalc("estimate", "-m", "llama-3-8b", env={"COLUMNS": "20"}).stdout
    assert "…" not in narrow and "value: 131,072 B" in narrow  # KV bytes per token: 2 x 32 x 8 x 128 x 2 B


# ---------------------------------------------------------------------------------------------------------- O5
@pytest.mark.parametrize("version", ["9999.1", "0.0", "1.0", "0.35"])
def test_o5_releases_that_do_not_exist_are_refused(version):
    # vLLM's releases run from v0.1.0 (June 2023) to v0.34.0 (`pip index versions vllm`, 2026-12-07; formulas/
    # engine_memory.py VLLM_RELEASED), those past v0.30.0 on its rule (VLLM_LATEST); there is no 1.x
    from kvcalc.formulas.engine_memory import VLLM_LATEST, VLLM_RELEASED

    assert VLLM_LATEST == (0, 30) and VLLM_RELEASED == (0, 34)
    one_line_error(cli("capacity", "-m", "llama-3-8b", "-c", 4096, "-e", "vllm", "--vllm-version", version),
                   f"--vllm-version: no vLLM release '{version}'; expected 0.1 to 0.34")


@pytest.mark.parametrize("version", ["0.30.1", "v0.6.5.dev", "0.1", "latest"])
def test_o5_releases_that_exist_are_accepted(version):
    assert cli("capacity", "-m", "llama-3-8b", "-c", 4096, "-e", "vllm", "--vllm-version", version).exit_code == 0


# ---------------------------------------------------------------------------------------------------------- O8
def test_o8_import_name_with_a_path_separator_and_upper_case_suffixes(tmp_path, monkeypatch):
    from pathlib import Path

    gpt2 = Path(__file__).parent / "fixtures/hf/gpt2"
    monkeypatch.chdir(tmp_path)
    for name in ("../../x", "a/b", "..\\x"):
        one_line_error(cli("import", gpt2, "--name", name), "--name:", "path separator")
    assert not list(tmp_path.parent.glob("x.toml"))
    assert cli("import", gpt2, "--name", "up", "--out", "up.TOML").exit_code == 0
    assert cli("estimate", "-m", "up.TOML", "-f", "json").exit_code == 0
    assert cli("roofline", "-m", "llama-3-8b", "-o", "r.PNG").exit_code == 0 and (tmp_path / "r.PNG").stat().st_size


# ------------------------------------------------------------------------------- the audit's reproducers, part 1
def test_audit_reproducers_of_part_1_end_in_numbers_or_one_line(tmp_path):
    """The reproducers of hostile-audit-repro.sh for F2, F3, F4, F7, F8 (the ledger and --measured parts) and F10,
    as the script runs them: each now a plan, a refusal in one line, or the same numbers both ways."""
    e = json.loads(cli("estimate", "-m", "llama-4-scout", "-g", "rtx-pro-6000", "--ep", 4, "-b", 1, "-c", 1_500_000,
                       "-f", "json").stdout)
    assert e["memory"]["fits"] is False and e["memory"]["kv_cache_bytes"] == pytest.approx(e["kv_cache"]["bytes"])
    one_line_error(cli("capacity", "-m", "llama-4-scout", "-g", "rtx-pro-6000", "--ep", 4, "--tp", 1, "-c",
                       1_500_000), "does not fit on 4 rtx-pro-6000 GPUs")
    # without --tp, capacity takes the fewest tensor-parallel GPUs of the group that hold a sequence (the thirty-fourth
    # audit, capacity 2): at --tp 4 the 1.5M-token cache is sharded four ways, and two sequences fit
    c = json.loads(cli("capacity", "-m", "llama-4-scout", "-g", "rtx-pro-6000", "--ep", 4, "-c", 1_500_000,
                       "-f", "json").stdout)
    assert c["tensor_parallel"] == 4 and c["max_sequences_at_context"] >= 1
    one_line_error(cli("capacity", "-m", "llama-2-13b", "-g", "t4", "-c", 300_000, "--gpus", 40),
                   "divide the MLP width 13,824")  # F3's 40 GPUs do not shard llama-2-13b (the seventh audit, B6)
    path, _ = _deepseek_v2_lite_config(tmp_path, first_k_dense_replace=27)
    one_line_error(cli("estimate", "-m", path), "moe: no layer is a MoE layer")
    m = tmp_path / "m.csv"
    m.write_text("arithmetic_intensity,achieved_tflops,dtype,device\n1,10,bf16,H100\n100,500,,H100\n")
    one_line_error(cli("roofline", "-m", "llama-3-8b", "--measured", m, "--out", tmp_path / "r.png"), "line 3")


# ---------------------------------------------------------------------------- the long fuzz (tests/test_fuzz_long.py)
# Findings of benchmarks/fuzz_long.py's first run (kvcalc issue 23 item 4), one test each, named test_fuzz2_...

@pytest.mark.parametrize("flag, source", [("--engine-memory", "validation/engine-memory/vllm.csv"),
                                          ("--engine-memory", "validation/engine-memory/sglang.csv"),
                                          ("--serve", "validation/serve/trtllm-perf-overview.csv"),
                                          ("--serve", "validation/serve/vllm-bench-rtx-pro-6000-qwen3-32b.csv"),
                                          ("--serve", "validation/serve/unseen-serving.csv"),
                                          ("--rescore", "validation/h200/validation-llama-3-8b.csv")])
def test_fuzz2_a_ledger_with_only_its_header_is_one_line(tmp_path, flag, source):
    # was IndexError (the table printer's first row) for --rescore, --serve and --engine-memory
    from pathlib import Path

    header = (Path(__file__).parent.parent / source).read_text().splitlines()[0]
    path = tmp_path / "ledger.csv"
    path.write_text(header + "\n")
    extra = ["--gpu", "h200"] if flag == "--rescore" else []
    one_line_error(cli("validate", flag, path, *extra), f"{path}: holds no rows under its header")


def test_fuzz2_a_serving_ledger_with_a_byte_that_is_not_utf8_is_one_line(tmp_path):
    # was a UnicodeDecodeError traceback from the serving-benchmark ledger's reader (ledgers/serving_sim.py)
    from pathlib import Path

    data = (Path(__file__).parent.parent / "validation/serve/unseen-serving.csv").read_bytes()
    path = tmp_path / "ledger.csv"
    path.write_bytes(data[: len(data) // 2] + b"\xff\xfe" + data[len(data) // 2:])
    one_line_error(cli("validate", "--serve", path), f"{path}: not a CSV ledger", "can't decode byte 0xff")
    path.write_bytes(b"\xff\xfe" + data)  # in the header line too
    one_line_error(cli("validate", "--serve", path), f"{path}: not a CSV ledger")


@pytest.mark.parametrize("columns", ["0", "00"])
def test_fuzz2_columns_zero_still_prints_the_table(columns):
    # COLUMNS=0 made rich lay every table out 0 wide: exit 0 with nothing printed, and /dev/full went unnoticed
    import subprocess
    import sys

    env = {**__import__("os").environ, "COLUMNS": columns}
    r = subprocess.run([sys.executable, "-m", "kvcalc", "estimate", "-m", "llama-3-8b"], capture_output=True,
                       text=True, env=env, check=False)
    assert r.returncode == 0 and "decode" in r.stdout.lower() and len(r.stdout.splitlines()) > 10, r.stdout
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "kvcalc", "estimate", "-m", "llama-3-8b"], stdout=full,
                           stderr=subprocess.PIPE, text=True, env=env, check=False)
    assert (r.returncode, r.stderr) == (2, "kvcalc: error: cannot write to stdout (the device is full)\n")


@pytest.mark.parametrize("ep", [2, 8])
def test_fuzz2_serve_under_ep_prefills_a_prompt_whole_in_one_replica(ep):
    # One request alone, one output token: serve's TTFT is that prompt's prefill, as estimate -b 1 times it. The
    # expert-parallel step cut the prompt over the ep data-parallel replicas, so TTFT (3.39 ms at ep 8) fell below
    # the prompt's own prefill speed of light (3.48 ms) and estimate's prefill (3.83 ms).
    common = ["-m", "mixtral-8x7b", "-g", "h200", "-e", "roofline", "--ep", ep, "-f", "json"]
    s = json.loads(cli("serve", *common, "--input-len", 173, "--output-len", 1, "--concurrency", 1).stdout)
    e = json.loads(cli("estimate", *common, "--batch", 1, "--context", 173).stdout)
    assert s["ttft_ms"] >= e["prefill"]["speed_of_light_ms"]
    assert s["ttft_ms"] == pytest.approx(e["prefill"]["ms"], rel=1e-9)


def test_fuzz2_a_published_row_shorter_or_longer_than_its_header_is_one_line(tmp_path):
    # a row cut after its id was an AttributeError ('NoneType' has no 'split') in the published ledger's reader
    from pathlib import Path

    lines = (Path(__file__).parent.parent / "validation/published/measurements.csv").read_text().splitlines()
    path = tmp_path / "m.csv"
    path.write_text(f"{lines[0]}\ngf-01\n")
    one_line_error(cli("validate", "--published", path), f"{path}: row gf-01: column engine: missing")
    path.write_text(f"{lines[0]}\n{lines[1]},extra\n")
    one_line_error(cli("validate", "--published", path), "row gf-01: more cells than the header's 15")


def test_fuzz2_a_serving_ledger_row_shorter_or_longer_than_its_header_is_one_line(tmp_path):
    # a row cut short was a TypeError ("argument of type 'NoneType' is not iterable") in ledgers/serving_sim.py
    from pathlib import Path

    lines = (Path(__file__).parent.parent / "validation/serve/unseen-serving.csv").read_text().splitlines()
    header_cells = len(lines[0].split(","))
    path = tmp_path / "s.csv"
    path.write_text(f"{lines[0]}\nsv-001,vllm,0.11.0,qwen3-32b,h100-sxm,1,1,1,0,bf16,bf16,sharegpt,,,,1000\n")
    one_line_error(cli("validate", "--serve", path), f"{path} line 2, column concurrency: missing",
                   f"16 of the header's {header_cells} cells")
    path.write_text(f"{lines[0]}\n{lines[1]},x\n")
    one_line_error(cli("validate", "--serve", path), f"{path} line 2: more cells than the header's {header_cells}")
