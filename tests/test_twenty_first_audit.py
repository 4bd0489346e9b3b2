"""The twentieth audit's left list taken up, and the twenty-first hostile audit (docs/validation.md, "Twenty-first
hostile audit"): each test is named after its finding."""

import re
import warnings
from dataclasses import replace

import numpy as np
import pytest

from kvcalc.engines.scheduler import (
    ahead_before_default,
    schedules_ahead,
    sglang_prefill_first,
    vllm_v1,
)
from kvcalc.serving.simulate import StepGrid, Workload, simulate, simulate_schedule


class OneSecondSteps:
    """Every step takes 1 s, whatever it holds."""

    decode_gain, decode_q, pp, tp, ep = 1.0, 1, 1, 1, 1

    def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None):
        return 1.0


def _run(policy, arrivals, ins, outs):
    grid = StepGrid(OneSecondSteps(), 64, 4096, policy.budget)
    w = Workload(np.array(arrivals, dtype=float), np.array(ins), np.array(outs))
    return simulate_schedule(policy, grid, w, pool_tokens=10_000, log_steps=True)


def test_20_r3_a_scheduler_a_step_ahead_takes_an_arrival_two_steps_on():
    """A (2 in, 4 out) at 0, B (2 in, 2 out) at 1.5 s; steps of 1 s (the hand schedule of tests/test_simulate.py's
    SGLang/vLLM comparison, which holds for engines that schedule a step at a time: B's first token at 3).
    vLLM with async scheduling fills step n + 1 when step n starts (EngineCore.step_with_batch_queue):
      step 1 (0-1) A's prompt; step 2 (1-2) A decodes, and step 3 is filled at t = 1, before B arrives at 1.5;
      step 3 (2-3) A decodes; step 4 (3-4) A's last token beside B's prompt: A done at 4, B's first token at 4;
      step 5 (4-5) B's second token: done at 5.
    SGLang's overlap scheduler the same, but B's prompt runs alone (prefill first), so A's last token comes at 5."""
    args = ([0, 1.5], [2, 2], [4, 2])
    sync = _run(vllm_v1(budget=8, max_seqs=8, block_size=1), *args)
    v = _run(replace(vllm_v1(budget=8, max_seqs=8, block_size=1), ahead=True), *args)
    s = _run(replace(sglang_prefill_first(budget=8, max_seqs=8, block_size=1), ahead=True), *args)
    assert list(sync.first_token_s) == [1.0, 3.0] and list(sync.finish_s) == [4.0, 4.0]
    assert list(v.first_token_s) == [1.0, 4.0] and list(v.finish_s) == [4.0, 5.0]
    assert list(s.first_token_s) == [1.0, 4.0] and list(s.finish_s) == [5.0, 5.0]


def test_20_r3_an_idle_scheduler_takes_an_arrival_as_the_running_step_ends():
    """A (2 in, 1 out) at 0 is done with its prompt's step (0-1); at t = 0 the scheduler had nothing to put after it,
    so B, arriving at 0.5, is scheduled as that step ends: its prompt in step 2 (1-2), first token at 2, as a
    scheduler a step at a time runs it. B arriving at 5 finds the engine idle and starts at 5."""
    for ahead in (False, True):
        policy = replace(vllm_v1(budget=8, max_seqs=8, block_size=1), ahead=ahead)
        r = _run(policy, [0, 0.5], [2, 2], [1, 2])
        assert list(r.first_token_s) == [1.0, 2.0] and list(r.finish_s) == [1.0, 3.0]
        r = _run(policy, [0, 5.0], [2, 2], [1, 2])
        assert list(r.first_token_s) == [1.0, 6.0] and list(r.finish_s) == [1.0, 7.0]


def test_20_r3_which_releases_schedule_a_step_ahead():
    """vLLM from 0.14 (PR #27614), with EAGLE or MTP from 0.15 (PR #31998), never with a draft model or Medusa;
    SGLang's overlap scheduler unless speculating; TensorRT-LLM's PyTorch back end, not its TensorRT engine; none
    under pipeline parallelism."""
    assert not schedules_ahead("vllm", release=(0, 13)) and schedules_ahead("vllm", release=(0, 14))
    assert not schedules_ahead("vllm", release=(0, 14), speculation="eagle")
    assert schedules_ahead("vllm", release=(0, 15), speculation="mtp")
    assert not schedules_ahead("vllm", release=(0, 30), speculation="draft")
    assert not schedules_ahead("vllm", release=(0, 30), pp=2)
    assert schedules_ahead("sglang") and not schedules_ahead("sglang", speculation="eagle")
    assert schedules_ahead("trtllm", band="pytorch") and not schedules_ahead("trtllm", band="engine")
    # the serving ledger's rows by release or date: SGLang 0.3.0 (LMSYS) and TensorRT-LLM 0.17 (dstack) ran a step
    # at a time, SGLang of 2024-12 (DataCrunch) and vLLM 0.19.1 by their engines' rule
    assert ahead_before_default("sglang", "0.3.0") is False
    assert ahead_before_default("sglang", "unknown (2024-12)") is None
    assert ahead_before_default("trtllm", "0.17.post1.dev") is False
    assert ahead_before_default("vllm", "unknown (2025-11)") is False
    assert ahead_before_default("vllm", "0.19.1") is None and ahead_before_default("gpt-fast", "0.1") is None


