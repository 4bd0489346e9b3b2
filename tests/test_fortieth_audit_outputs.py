"""The fortieth hostile audit (docs/validation.md, "Fortieth hostile audit"), its findings on what the commands print:
the KV cache "total" of a replicated cache, the CSVs' notes and version column, capacity's tokens/s scope, keys no
schema described, and serve's arrivals. Each test is named after the finding it holds fixed, and asserts a figure
worked by hand from the models' config.json or a cited source."""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kvcalc
from kvcalc.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

# deepseek-ai/DeepSeek-V3 config.json: kv_lora_rank 512, qk_rope_head_dim 64, num_hidden_layers 61; a bf16 cache
# holds one latent plus one shared RoPE key a layer: (512 + 64) x 2 B x 61 = 70,272 B a token
DSV3_TOKEN = (512 + 64) * 2 * 61
# meta-llama/Llama-3.1-8B config.json: num_key_value_heads 8, head_dim 128 (4096 / 32), num_hidden_layers 32:
# 2 (K, V) x 8 x 128 x 2 B x 32 = 131,072 B a token
LLAMA8B_TOKEN = 2 * 8 * 128 * 2 * 32


def quiet_estimate(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TP 16 past one node's NVLink: warned, not at issue here
        return kvcalc.estimate(*args, **kw)


def cli(*args) -> str:
    r = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert r.exit_code == 0, (args, r.stdout, r.stderr)
    return r.stdout


def test_40_outputs1_deepseek_v3_kv_cache_bytes_sum_the_latent_every_gpu_holds():
    """outputs 1: estimate's kv_cache.bytes, documented as all the GPUs' together, was one copy: 4,605,345,792 B for
    DeepSeek-V3 at TP 8, the same as one GPU's share, because MLA's latent is whole on every GPU (README, "MLA's latent
    replicated"; vLLM's MLA attention keeps the full kv_lora_rank + rope cache per rank). By hand: one copy 8 x 8,192 x
    70,272 B = 4,605,345,792 B, on each of 8 GPUs: 36,842,766,336 B (34.31 GiB)."""
    one_copy = 8 * 8192 * DSV3_TOKEN
    assert one_copy == 4_605_345_792
    e = quiet_estimate("deepseek-v3", "h200", tp=8, batch=8, context=8192)
    assert e.memory.kv_cache_bytes == one_copy  # one GPU's share: the whole latent
    assert e.kv_cache.bytes == 8 * one_copy == 36_842_766_336
    assert e.kv_cache.bytes_per_sequence == 8192 * DSV3_TOKEN  # one copy, the model's
    assert e.to_json_dict()["kv_cache"]["bytes"] == 36_842_766_336


def test_40_outputs1_llama_8b_past_its_kv_heads_counts_a_head_on_every_gpu():
    """outputs 1: Llama-3.1-8B at TP 16 has 8 KV heads for 16 GPUs, and each GPU keeps one whole head (vLLM
    vllm/model_executor/layers/linear.py QKVParallelLinear: num_kv_heads = 1, num_kv_head_replicas = tp_size /
    total_num_kv_heads when tp_size >= total_num_kv_heads): 2 copies. By hand: one copy 8 x 8,192 x 131,072 B = 8 GiB;
    one GPU 1 / 8 of it, 1 GiB; 16 GPUs 16 GiB, where kv_cache.bytes had said 8 GiB. Without replication the sum is
    one copy, as before."""
    e = quiet_estimate("llama-3.1-8b", "h100-sxm", tp=16, batch=8, context=8192)
    assert 8 * 8192 * LLAMA8B_TOKEN == 8 * 2**30
    assert e.memory.kv_cache_bytes == 2**30
    assert e.kv_cache.bytes == 16 * 2**30
    # the case that hid it: at TP 4 Llama-3.1-70B (8 KV heads, 80 layers: 327,680 B a token) splits its heads 2 a GPU,
    # and the GPUs together hold one copy, 8 x 8,192 x 327,680 B = 20 GiB, 4 x one GPU's 5 GiB
    e = quiet_estimate("llama-3.1-70b", "h100-sxm", tp=4, batch=8, context=8192)
    assert e.kv_cache.bytes == 8 * 8192 * (2 * 8 * 128 * 2 * 80) == 20 * 2**30 == 4 * e.memory.kv_cache_bytes


def test_40_outputs1_pipeline_stages_add_up_to_the_layers_once():
    """outputs 1: under --pp the per-GPU figure is the heaviest stage's (61 layers over 2 stages: one holds 31), so
    GPUs x per GPU would count a layer twice; the stages' shares add up to the 61 layers once, and the sum at TP 8 x
    PP 2 is TP 8's 36,842,766,336 B (each layer's latent on the 8 GPUs of its stage)."""
    e = quiet_estimate("deepseek-v3", "h200", tp=8, pp=2, batch=8, context=8192)
    assert e.kv_cache.bytes == 8 * 8 * 8192 * DSV3_TOKEN == 36_842_766_336
    assert e.memory.kv_cache_bytes == 8 * 8192 * (512 + 64) * 2 * 31  # the heavier stage's 31 layers
    assert 16 * e.memory.kv_cache_bytes > e.kv_cache.bytes


def test_40_outputs1_sweep_and_the_table_give_the_same_sum():
    """outputs 1: sweep's kv_bytes column (documented as the deployment's) and the table's "KV cache (batch), total"
    row said 4,605,345,792 B / 4.29 GiB; now 36,842,766,336 B and 34.31 GiB (36,842,766,336 / 2^30 = 34.3125), and
    the weights row says it is one copy, the checkpoint's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = kvcalc.sweep(["deepseek-v3"], ["h200"], tp=[8], batch=[8], context=[8192])
    assert int(df["kv_bytes"].iloc[0]) == 36_842_766_336
    out = cli("estimate", "-m", "deepseek-v3", "-g", "h200", "--tp", 8, "-b", 8, "-c", 8192)
    row = next(line for line in out.splitlines() if "KV cache (batch), total" in line)
    assert "34.31 GiB" in row and "4.29 GiB per GPU" in row
    assert any("Weights, one copy" in line for line in out.splitlines())


def csv_rows(*args) -> list[dict]:
    return list(csv.DictReader(io.StringIO(cli(*args, "-f", "csv"))))


def flat(d: dict, prefix: str = "") -> dict:
    """Dotted scalar leaves, as the CSV's columns are named."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("args, rows_of", [
    (["gpus"], None),
    (["capacity", "-m", "llama-3.1-8b", "-c", 8192], None),
    (["serve", "-m", "llama-3.1-8b", "-i", 1000, "--output-len", 200, "-n", "1,8"], None),
    (["serve", "-m", "llama-3.1-8b", "-i", 500, "--output-len", 100, "-n", 4, "--simulate", "--num-prompts", 50], None),
    (["validate", "--published", "validation/published/measurements.csv"], "rows"),
    (["validate", "--engine-memory", "validation/engine-memory/vllm.csv"], "rows"),
], ids=["gpus", "capacity", "serve frontier", "serve simulate", "validate published", "validate engine-memory"])
def test_40_outputs2_every_null_of_the_json_has_its_note_in_the_csv(args, rows_of, monkeypatch):
    """outputs 2: `--format csv` had dropped the reason for every null the JSON gives one (gpus' fp8 blank on eleven
    parts, capacity's gpus_for_target and cost, serve's request_rate, validate's band and era): each null of the JSON
    is an empty cell with its KEY_note column beside it, saying what the JSON's note says."""
    monkeypatch.chdir(ROOT)
    doc = json.loads(cli(*args, "-f", "json"))
    docs = doc[rows_of] if rows_of else doc if isinstance(doc, list) else [doc]
    rows = csv_rows(*args)
    assert len(rows) == len(docs)
    checked = 0
    for d, row in zip(docs, rows):
        for k, v in flat(d).items():
            if v is None and k in row and not k.endswith("_note"):
                assert row[k] == "" and row.get(f"{k}_note"), (k, row.get(f"{k}_note"))
                assert row[f"{k}_note"] == flat(d).get(f"{k}_note"), k
                checked += 1
    assert checked