def test_20_r3_serve_simulate_says_it_and_takes_the_switch():
    """Poisson arrivals at 10 requests/s of 1,000 + 200 tokens for Llama-3.1-8B on an H100: vLLM's default release
    schedules a step ahead, and each arrival waits for the step after the one under way, so the median TTFT is
    longer than with the switch off (vllm serve --no-async-scheduling), by less than the longest step; 0.13 is a
    step at a time."""
    kw = dict(input_len=1000, output_len=200, arrivals="poisson", request_rate=10, num_prompts=300, engine="vllm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ahead = simulate("llama-3.1-8b", "h100-sxm", **kw)
        sync = simulate("llama-3.1-8b", "h100-sxm", schedules_ahead=False, **kw)
        old = simulate("llama-3.1-8b", "h100-sxm", vllm_version="0.13", **kw)
    assert ahead["schedules_ahead"] and not sync["schedules_ahead"] and not old["schedules_ahead"]
    longest_step_ms = ahead["itl_ms"]["p99"] * 2
    assert 0 < ahead["ttft_ms"]["p50"] - sync["ttft_ms"]["p50"] < longest_step_ms
    with pytest.raises(Exception, match="schedules_ahead: expected True, False or None"):
        simulate("llama-3.1-8b", "h100-sxm", schedules_ahead="yes", **kw)


def _trtllm_config(**over):
    c = {"engine": "trtllm", "gpu": "b200", "tensor_parallel": 4, "pipeline_parallel": 1, "expert_parallel": 1,
         "disaggregate": "8:4", "max_num_seqs": 919, "max_num_batched_tokens": 8192, "gpu_memory_utilization": 0.9,
         "kv_dtype": "fp8", "weight_dtype": "fp8-block", "converted_weights": False, "gpus_per_replica": 12,
         "replicas": 1}
    return {**c, **over}


def test_21_l1_trtllm_generation_servers_keep_the_overlap_scheduler():
    """TensorRT-LLM's disaggregated-serving example (examples/disaggregated/README.md) turns the overlap scheduler
    off on the context servers only; kvcalc had given both roles one YAML with `disable_overlap_scheduler: true`,
    so the decode pool lost the scheduler its TPOT assumes. Each role now names its own file, in --emit trtllm and
    in the k8s ConfigMap."""
    yaml = pytest.importorskip("yaml")
    from kvcalc.engines.launch import emit
    from kvcalc.specs.catalog import load_model

    text = emit("trtllm", load_model("deepseek-v3"), _trtllm_config(), 2500)
    context, generation = (line for line in text.splitlines() if line.startswith("trtllm-serve serve"))
    assert "extra-llm-api-config-context.yml --server_role CONTEXT" in context
    assert "extra-llm-api-config-generation.yml --server_role GENERATION" in generation
    docs = [d for d in yaml.safe_load_all(emit("k8s", load_model("deepseek-v3"), _trtllm_config(), 2500)) if d]
    data = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    ctx = yaml.safe_load(data["extra-llm-api-config-context.yml"])
    gen = yaml.safe_load(data["extra-llm-api-config-generation.yml"])
    assert ctx["disable_overlap_scheduler"] is True and "disable_overlap_scheduler" not in gen
    assert ctx["cache_transceiver_config"] == gen["cache_transceiver_config"]
    pods = [d for d in docs if d["kind"] != "ConfigMap"]
    commands = [" ".join(d["spec"]["template"]["spec"]["containers"][0]["command"]) for d in pods]
    assert any("/etc/kvcalc/extra-llm-api-config-context.yml" in c and "CONTEXT" in c for c in commands)
    assert any("/etc/kvcalc/extra-llm-api-config-generation.yml" in c and "GENERATION" in c for c in commands)


def test_21_l2_trtllm_yaml_carries_the_memory_fraction():
    """trtllm-serve builds KvCacheConfig(free_gpu_memory_fraction=...) from --kv_cache_free_gpu_memory_fraction, then
    the --extra_llm_api_options YAML's kv_cache_config replaces it whole (tensorrt_llm/commands/serve.py,
    update_llm_args_with_extra_dict): a block with only the dtype took KvCacheConfig's default 0.9 where the plan was
    sized at 0.6. The YAML states the fraction itself."""
    yaml = pytest.importorskip("yaml")
    from kvcalc.engines.launch import trtllm_command
    from kvcalc.specs.catalog import load_model

    cmd, files = trtllm_command(load_model("llama-3.1-8b"), _trtllm_config(
        disaggregate=None, tensor_parallel=1, gpus_per_replica=1, gpu_memory_utilization=0.6), 1200)
    assert cmd[cmd.index("--kv_cache_free_gpu_memory_fraction") + 1] == "0.6"
    assert yaml.safe_load(files["extra-llm-api-config.yml"])["kv_cache_config"] == {
        "dtype": "fp8", "free_gpu_memory_fraction": 0.6}


def test_21_l4_emit_says_why_nothing_is_left():
    """`plan -m deepseek-v3 -g h200 --gpu-budget 1 --emit vllm` said "none meets the limits" where no limit was given:
    276 configurations did not fit and 260 were over the budget. The message counts the reasons."""
    from typer.testing import CliRunner

    from kvcalc.cli import app

    r = CliRunner().invoke(app, ["plan", "-m", "deepseek-v3", "-g", "h200", "-i", "2000", "-o", "500",
                                 "--gpu-budget", "1", "--emit", "vllm"])
    assert r.exit_code == 2 and "meets the limits" not in r.output
    assert "none is left (does not fit: 276; over the GPU budget: 260)" in r.output


def test_21_l5_vllm_mtp_launches_as_mtp():
    """vLLM rewrites its family MTP names (deepseek_mtp, qwen3_next_mtp) to "mtp" with a deprecation warning
    (vllm/config/speculative.py SpeculativeConfig.__post_init__): the launch says "mtp" for every family."""
    import json

    from kvcalc.engines.launch import vllm_command
    from kvcalc.specs.catalog import load_model

    c = {"engine": "vllm", "gpu": "h200", "tensor_parallel": 8, "pipeline_parallel": 1, "expert_parallel": 1,
         "disaggregate": None, "max_num_seqs": 64, "max_num_batched_tokens": 8192, "gpu_memory_utilization": 0.9,
         "kv_dtype": "bf16", "weight_dtype": "fp8-block", "converted_weights": False, "gpus_per_replica": 8,
         "replicas": 1, "speculate": "mtp=1"}
    for model in ("deepseek-v3", "qwen3-next-80b-a3b"):
        cmd = vllm_command(load_model(model), c, 2500)
        assert json.loads(cmd[cmd.index("--speculative-config") + 1]) == {"method": "mtp", "num_speculative_tokens": 1}


def test_21_l3_plan_says_the_vllm_pool_is_an_upper_bound():
    """serve warns that vLLM 0.30 also takes its CUDA-graph estimate out of the KV pool, so its pool is an upper
    bound; plan, which sizes the same deployment with the estimate at 0 and launches --max-num-seqs at the pool's
    seats, said nothing. Its warnings (JSON and stderr) now say it where a vLLM configuration is chosen or best."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from kvcalc.planning.plan import plan

        r = plan("qwen3-32b", ["h100-sxm"], input_len=1000, output_len=200, concurrency=64, engines=["vllm"])
        t = plan("qwen3-32b", ["h100-sxm"], input_len=1000, output_len=200, concurrency=64, engines=["trtllm"])
    assert r["choice"]["engine"] == "vllm"
    assert any("CUDA-graph estimate" in w and "upper bounds" in w for w in r["warnings"])
    assert not any("CUDA-graph estimate" in w for w in t["warnings"])


def test_21_m1_vllm_hybrid_pool_is_prefix_caching_off_and_says_so():
    """A reviewer read vLLM's MambaModelConfig (mamba_cache_mode 'align' or 'all' under prefix caching: two state
    pages a request, or one a block) as the default. vLLM keeps prefix caching opt-in for hybrid models
    (engine/arg_utils.py, 0.27.1: default_prefix_caching = is_prefix_caching_supported and not is_hybrid), so the
    default pool holds one state a request, as kvcalc sizes it; capacity now says what --enable-prefix-caching would
    change, and a model without recurrent layers is not told."""
    from typer.testing import CliRunner

    from kvcalc.cli import app

    args = ["capacity", "-g", "h200", "-c", "8192", "-e", "vllm"]
    hybrid = CliRunner().invoke(app, [*args, "-m", "nemotron-h-8b", "--vllm-version", "0.27"])
    dense = CliRunner().invoke(app, [*args, "-m", "llama-3.1-8b", "--vllm-version", "0.27"])
    assert hybrid.exit_code == dense.exit_code == 0
    assert "mamba_cache_mode 'align'" in hybrid.output and "opt-in" in hybrid.output
    assert "mamba_cache_mode" not in dense.output
    # from 0.28 vLLM turns it on for hybrids, in 'align' (PR #50991; the thirty-third audit, attention 2)
    newer = CliRunner().invoke(app, [*args, "-m", "nemotron-h-8b"])
    assert "turns prefix caching on for hybrid models by default" in newer.output and "opt-in" not in newer.output


def test_20_w10_the_api_answers_the_warnings_the_cli_prints_on_stderr():
    """/api/serve with a list of concurrencies answers the frontier's rows, as `kvcalc serve --format json` prints
    them; the warnings the command line prints on stderr (here: vLLM 0.30's pool is an upper bound, its CUDA-graph
    estimate unknown) had been dropped. They come in the X-Kvcalc-Warnings header as a JSON list, the body unchanged;
    an answer without warnings has no header."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (the dev extra)")
    import json

    from fastapi.testclient import TestClient

    from kvcalc.web.app import create_app

    client = TestClient(create_app())
    r = client.get("/api/serve?model=llama-3-8b&input_len=1000&output_len=200&concurrency=1,8&engine=vllm")
    assert r.status_code == 200 and isinstance(r.json(), list)
    said = json.loads(r.headers["x-kvcalc-warnings"])
    assert any("CUDA-graph estimate" in w for w in said)
    quiet = client.get("/api/estimate?model=llama-3-8b")
    assert quiet.status_code == 200 and "x-kvcalc-warnings" not in quiet.headers


def _cli(*args):
    from typer.testing import CliRunner

    from kvcalc.cli import app

    return CliRunner().invoke(app, list(args))


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kvcalc: error: "), result.stderr
    return lines[0]


def test_21_c1_calibrate_refuses_an_integer_past_a_float(tmp_path):
    """A 401-digit `completed` in a vllm bench serve result had been an OverflowError traceback (math.isfinite of an
    int past a float's range): one line naming the file, line and field, the value cut short."""
    f = tmp_path / "bench.json"
    f.write_text('{"completed": 1' + "0" * 400 + ', "total_input_tokens": 100000, "total_output_tokens": 20000, '
                 '"mean_tpot_ms": 10.0, "max_concurrency": 8}')
    line = _error_line(_cli("calibrate", "--from-benchmark", str(f), "-m", "llama-3.1-8b", "-o",
                            str(tmp_path / "p.toml")))
    assert "line 1: field completed: expected a non-negative number" in line and len(line) < 300
    assert not (tmp_path / "p.toml").exists()


def _published_row(**cells) -> tuple[str, str]:
    from pathlib import Path

    lines = (Path(__file__).parent.parent / "validation/published/measurements.csv").read_text().splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    assert row[header.index("id")] == "gf-01"
    for k, v in cells.items():
        row[header.index(k)] = v
    return lines[0], ",".join(row)