def test_40_outputs2_a_gpu_without_an_fp8_peak_says_it_has_no_fp8_units():
    """outputs 2: the A100's fp8 column was blank with the generic "not applicable to this run" in JSON and nothing in
    CSV; Ampere's tensor cores take TF32, BF16, FP16, INT8 and INT4, no FP8 (NVIDIA A100 datasheet, "Peak" rows;
    FP8 first in Hopper's fourth-generation tensor cores, NVIDIA H100 whitepaper)."""
    row = next(r for r in csv_rows("gpus") if r["name"] == "a100-sxm-80gb")
    assert row["fp8_tflops"] == "" and row["fp8_tflops_note"] == "no fp8 tensor units"
    doc = next(r for r in json.loads(cli("gpus", "-f", "json")) if r["name"] == "a100-sxm-80gb")
    assert doc["fp8_tflops"] is None and doc["fp8_tflops_note"] == "no fp8 tensor units"
    h100 = next(r for r in csv_rows("gpus") if r["name"] == "h100-sxm")
    assert h100["fp8_tflops"] and not h100["fp8_tflops_note"]


def test_40_outputs2_capacity_keeps_its_columns_whatever_the_rule():
    """outputs 2 with capacity's own rule (audit I2: the same columns in the same order whatever the rule): the notes
    added for the nulls are columns every run has, empty where the cell is not; kvcalc's rule leaves the 26
    engine_memory.* cells empty under engine_memory_note's reason, SGLang's names the terms its rule has not."""
    plain = csv_rows("capacity", "-m", "llama-3.1-8b", "-c", 8192)[0]
    vllm = csv_rows("capacity", "-m", "llama-3.1-70b", "-c", 8192, "--tp", 4, "--engine", "vllm",
                    "--target-tokens-per-s", 20000, "--price-per-gpu-hour", 2)[0]
    sglang = csv_rows("capacity", "-m", "llama-3.1-70b", "-c", 8192, "--tp", 4, "--engine", "sglang")[0]
    assert list(plain) == list(vllm) == list(sglang)
    assert plain["gpus_for_target_note"] == "not asked: no --target-tokens-per-s"
    assert plain["cost_per_million_tokens_note"] == "not asked: no --price-per-gpu-hour"
    assert plain["engine_memory_note"].startswith("kvcalc's memory rule")
    assert vllm["gpus_for_target_note"] == "" and vllm["engine_memory_note"] == ""
    assert vllm["engine_memory.binding_pipeline_stage_note"] == "no pipeline stages (--pp 1)"
    assert sglang["engine_memory.cuda_graph_bytes_note"] == "not part of sglang's memory rule"