@pytest.mark.parametrize("field", ["batch", "tp", "input_len"])
def test_21_c2_the_published_ledger_refuses_integers_past_kvcalcs_limits(tmp_path, field):
    """profiles fit-published with a 401-digit batch (or tp, input_len) had been an OverflowError traceback, and a
    batch of 1e20 had been fitted: each integer is held to kvcalc's own limits (10,000,000 sequences, 1,024 GPUs,
    1e9 tokens)."""
    header, row = _published_row(**{field: "1" + "0" * 400})
    f = tmp_path / "m.csv"
    f.write_text(header + "\n" + row + "\n")
    line = _error_line(_cli("profiles", "fit-published", "--measurements", str(f), "--out-dir", str(tmp_path)))
    assert f"row gf-01: field {field}: 1000" in line and "past kvcalc's limit" in line and len(line) < 300


def test_21_c3_the_published_ledger_refuses_a_column_named_twice(tmp_path):
    """A second `measured` column (5) had been read over gf-01's own 104.9 tokens/s, and fitted, in silence."""
    header, row = _published_row()
    f = tmp_path / "m.csv"
    f.write_text(header + ",measured\n" + row + ",5\n")
    line = _error_line(_cli("profiles", "fit-published", "--measurements", str(f), "--out-dir", str(tmp_path)))
    assert "line 1: field measured: named twice in the header" in line
    f.write_text(header + "\n" + row + "\n" + row + "\n")
    assert "row id 'gf-01' appears twice" in _error_line(
        _cli("profiles", "fit-published", "--measurements", str(f), "--out-dir", str(tmp_path)))


def test_21_c4_calibrate_says_what_it_wrote_on_stderr(tmp_path):
    """calibrate --from-benchmark printed its summary on stdout after writing the profile, so with stdout closed it
    wrote the file and failed (a retry then met '--out exists'). Its summary is a status line on stderr, as
    import's: stdout stays empty."""
    f = tmp_path / "bench.json"
    f.write_text('{"completed": 100, "total_input_tokens": 100000, "total_output_tokens": 20000, '
                 '"mean_tpot_ms": 10.0, "mean_ttft_ms": 80.0, "max_concurrency": 8}')
    r = _cli("calibrate", "--from-benchmark", str(f), "-m", "llama-3.1-8b", "-o", str(tmp_path / "p.toml"))
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and r.stderr.startswith(f"wrote {tmp_path / 'p.toml'}: ")
    assert (tmp_path / "p.toml").exists()


def test_21_c5_import_names_are_printable_labels(tmp_path):
    """import -n took a newline (which broke every table's title), a 5,000-character name, and a bundled model's
    name (whose results then read as the bundled model's) without a word."""
    from pathlib import Path

    cfg = str(Path(__file__).parent / "fixtures/hf/Meta-Llama-3-8B")
    for bad in ("a\nb", "x" * 5000, "tab\there"):
        line = _error_line(_cli("import", cfg, "-n", bad, "-o", str(tmp_path / "z.toml")))
        assert "printable characters" in line and len(line) < 200
    r = _cli("import", cfg, "-n", "llama-3-8b", "-o", str(tmp_path / "z.toml"))
    assert r.exit_code == 0 and "is also a bundled model's name" in r.stderr


def test_21_c7_engine_version_takes_latest_as_vllm_version_does():
    """--vllm-version LATEST ran where --engine-version LATEST was refused; both take it in any case and spacing,
    and a long unknown release is quoted cut short."""
    base = ("serve", "-m", "llama-3.1-8b", "-e", "vllm", "-i", "100", "--output-len", "10", "-n", "4", "-f", "json")
    outs = {v: _cli(*base, "--engine-version", v) for v in ("latest", "LATEST", " Latest ")}
    assert all(r.exit_code == 0 for r in outs.values())
    assert len({r.stdout for r in outs.values()}) == 1
    line = _error_line(_cli(*base, "--engine-version", "9" * 300))
    assert "has no release" in line and len(line) < 300


def test_21_c6_a_bad_limit_is_the_one_line():
    """serve of gpt-oss-20b on an A100 warned of its MXFP4 kernels before refusing --max-tpot-ms 0: two lines where
    bad input gets one. The limits are checked before the deployment is built."""
    line = _error_line(_cli("serve", "-m", "gpt-oss-20b", "-g", "a100-sxm-80gb", "-i", "4096", "--output-len",
                            "1000", "-n", "8", "--max-tpot-ms", "0"))
    assert "--max-tpot-ms" in line