def test_40_outputs3_capacity_names_a_replicas_tokens_and_a_gpus():
    """outputs 3: capacity's tokens_per_s is one replica's (the table said "per replica of 4 GPUs"), beside serve's
    deployment-wide output_tokens_per_s: read as per GPU or as the deployment's it is 4x or 12x off. By hand from
    its own step: a replica decodes `batch` sequences a decode_ms step, batch / decode_ms x 1000 tokens/s, a GPU a
    quarter of it at TP 4; the target of 20,000 tokens/s takes ceil(20,000 / that) replicas of 4 GPUs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=8192, tp=4, target_tokens_per_s=20_000)
    replica = c["batch"] / c["decode_ms"] * 1000
    assert c["gpus_per_replica"] == 4
    assert c["tokens_per_s_per_replica"] == pytest.approx(replica, rel=1e-12) == c["tokens_per_s"]
    assert c["tokens_per_s_per_gpu"] == pytest.approx(replica / 4, rel=1e-12)
    assert c["gpus_for_target"] == math.ceil(20_000 / replica) * 4


def test_40_outputs4_to_json_dict_is_the_documented_document():
    """outputs 4: kvcalc.estimate(...).to_json_dict() left `speculative: null` bare and had no schema_version, so
    docs/schema/estimate.json (which json-schema.md names as its schema) rejected it; it is now the CLI's document."""
    jsonschema = pytest.importorskip("jsonschema")
    doc = quiet_estimate("llama-3.1-8b", "h100-sxm").to_json_dict()
    assert doc["speculative"] is None and doc["speculative_note"] == "not asked: no --speculate"
    assert list(doc)[0] == "schema_version"
    jsonschema.Draft202012Validator(json.loads((ROOT / "docs/schema/estimate.json").read_text())).validate(doc)
    assert doc == json.loads(cli("estimate", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-f", "json"))


def null_notes(doc, path="$"):
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k.endswith("_note") and v is None:
                yield f"{path}.{k}"
            yield from null_notes(v, f"{path}.{k}")
    elif isinstance(doc, list):
        for n, v in enumerate(doc):
            yield from null_notes(v, f"{path}[{n}]")


def test_40_outputs4_no_note_is_null_and_the_checker_catches_an_undocumented_key():
    """outputs 4: plan printed "replicas_note": null and "roofline_note": null on every row (a note with nothing to
    say); and no test caught a key a schema does not describe (serve's max_running), where test_output now holds every
    key to its schema: its checker finds a key added at any depth."""
    from test_output import undocumented_keys  # tests/ is on sys.path (pytest's rootdir-relative imports)

    doc = json.loads(cli("plan", "-m", "llama-3.1-8b", "-i", 1000, "-o", 100, "--request-rate", 2, "-f", "json"))
    assert not list(null_notes(doc))
    schema = json.loads((ROOT / "docs/schema/serve.json").read_text())
    serve = json.loads(cli("serve", "-m", "llama-3.1-8b", "-i", 1000, "--output-len", 200, "-n", 8, "-f", "json"))
    assert not list(undocumented_keys(schema, serve))
    serve["made_up"] = {"deeper": 1}
    serve["assumptions"]["made_up"] = 1  # assumptions is a map of any key (its additionalProperties): described
    del schema["properties"]["max_running"]
    assert sorted(undocumented_keys(schema, serve)) == ["$.made_up", "$.max_running"]


@pytest.mark.parametrize("extra", [[], ["-n", "1,8"], ["-n", 4, "--simulate", "--num-prompts", 20]],
                         ids=["one run", "frontier", "simulate"])
def test_40_outputs5_every_serve_csv_starts_with_the_version(extra):
    """outputs 5: json-schema.md said serve's CSV carries schema_version; the frontier's and the simulation's did not
    (and estimate's did, unsaid). Every command's CSV now starts with it."""
    args = ["serve", "-m", "llama-3.1-8b", "-i", 500, "--output-len", 100, *(extra or ["-n", 8])]
    header = cli(*args, "-f", "csv").splitlines()[0].split(",")
    assert header[0] == "schema_version"


@pytest.mark.parametrize("arrivals, word", [(None, "staggered"), ("waves", "waves")])
def test_40_outputs6_serve_says_its_arrivals_under_a_concurrency(arrivals, word):
    """outputs 6: under --concurrency assumptions.arrivals was null, "not applicable to this run", while the mode moves
    TTFT 5x (Llama-3.1-8B on an H100, 1,000 in / 200 out, 8 in flight: 31.8 ms staggered, 161.5 ms in waves): the
    mode is now a top-level key and the assumption says what it means."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = kvcalc.serve("llama-3.1-8b", "h100-sxm", input_len=1000, output_len=200, concurrency=8,
                         **({"arrivals": arrivals} if arrivals else {}))
    assert r["arrivals"] == word
    assert r["assumptions"]["arrivals"].startswith(f"{word}: ")