def test_20_w9_a_page_asked_for_json_or_csv_answers_the_apis():
    """/serve?...&format=json drew the page's table and ignored format; the page now sends such a request to the
    API's route with the same query (307), which answers JSON or CSV; format=table stays the page."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (the dev extra)")
    from fastapi.testclient import TestClient

    from kvcalc.web.app import create_app

    client = TestClient(create_app())
    query = "model=llama-3-8b&input_len=1000&output_len=200&concurrency=8"
    r = client.get(f"/serve?{query}&format=json", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == f"/api/serve?{query}&format=json"
    followed = client.get(f"/serve?{query}&format=csv")
    assert followed.status_code == 200 and followed.headers["content-type"].startswith("text/csv")
    page = client.get(f"/serve?{query}&format=table")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_20_w8_the_web_app_does_not_tell_its_paths(tmp_path, monkeypatch):
    """A repo id not in the Hugging Face cache answered with the cache's absolute path on the server; the web app names
    the folder instead (the command line, run by the server's own user, still prints it). File paths are refused
    whether or not they exist, with one message (no file-existence oracle)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (the dev extra)")
    from fastapi.testclient import TestClient

    from kvcalc.web.app import create_app

    cache = tmp_path / "secret-cache-dir"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    client = TestClient(create_app())
    r = client.get("/api/estimate?model=Qwen/Qwen3-8B")
    assert r.status_code == 422 and "secret-cache-dir" not in r.text and "its folder on the server" in r.text
    there = client.get(f"/api/estimate?model={tmp_path}").json()["error"]
    absent = client.get(f"/api/estimate?model={tmp_path / 'nothing'}").json()["error"]
    # the path as the message quotes it (cut to 40 characters past 60) aside, one message for both
    assert re.sub(r"--model: '[^']*'", "--model: X", there) == re.sub(r"--model: '[^']*'", "--model: X", absent)


def test_20_w6_a_roofline_draws_at_most_a_thousand_points(tmp_path):
    """6 GPUs x 5 attention variants x 200 batches made 6,000 points: 6.6 MB of SVG in 15 s from one command line,
    a chart no one can read. A roofline draws at most 1,000 (the chart, its data in the Python API and the web);
    1,000 exactly is drawn."""
    from kvcalc.report.roofline_data import roofline_data

    many = ",".join(str(b) for b in range(1, 201))
    line = _error_line(_cli("roofline", "-m", "llama-3-8b", "-g", "h100-sxm,h200,b200,a100-sxm-80gb,l4,mi300x",
                            "--attn", "mha,gqa8,gqa4,mqa,mla", "--batch", many, "-o", str(tmp_path / "r.svg")))
    assert "6 GPUs x 5 attention variants x 200 batches are 6,000 points" in line and "at most 1,000" in line
    assert not (tmp_path / "r.svg").exists()
    with pytest.raises(Exception, match="at most 1,000"):
        roofline_data(["h100-sxm", "h200"], "llama-3-8b", attn=["mha"], batch=list(range(1, 502)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = roofline_data(["h100-sxm", "h200"], "llama-3-8b", attn=["mha"], batch=list(range(1, 501)))
    assert data is not None


def _read_config(tmp_path, data: dict, name: str = "m"):
    import json

    from kvcalc.specs.catalog import load_model

    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(str(folder / "config.json"))


# Arcee's Trinity-Mini (model_type afmoe): the fields kvcalc reads
TRINITY_MINI = {"model_type": "afmoe", "num_hidden_layers": 32, "hidden_size": 2048, "intermediate_size": 6144,
                "moe_intermediate_size": 1024, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
                "num_experts": 128, "num_experts_per_tok": 8, "num_shared_experts": 1, "num_dense_layers": 2,
                "global_attn_every_n_layers": 4, "sliding_window": 2048, "vocab_size": 200192,
                "max_position_embeddings": 131072, "tie_word_embeddings": False, "hidden_act": "silu"}


def test_21_h1_a_bailing_linear_hybrid_is_refused(tmp_path):
    """inclusionAI's Ring-mini-linear-2.0 (model_type bailing_moe_linear) makes every layer_group_size-th layer softmax
    attention and the rest linear attention (vLLM's bailing_moe_linear.py); read as all softmax attention, its KV had
    been 5x high with only "not a known family" said. layer_group_size now refuses it by name."""
    from kvcalc.errors import KvcalcError

    data = {"model_type": "bailing_moe_linear", "num_hidden_layers": 20, "hidden_size": 2048,
            "intermediate_size": 5120, "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 128,
            "vocab_size": 157184, "layer_group_size": 5, "num_experts": 256, "num_experts_per_tok": 8,
            "moe_intermediate_size": 512}
    with pytest.raises(KvcalcError, match="layer_group_size: layers other than softmax attention"):
        _read_config(tmp_path, data)


def test_21_h2_afmoe_dense_layers_and_global_layers_are_read(tmp_path):
    """AfmoeConfig (transformers' configuration_afmoe.py): num_dense_layers leading dense layers ("Layers with index
    < num_dense_layers will use standard dense MLPs"), and layer_types built as "sliding_attention" if (i + 1) %
    global_attn_every_n_layers else "full_attention", as Gemma 3's from sliding_window_pattern. Trinity-Mini's
    num_dense_layers had been ignored (two MoE layers too many, 1.28 B over) and every layer read as sliding (KV 16.7x
    low). By hand at 131,072 tokens: 8 full layers x 131,072 tokens + 24 sliding x 2,048 window, each token 2 (K, V)
    x 4 heads x 128 x 2 B = 2,048 B a layer: 2,248,146,944 B a sequence."""
    from kvcalc.formulas.kv import kv_bytes_per_sequence
    from kvcalc.formulas.params import total_params

    spec = _read_config(tmp_path, TRINITY_MINI, "afmoe")
    same = _read_config(tmp_path, {**{k: v for k, v in TRINITY_MINI.items()
                                      if k not in ("num_dense_layers", "global_attn_every_n_layers")},
                                   "first_k_dense_replace": 2, "sliding_window_pattern": 4}, "pattern")
    assert spec.moe.first_dense_layers == 2 == same.moe.first_dense_layers
    assert total_params(spec) == total_params(same)
    assert kv_bytes_per_sequence(spec, 131_072, 2) == 2_248_146_944 == kv_bytes_per_sequence(same, 131_072, 2)


def test_21_h3_seed_oss_output_projection_has_no_bias(tmp_path):
    """SeedOssAttention biases q, k and v (attention_bias) and o_proj only by attention_out_bias, false in
    ByteDance-Seed/Seed-OSS-36B's config. By hand (d 5,120, 64 layers, 80 heads, 8 KV heads of 128, MLP 27,648,
    vocabulary 155,136, untied): embeddings and head 2 x 155,136 x 5,120 = 1,588,592,640; a layer's attention
    2 x 5,120 x 10,240 + 2 x 5,120 x 1,024 + the q, k, v biases 12,288 = 115,355,648, its MLP 3 x 5,120 x 27,648 =
    424,673,280, its two norms 10,240; 64 layers and the final norm: 36,151,104,512 (327,680 had been added)."""
    data = {"model_type": "seed_oss", "attention_bias": True, "attention_out_bias": False, "head_dim": 128,
            "hidden_act": "silu", "hidden_size": 5120, "intermediate_size": 27648, "max_position_embeddings": 524288,
            "num_attention_heads": 80, "num_hidden_layers": 64, "num_key_value_heads": 8,
            "tie_word_embeddings": False, "vocab_size": 155136}
    from kvcalc.formulas.params import total_params

    assert total_params(_read_config(tmp_path, data)) == 36_151_104_512


def test_21_h4_qwen3_vl_moe_text_is_qwen3_moe(tmp_path):
    """Qwen3-VL-30B-A3B's text_config (model_type qwen3_vl_moe_text) had been read as an unknown family: its q/k norms
    lost (12,288 short) and tie_word_embeddings, written at the top, "assumed false". It is now read as the Qwen3-MoE
    config it is, the wrapper's tie_word_embeddings with it. By hand: embeddings and head 2 x 151,936 x 2,048 =
    622,329,856; a layer's attention 2 x 2,048 x 4,096 + 2 x 2,048 x 512 + q/k norms 256 = 18,874,624, its 128 experts
    3 x 2,048 x 768 each and router 2,048 x 128 = 604,241,920, two norms 4,096; 48 layers and the final norm:
    30,532,122,624."""
    text = {"attention_bias": False, "head_dim": 128, "hidden_size": 2048, "intermediate_size": 6144,
            "max_position_embeddings": 262144, "moe_intermediate_size": 768, "num_attention_heads": 32,
            "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48, "num_key_value_heads": 4,
            "vocab_size": 151936, "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True}
    wrapped = _read_config(tmp_path, {"model_type": "qwen3_vl_moe", "tie_word_embeddings": False,
                                      "text_config": {**text, "model_type": "qwen3_vl_moe_text"}}, "vl")
    plain = _read_config(tmp_path, {**text, "model_type": "qwen3_moe", "tie_word_embeddings": False}, "plain")
    from kvcalc.formulas.params import total_params

    assert wrapped.attention.qk_norm and total_params(wrapped) == total_params(plain) == 30_532_122_624


def test_22_s1_a_finished_requests_seat_is_free_a_step_later_when_scheduling_ahead():
    """vLLM, two seats (max_num_seqs 2), steps of 1 s; A (2 in, 2 out), C (2 in, 10 out) and B (2 in, 2 out) at 0.
    Step 1 (0-1): A's and C's prompts (first tokens), B waits for a seat. Step 2 (1-2): A's second token, A done.
    A step at a time, step 3 is filled at t = 2 with A gone: B's prompt, first token at 3. A step ahead, step 3 was
    filled at t = 1, while A still held its seat (vLLM's update_from_output frees it when step 2's output is in):
    B's prompt runs in step 4, first token at 4 (the twenty-second audit, S1)."""
    args = ([0, 0, 0], [2, 2, 2], [2, 10, 2])
    policy = vllm_v1(budget=8, max_seqs=2, block_size=1)
    sync = _run(policy, *args)
    ahead = _run(replace(policy, ahead=True), *args)
    assert list(sync.first_token_s) == [1.0, 1.0, 3.0]
    assert list(ahead.first_token_s) == [1.0, 1.0, 4.0] and list(ahead.finish_s) == [2.0, 10.0, 5.0]


def test_22_s5_serve_simulate_takes_the_scheduler_switch():
    """A server launched with --no-async-scheduling (vLLM) or --disable-overlap-schedule (SGLang) could be simulated
    from the Python API only; serve --simulate takes --async-scheduling / --no-async-scheduling, and the closed form,
    which does not read it, refuses it."""
    import json

    base = ("serve", "-m", "llama-3.1-8b", "-i", "1000", "--output-len", "200", "--simulate", "--arrivals",
            "poisson", "--request-rate", "10", "--num-prompts", "200", "-f", "json")
    on, off = _cli(*base), _cli(*base, "--no-async-scheduling")
    assert on.exit_code == off.exit_code == 0, (on.output, off.output)
    assert json.loads(on.stdout)["schedules_ahead"] and not json.loads(off.stdout)["schedules_ahead"]
    assert json.loads(on.stdout)["ttft_ms"]["p50"] > json.loads(off.stdout)["ttft_ms"]["p50"]
    line = _error_line(_cli("serve", "-m", "llama-3.1-8b", "-i", "1000", "--output-len", "200", "-n", "8",
                            "--async-scheduling"))
    assert "--async-scheduling: only with --simulate" in line


LLAMA3_8B = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
             "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
             "max_position_embeddings": 8192, "tie_word_embeddings": False, "rope_theta": 500000.0}


def test_22_q1_q2_plan_leaves_out_weights_the_engine_does_not_load(tmp_path):
    """An NVFP4 checkpoint on an H100 had been planned (and launched) under TensorRT-LLM, and an FP8 one on an A100:
    TensorRT-LLM's hardware support matrix (docs/source/features/quantization.md) lists NVFP4 on Blackwell only and
    FP8 not on Ampere, and SGLang's ModelOptFp4Config needs compute capability 10.0. plan now searches those formats
    under vLLM alone there (weight-only Marlin), and estimate says the refused pairs do not start."""
    import json

    from kvcalc.engines.formats import engine_format_refusal
    from kvcalc.planning.plan import plan
    from kvcalc.specs.catalog import load_gpu

    nvfp4 = {**LLAMA3_8B, "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4",
                                                  "group_size": 16, "exclude_modules": ["lm_head"]}}
    fp8 = {**LLAMA3_8B, "quantization_config": {"quant_method": "fp8", "activation_scheme": "static"}}
    paths = {}
    for name, data in (("nvfp4", nvfp4), ("fp8", fp8)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(data))
        paths[name] = str(tmp_path / name / "config.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h100 = plan(paths["nvfp4"], ["h100-sxm"], input_len=1024, output_len=256, concurrency=16, convert=False)
        a100 = plan(paths["fp8"], ["a100-sxm-80gb"], input_len=1024, output_len=256, concurrency=16, convert=False)
    assert set(h100["best_by_engine"]) == {"vllm"} and h100["choice"]["weight_dtype"] == "nvfp4"
    assert "trtllm" not in a100["best_by_engine"] and a100["choice"]["weight_dtype"] == "fp8"
    h100_hw, b200, a100_hw = (load_gpu(g) for g in ("h100-sxm", "b200", "a100-sxm-80gb"))
    assert engine_format_refusal("trtllm", h100_hw, "nvfp4") and engine_format_refusal("sglang", h100_hw, "nvfp4")
    assert engine_format_refusal("vllm", h100_hw, "nvfp4") is None
    assert engine_format_refusal("trtllm", b200, "nvfp4") is None and engine_format_refusal("sglang", b200, "nvfp4") is None
    assert engine_format_refusal("trtllm", a100_hw, "fp8") and engine_format_refusal("trtllm", h100_hw, "fp8") is None
    r = _cli("estimate", "-m", paths["nvfp4"], "-g", "h100-sxm", "-e", "trtllm")
    assert r.exit_code == 0 and "TensorRT-LLM loads NVFP4 weights on Blackwell only" in " ".join(r.stderr.split())


def test_20_w7_the_openapi_schema_types_options_without_a_default():
    """Options with no default (--max-ttft-ms, --input-len, --step-tokens) were advertised as strings, so a generated
    client sent them quoted; they are numbers and integers, as the CLI parses them. --explain, which the API answers
    with a 422 (the derivations are the page's), is not advertised."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (the dev extra)")
    from fastapi.testclient import TestClient

    from kvcalc.web.app import create_app

    spec = TestClient(create_app()).get("/openapi.json").json()

    def types(path):
        return {p["name"]: p["schema"]["type"] for p in spec["paths"][path]["get"]["parameters"]}

    serve, estimate = types("/api/serve"), types("/api/estimate")
    assert (serve["max_ttft_ms"], serve["request_rate"], serve["cuda_graph_memory"]) == ("number",) * 3
    assert (serve["input_len"], serve["step_tokens"], serve["max_num_seqs"]) == ("integer",) * 3
    assert serve["concurrency"] == "string" and serve["model"] == "string"  # a list or "max"; a name
    assert "explain" not in estimate and estimate["kv_lora_rank"] == "integer"


def test_20_n7_ngram_speculation_costs_no_draft():
    """vLLM's ngram method (prompt lookup) drafts k tokens from the request's own tokens on the host: no weights, no
    cache, no draft step on the GPU, so a verify step of k + 1 tokens is the whole cost. Llama-3.1-8B at batch 8,
    k = 4, alpha 0.6: tokens a step (1 - 0.6^5) / (1 - 0.6) = 2.3056, the decode time per token the verify step over
    that (draft 0). Its acceptance is the data's, so alpha (or accepted) is required; vLLM, SGLang and TensorRT-LLM
    run it without scheduling ahead (vLLM's default resolution turns async scheduling off for it)."""
    import json

    r = _cli("estimate", "-m", "llama-3.1-8b", "-b", "8", "--speculate", "ngram=4,alpha=0.6", "-f", "json")
    assert r.exit_code == 0, r.output
    sp = json.loads(r.stdout)["speculative"]
    assert sp["method"] == "ngram" and sp["k"] == 4 and sp["verify_tokens"] == 5
    assert sp["tokens_per_step"] == pytest.approx((1 - 0.6 ** 5) / (1 - 0.6), abs=1e-4)
    assert sp["draft_ms"] == 0 and sp["draft_weights_bytes"] == 0 and sp["draft_kv_bytes"] == 0
    assert sp["ms_per_token"] == pytest.approx(sp["verify_ms"] / sp["tokens_per_step"], rel=1e-6)
    assert "ngram needs alpha=" in _error_line(_cli("estimate", "-m", "llama-3.1-8b", "--speculate", "ngram"))
    assert not schedules_ahead("vllm", release=(0, 30), speculation="ngram")
    assert not schedules_ahead("trtllm", band="pytorch", speculation="ngram")
