"""Launch commands for a planned deployment: the flags of each engine's server that decide what was planned.

Flag names are those of the engine releases the profiles model, read from each engine's own argument parser:
- vLLM: vllm/engine/arg_utils.py of the vllm 0.30.0 wheel on PyPI, lines 883-1713 (EngineArgs.add_cli_args:
  --tensor-parallel-size, --pipeline-parallel-size, --data-parallel-size, --enable-expert-parallel, --max-num-seqs,
  --max-num-batched-tokens, --gpu-memory-utilization, --kv-cache-dtype, --max-model-len, --quantization,
  --speculative-config, --dtype).
- SGLang: sgl-project/sglang python/sglang/srt/server_args.py of release 0.5.14 (--tp-size, --pp-size, --dp-size,
  --ep-size, --enable-dp-attention, --max-running-requests, --chunked-prefill-size, --mem-fraction-static, --kv-cache-dtype,
  --context-length, --quantization, --speculative-algorithm, --speculative-num-steps, --speculative-eagle-topk,
  --speculative-num-draft-tokens, --disaggregation-mode, --dtype, --max-prefill-tokens).
- TensorRT-LLM: NVIDIA/TensorRT-LLM tensorrt_llm/commands/serve.py at 00209af1 (`trtllm-serve serve` click options:
  --backend, --tp_size, --pp_size, --ep_size, --max_batch_size, --max_num_tokens, --max_seq_len,
  --kv_cache_free_gpu_memory_fraction, --extra_llm_api_options; the KV dtype and attention data parallelism go in
  that YAML as kv_cache_config.dtype, enable_attention_dp and enable_chunked_prefill, which the LLM API reads).
SGLang's and TensorRT-LLM's servers listen on loopback unless told otherwise (server_args.py `host: str =
"127.0.0.1"`; serve.py `@click.option("--host", type=str, default="localhost")`), which no other pod, Service or router
can reach, so their commands bind every interface (--host 0.0.0.0), as vLLM's server does by default (the seventh
audit, C3).
"""

from __future__ import annotations

import json
import re
import shlex

from kvcalc.checks import shown_value
from kvcalc.engines.formats import (
    engine_format_refusal,
    engine_kv_refusal,
    foreign_format,
    kv_format_refusal,
    unset_int8_peak,
)

# Every flag an emitted command may use, per engine, as that release's parser spells it (module docstring).
FLAGS = {
    "vllm": {"--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size", "--enable-expert-parallel",
             "--max-num-seqs", "--max-num-batched-tokens", "--gpu-memory-utilization", "--kv-cache-dtype",
             "--max-model-len", "--quantization", "--speculative-config", "--kv-transfer-config",
             "--trust-remote-code", "--dtype"},
    "sglang": {"--model-path", "--tp-size", "--pp-size", "--dp-size", "--ep-size", "--enable-dp-attention",
               "--max-running-requests", "--chunked-prefill-size", "--mem-fraction-static", "--kv-cache-dtype",
               "--context-length", "--quantization", "--speculative-algorithm", "--speculative-num-steps",
               "--disaggregation-mode", "--speculative-eagle-topk", "--speculative-num-draft-tokens", "--host",
               "--trust-remote-code", "--dtype", "--max-prefill-tokens"},
    "trtllm": {"--backend", "--tp_size", "--pp_size", "--ep_size", "--max_batch_size", "--max_num_tokens",
               "--max_seq_len", "--kv_cache_free_gpu_memory_fraction", "--extra_llm_api_options", "--server_role",
               "--host"},
}
EMIT_TARGETS = ("vllm", "sglang", "trtllm", "k8s")

# Weight formats a server is told about; checkpoints that carry their quantization_config need no flag (the
# engines read it), so only a conversion the plan proposes is named.
_VLLM_QUANT = {"fp8": "fp8"}  # vLLM quantises a bf16 checkpoint to fp8 at load time (--quantization fp8)
_SGLANG_QUANT = {"fp8": "fp8"}
# server_args.py (0.5.14): kv_cache_dtype choices auto, fp8_e5m2, fp8_e4m3, bf16, bfloat16, fp4_e2m1. bf16 named, not
# auto, where auto takes a ModelOpt checkpoint's fp8 (model_runner.py configure_kv_cache_dtype) or DeepSeek-V3.2's fp8
# on Blackwell (_set_default_dsa_kv_cache_dtype); the TensorRT-LLM MLA backend takes bf16 (the thirty-third audit, L1)
_SGLANG_KV = {"fp8": "fp8_e4m3", "bf16": "bf16"}
# SGLang's max_prefill_tokens default (server_args.py of 0.5.14): a prefill batch stops taking requests past it
# (managers/schedule_policy.py PrefillAdder: rem_input_tokens), whatever --chunked-prefill-size says
SGLANG_MAX_PREFILL_TOKENS = 16384


# Families whose architectures TensorRT-LLM's PyTorch back end (the one trtllm-serve launches) has no model class for:
# none of them is in its supported-models table (nvidia.github.io/TensorRT-LLM/1.3.0rc20/models/supported-models.html,
# the bundled profiles' release), and its loader raises "Unknown architecture for AutoModelForCausalLM"
# (tensorrt_llm/_torch/models/modeling_auto.py). plan leaves TensorRT-LLM out for them (the ninth round, P9).
TRTLLM_UNSUPPORTED_FAMILIES = ("jamba", "falcon", "chatglm", "gemma2", "cohere")
# Families SGLang has no model class for (sglang 0.5.14's wheel, srt/models/: no JambaForCausalLM, FalconForCausalLM
# or RWForCausalLM): model_loader/utils.py then falls back to the Transformers implementation, which it refuses where
# the model does not declare attention-backend support ("has no SGlang implementation and the Transformers
# implementation is not compatible with SGLang"; neither transformers 5.25's Jamba nor Falcon declares it). The
# thirty-ninth audit, launch 2: plan had launched SGLang for both.
SGLANG_UNSUPPORTED_FAMILIES = ("jamba", "falcon")
# Families whose SGLang model cannot run pipeline stages: model_runner.py (0.5.14) asserts "Pipeline Parallel is not
# compatible with this model." where the entry class's forward takes no pp_proxy_tensors (Qwen3NextForCausalLM,
# Llama4ForConditionalGeneration in mllama4.py, Gemma2ForCausalLM, Gemma3's, CohereForCausalLM, ChatGLMModel, and
# GPT2LMHeadModel, the class of the gpt family's architecture; the llama, qwen2/3, qwen3_moe, mixtral, deepseek_v2, gpt_oss and nemotron_h classes take it). The
# thirty-ninth audit, launch 1: plan had chosen TP2 x PP2 under SGLang for Qwen3-Next and Llama 4 Scout.
SGLANG_NO_PP_FAMILIES = ("qwen3_next", "llama4", "gemma2", "gemma3", "cohere", "chatglm", "gpt")
# MoE families whose SGLang attention shards over the whole TP group, not the attention-TP group that
# --enable-dp-attention splits (get_parallel().attn_tp_size, as deepseek_v2.py, qwen2_moe.py, qwen3_moe.py,
# qwen3_next.py, llama4.py, gpt_oss.py and glm4_moe.py use it): mixtral.py, so data-parallel attention groups under
# --ep > --tp do not run (the thirty-ninth audit, launch 4; a family not read in SGLang's source is not refused)
SGLANG_NO_DP_ATTENTION_FAMILIES = ("mixtral",)


def engine_model_refusal(engine: str, spec) -> str | None:
    """Why `engine` cannot serve this model (an architecture its server has no class for), or None."""
    if engine == "trtllm" and spec.family in TRTLLM_UNSUPPORTED_FAMILIES:
        return (f"TensorRT-LLM's PyTorch back end has no model class for {spec.family} ({spec.name}): it is not in "
                "its supported-models table")
    if engine == "sglang" and spec.family in SGLANG_UNSUPPORTED_FAMILIES:
        return (f"SGLang has no model class for {spec.family} ({spec.name}), and refuses the Transformers fallback "
                "for it")
    return None


# A checkpoint that ships its own code (ModelSpec.trust_remote_code: config.json's auto_map; Kimi-K2's tokenizer,
# ChatGLM2's model and tokenizer) loads only with it: vLLM's get_tokenizer fails "If the tokenizer is a custom
# tokenizer ... using the `--trust-remote-code` flag"; SGLang's DeepSeek-V3 and Moonshot's Kimi-K2 guides pass it;
# TensorRT-LLM takes trust_remote_code in the LLM API's YAML (its Kimi-K2 deployment guide). The ninth round, P6.
REMOTE_CODE_FLAG = ["--trust-remote-code"]


def hf_repo_id(spec) -> str:
    """The model argument of a launch command: the Hugging Face repository a bundled spec cites for its config.json;
    the folder of a config.json read from disk, which the engines load as a local model (the twelfth audit, P9: its
    folder's name had been launched as a Hub id); else the spec's name (checkpoint_note says so)."""
    from pathlib import Path

    for source in spec.sources:
        m = re.search(r"huggingface\.co/([\w.-]+/[\w.-]+)", source)
        if m:
            return m.group(1)
    local = Path(spec.sources[0]) if spec.sources else None
    if local is not None and local.name.endswith(".json") and local.is_file():
        return str(local.resolve().parent)
    return spec.name


def checkpoint_note(spec) -> str:
    """A launch note where the model argument names no checkpoint (hf_repo_id fell back to the spec's name)."""
    if hf_repo_id(spec) != spec.name:
        return ""
    return (f"# model: {spec.name} cites no published checkpoint; replace it with the Hugging Face id or local path "
            "of your weights\n")


# vLLM's --speculative-config method for every family's multi-token-prediction head: "mtp". The family names
# (deepseek_mtp, glm4_moe_mtp, qwen3_next_mtp, mimo_mtp; MTPModelTypes in vllm/config/speculative.py) are deprecated
# aliases that SpeculativeConfig.__post_init__ rewrites, logging "method `deepseek_mtp` is deprecated and replaced
# with mtp." (in vLLM 0.19.0's and 0.24.0's logs; the twenty-first audit, L5)
VLLM_MTP_METHOD = "mtp"
TRTLLM_MTP_FAMILIES = ("deepseek_v3", "deepseek_v32")  # its LLM API's MTP decoding: DeepSeek's (its DeepSeek-R1 guide)


def mtp_launch_refusal(engine: str, spec) -> str | None:
    """Why `engine` cannot launch this model's MTP head, or None."""
    if engine == "trtllm" and spec.family not in TRTLLM_MTP_FAMILIES:
        return (f"TensorRT-LLM's MTP decoding runs DeepSeek-V3's layers; {spec.name}'s ({spec.family}) is not among "
                "them")
    return None


def _half_dtype(c: dict, hw=None) -> list[str]:
    """["--dtype", "half"] on a GPU without bf16 (Turing and older: vLLM refuses a bf16 checkpoint there, "Bfloat16 is
    only supported on GPUs with compute capability of at least 8.0"; the thirteenth audit, P3), else []. hw: the spec
    planned on (a file's, which its name does not find again: the thirty-fourth audit, specs 3), else c's GPU."""
    from kvcalc.specs.catalog import load_gpu

    if hw is None and c.get("gpu") is None:
        return []
    return [] if "bf16" in (hw or load_gpu(c["gpu"])).peak_tflops.available() else ["--dtype", "half"]


def _declares_kv_format(spec) -> bool:
    """Whether the checkpoint's quantisation config can declare a KV format the engines' auto takes (ModelOpt's
    kv_cache_quant_algo or kv_cache_scheme: specs/hf._checkpoint_kv_format), so a bf16 cache must be named."""
    q = spec.quantization
    return q is not None and "(modelopt)" in q.source


def vllm_command(spec, c: dict, max_model_len: int, hw=None) -> list[str]:
    """`vllm serve` for a planned configuration (c: plan's point_dict)."""
    cmd = ["vllm", "serve", hf_repo_id(spec)] + REMOTE_CODE_FLAG * spec.trust_remote_code
    if c["expert_parallel"] > 1:  # attention data-parallel over ep / tp groups, experts over all ep GPUs
        cmd += ["--tensor-parallel-size", str(c["tensor_parallel"]),
                "--data-parallel-size", str(c["expert_parallel"] // c["tensor_parallel"]), "--enable-expert-parallel"]
    else:
        cmd += ["--tensor-parallel-size", str(c["tensor_parallel"])]
        if c["pipeline_parallel"] > 1:
            cmd += ["--pipeline-parallel-size", str(c["pipeline_parallel"])]
    cmd += ["--max-num-seqs", str(_per_group(c)), "--max-num-batched-tokens", str(_tokens_per_group(c)),
            "--gpu-memory-utilization", f"{c['gpu_memory_utilization']:g}", "--max-model-len", str(max_model_len)]
    if c["kv_dtype"] == "fp8":
        cmd += ["--kv-cache-dtype", "fp8"]
    elif c["kv_dtype"] == "bf16" and _declares_kv_format(spec):  # named, not left at auto, which takes a ModelOpt
        # checkpoint's declared fp8 cache (vllm/utils/torch_utils.py resolve_kv_cache_dtype_string; the thirty-third
        # audit, launch L1: a pool sized in bf16 had launched in fp8, twice the tokens); elsewhere auto is the model's
        # own 16-bit dtype, which a float16 checkpoint needs (its review, 1: bfloat16 named for chatglm2-6b)
        cmd += ["--kv-cache-dtype", "float16" if _half_dtype(c, hw) else "bfloat16"]
    cmd += _half_dtype(c, hw)
    if c["converted_weights"] and c["weight_dtype"] in _VLLM_QUANT:
        cmd += ["--quantization", _VLLM_QUANT[c["weight_dtype"]]]
    if c.get("speculate"):  # the checkpoint's own MTP head
        cmd += ["--speculative-config", json.dumps({"method": VLLM_MTP_METHOD,
                                                    "num_speculative_tokens": _draft_tokens(c["speculate"])})]
    if c["disaggregate"]:  # vLLM's disaggregated prefill: both pools load a KV connector (NIXL moves the blocks)
        cmd += ["--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}']
    return cmd


def sglang_command(spec, c: dict, max_model_len: int, hw=None) -> list[str]:
    """`python -m sglang.launch_server` for a planned configuration."""
    cmd = ["python", "-m", "sglang.launch_server", "--model-path", hf_repo_id(spec), "--host", "0.0.0.0",
           *REMOTE_CODE_FLAG * spec.trust_remote_code]
    if c["expert_parallel"] > 1:
        cmd += ["--tp-size", str(c["expert_parallel"]), "--ep-size", str(c["expert_parallel"])]
        if c["expert_parallel"] > c["tensor_parallel"]:  # SGLang's --tp-size spans the group; DP attention splits it
            cmd += ["--enable-dp-attention", "--dp-size", str(c["expert_parallel"] // c["tensor_parallel"])]
    else:
        cmd += ["--tp-size", str(c["tensor_parallel"])]
        if c["pipeline_parallel"] > 1:
            cmd += ["--pp-size", str(c["pipeline_parallel"])]
    cmd += ["--max-running-requests", str(_sglang_max_running_requests(c)),
            "--chunked-prefill-size", str(_sglang_chunked_prefill(c)),
            # a rank's step past SGLang's default prefill batch is asked for too, else it stops near 16,384 tokens
            # (the thirty-sixth audit, launch 3: --step-tokens 32768 had been timed and launched as 24K steps)
            *(["--max-prefill-tokens", str(_tokens_per_group(c))]
              if _tokens_per_group(c) > SGLANG_MAX_PREFILL_TOKENS else []),
            "--mem-fraction-static", f"{c['gpu_memory_utilization']:g}", "--context-length", str(max_model_len),
            "--kv-cache-dtype", _SGLANG_KV[c["kv_dtype"]] if c["kv_dtype"] == "fp8" or (
                c["kv_dtype"] == "bf16" and not _half_dtype(c, hw) and (_declares_kv_format(spec)
                                                                  or getattr(spec.attention, "sparse_top_k", None)))
            else "auto", *_half_dtype(c, hw)]
    if c["converted_weights"] and c["weight_dtype"] in _SGLANG_QUANT:
        cmd += ["--quantization", _SGLANG_QUANT[c["weight_dtype"]]]
    if c.get("speculate"):  # SGLang runs DeepSeek's MTP head as its EAGLE algorithm (NextN), a chain of k drafts
        k = _draft_tokens(c["speculate"])
        cmd += ["--speculative-algorithm", "EAGLE", "--speculative-num-steps", str(k), "--speculative-eagle-topk", "1",
                "--speculative-num-draft-tokens", str(k + 1)]
    if c["disaggregate"]:
        cmd += ["--disaggregation-mode", "{role}"]  # prefill or decode, filled in per pool by emit()
    return cmd


TRTLLM_OPTIONS = "extra-llm-api-config.yml"  # the YAML a command's --extra_llm_api_options names
TRTLLM_ROLE_OPTIONS = "extra-llm-api-config-{file_role}.yml"  # one a pool when disaggregated (emit fills the role)


def trtllm_command(spec, c: dict, max_model_len: int) -> tuple[list[str], dict[str, str]]:
    """`trtllm-serve serve` and the YAML files its --extra_llm_api_options names (name -> text): one, or when
    disaggregated one for the context servers and one for the generation servers (the twenty-first audit, L1)."""
    ep = c["expert_parallel"]
    tp = ep if ep > 1 else c["tensor_parallel"]  # TensorRT-LLM's attention DP runs inside a tp_size group
    cmd = ["trtllm-serve", "serve", hf_repo_id(spec), "--host", "0.0.0.0", "--backend", "pytorch", "--tp_size", str(tp)]
    if c["pipeline_parallel"] > 1:
        cmd += ["--pp_size", str(c["pipeline_parallel"])]
    if ep > 1:
        cmd += ["--ep_size", str(ep)]
    # --max_batch_size bounds one micro-batch: TensorRT-LLM's capacity scheduler holds max_batch_size x pp_size
    # requests (tensorrt_llm/_torch/pyexecutor/_util.py create_py_executor_instance; formulas/engine_memory.py
    # trtllm_bench_settings), so a pipeline's budget is split over its stages (the thirty-third audit, launch L2: TP 8 x
    # PP 2 sized for 32 had launched admitting 64)
    batch = -(-_per_group(c) // c["pipeline_parallel"])
    cmd += ["--max_batch_size", str(batch), "--max_num_tokens", str(_tokens_per_group(c)),
            "--max_seq_len", str(max_model_len),
            "--kv_cache_free_gpu_memory_fraction", f"{c['gpu_memory_utilization']:g}",
            "--extra_llm_api_options", TRTLLM_ROLE_OPTIONS if c["disaggregate"] else TRTLLM_OPTIONS]
    if c["disaggregate"]:  # a context (prefill) server and a generation (decode) server
        cmd += ["--server_role", "{role}"]
    # chunked context on: plan times prompts longer than max_num_tokens in chunks of it, which the LLM API refuses
    # with enable_chunked_prefill at its default, false (tensorrt_llm/llmapi/llm_args.py; tests/unittest/llmapi/
    # test_llm.py test_max_num_token_check; the sixth audit)
    # the memory fraction inside kv_cache_config too: trtllm-serve builds KvCacheConfig from its flag, then the YAML's
    # kv_cache_config replaces that object whole (update_llm_args_with_extra_dict), and a block without the fraction
    # took KvCacheConfig's default 0.9 (the twenty-first audit, L2: a plan sized at 0.6 had launched at 0.9)
    yaml = [f"kv_cache_config:\n  dtype: {'fp8' if c['kv_dtype'] == 'fp8' else 'auto'}\n"
            f"  free_gpu_memory_fraction: {c['gpu_memory_utilization']:g}",
            *(["trust_remote_code: true"] if spec.trust_remote_code else []),
            f"enable_attention_dp: {'true' if ep > c['tensor_parallel'] else 'false'}",
            "enable_chunked_prefill: true"]
    if c.get("speculate"):  # the LLM API's MTP decoding config (TensorRT-LLM's DeepSeek-R1 guide)
        yaml.append(f"speculative_config:\n  decoding_type: MTP\n  num_nextn_predict_layers: {_draft_tokens(c['speculate'])}")
    if not c["disaggregate"]:
        return cmd, {TRTLLM_OPTIONS: "\n".join(yaml) + "\n"}
    # TensorRT-LLM's disaggregated-serving docs (examples/disaggregated/README.md): the KV cache transceiver on both
    # roles, a buffer of the longest prompt, and the overlap scheduler off on the context servers alone, which do not
    # support it yet; the generation servers keep it, as plan's decode times assume (the twenty-first audit, L1: one
    # file had turned it off on both)
    yaml.append(f"cache_transceiver_config:\n  backend: DEFAULT\n  max_tokens_in_buffer: {max_model_len}")
    name = TRTLLM_ROLE_OPTIONS.format
    return cmd, {name(file_role="context"): "\n".join([*yaml, "disable_overlap_scheduler: true"]) + "\n",
                 name(file_role="generation"): "\n".join(yaml) + "\n"}


def layout_refusal(engine: str, tp: int, ep: int, spec=None, pp: int = 1) -> str | None:
    """Why `engine` does not run this layout (launches_layout), in words for a command's warnings, or None: serve,
    estimate, capacity, compare and sweep time it, saying so (the seventh audit, V6: they had answered in silence
    for the layout plan leaves out)."""
    if launches_layout(engine, {"tp": tp, "ep": ep, "pp": pp}, spec):
        return None
    if engine == "trtllm":
        return (f"--ep {ep} with --tp {tp} under {engine}: TensorRT-LLM runs attention as TP over all its ranks or as "
                f"DP (TP 1), not data-parallel groups of TP {tp}; these times are for a layout it does not run")
    if pp > 1 and spec.family in SGLANG_NO_PP_FAMILIES:
        return (f"--pp {pp} under sglang: SGLang's {spec.family} model takes no pipeline stages (\"Pipeline Parallel "
                "is not compatible with this model\"); these times are for a layout it does not run")
    return (f"--ep {ep} with --tp {tp} under sglang: SGLang's {spec.family} model has no data-parallel attention "
            "(its attention shards over the whole TP group); these times are for a layout it does not run")


def launches_layout(engine: str, layout: dict, spec=None) -> bool:
    """Whether the engine can be launched in this layout. TensorRT-LLM's attention runs over all tp_size ranks as
    TP (enable_attention_dp false) or as DP (true: every rank its own batch and the whole attention weights), never
    DP groups of TP > 1 (NVIDIA/TensorRT-LLM docs, "Parallelism in TensorRT-LLM", Attention Module): expert-parallel
    layouts over attention groups of 2 or more GPUs are left out for it (the sixth audit: plan ranked EP8/TP2 and
    --emit launched it as EP8/TP1). SGLang runs pipeline stages only for the models whose class takes them
    (SGLANG_NO_PP_FAMILIES) and data-parallel attention (--ep > --tp) not for those whose attention shards over the
    whole TP group (SGLANG_NO_DP_ATTENTION_FAMILIES). layout: plan's layouts() dict (tp, ep, pp); spec: the model (None: any)."""
    ep, tp, pp = layout.get("ep", 1), layout.get("tp", 1), layout.get("pp", 1)
    if engine == "trtllm":
        return not ep > tp > 1
    if engine == "sglang" and spec is not None:
        return not ((pp > 1 and spec.family in SGLANG_NO_PP_FAMILIES)
                    or (ep > tp and spec.family in SGLANG_NO_DP_ATTENTION_FAMILIES))
    return True


def _draft_tokens(speculate: str) -> int:
    """k of a plan's --speculate setting ('mtp=1', 'mtp,k=2'): the tokens drafted a step."""
    from kvcalc.speculation import parse

    return parse(speculate).k


def _groups(c: dict) -> int:
    """The replica's data-parallel attention groups: ep / tp under expert parallelism, else 1."""
    from kvcalc.formulas.parallel import attention_groups

    return attention_groups(c["expert_parallel"], c["tensor_parallel"])


def _instances(c: dict) -> int:
    """The servers a replica's batch budget is spread over: its decode pool's instances when disaggregated (plan
    times each at budget / instances: serving/replica.py disaggregated_many), else 1."""
    if not c["disaggregate"]:
        return 1
    return max(1, int(c["disaggregate"].split(":")[1]) // c["tensor_parallel"])


def _per_group(c: dict) -> int:
    """Requests one scheduler holds: the replica's batch budget over its servers and their data-parallel attention
    groups (the sixth audit: each of a disaggregated replica's decode servers had been given the whole budget)."""
    return max(1, -(-c["max_num_seqs"] // (_groups(c) * _instances(c))))


def _tokens_per_group(c: dict) -> int:
    """Tokens one scheduler's step takes: plan's step budget (its max_num_batched_tokens, --step-tokens) is each
    data-parallel attention group's own, as plan, serve and the simulator time it (serving/replica.py and
    closed_form.py run a replica at budget x (ep / tp), pooled; serving/simulate.py multiplies the budget by the
    groups), and vLLM runs each DP rank as its own engine core with its own max_num_batched_tokens (docs.vllm.ai, data
    parallel deployment: "each DP rank is deployed as a separate 'core engine' process"); TensorRT-LLM's attention-DP
    ranks schedule their own batches likewise. So each rank gets the whole of it (the nineteenth audit, P1: it had
    been divided by the groups again, a DeepSeek-V3 EP8 rank launched with 1,024 tokens a step where plan timed
    8,192). SGLang's --chunked-prefill-size is the server's, which it divides by dp_size (_sglang_chunked_prefill)."""
    return max(1, int(c["max_num_batched_tokens"]))


def _sglang_chunked_prefill(c: dict) -> int:
    """SGLang's --chunked-prefill-size for each DP attention rank to take plan's step budget: the server's value is
    divided by dp_size under --enable-dp-attention (sgl-project/sglang python/sglang/srt/server_args.py,
    _handle_data_parallelism: `self.chunked_prefill_size = self.chunked_prefill_size // self.dp_size`), so the flag
    carries the budget times the groups."""
    return _tokens_per_group(c) * _groups(c)


def _sglang_max_running_requests(c: dict) -> int:
    """SGLang's --max-running-requests is the whole server's: with DP attention each of the dp_size schedulers
    takes max_running_requests // dp_size (sgl-project/sglang python/sglang/srt/managers/tp_worker.py at 4f34e24a,
    TpModelWorker.__init__: `server_args.max_running_requests // (server_args.dp_size if
    server_args.enable_dp_attention else 1)`; the same line moved to model_runner.py's "Init max running requests" in
    the v0.5 releases). So the flag carries the replica's budget, rounded up to whole groups so that each group's
    share is _per_group's ceil(budget / groups), not that share again divided by dp_size."""
    return _per_group(c) * _groups(c)


IMAGES = {  # each engine's published server image for NVIDIA GPUs, at the release whose flags are emitted
    # (a `latest` tag moves to releases whose flags and defaults were not checked): Docker Hub tags v0.30.0, the
    # release whose memory rule and overheads plan sizes vLLM with (formulas/engine_memory.py VLLM_LATEST; the
    # thirty-sixth audit, launch 1: v0.24.0's pool had held 104 requests where plan launched 108; its flags are
    # 0.30.0's parser's), v0.5.14 (`docker pull lmsysorg/sglang:v0.5.14` in public scripts); NGC release 1.3.0rc20,
    # the release of the bundled TensorRT-LLM tables (its tag in NVIDIA's MLPerf submitters' build notes)
    "vllm": "vllm/vllm-openai:v0.30.0",  # docs.vllm.ai, "Using Docker"
    "sglang": "lmsysorg/sglang:v0.5.14",  # docs.sglang.ai, "Install SGLang: Method 3, using docker"
    "trtllm": "nvcr.io/nvidia/tensorrt-llm/release:1.3.0rc20",  # NGC, TensorRT-LLM release container
}
# ... and for AMD Instinct GPUs, whose ROCm builds are separate images:
# vLLM: vllm/vllm-openai-rocm, official from 2026-01-20 (vLLM docs, getting_started/installation/gpu.rocm.inc.md,
#   "pre-built-images": `vllm/vllm-openai-rocm:latest`; built for the MI200 and MI300 series and later; release tags
#   as v0.30.0, pinned by digest in public deployment notes);
# SGLang: lmsysorg/sglang under release tags suffixed by the ROCm build and GPU family, with no `latest` for ROCm:
#   -mi30x for gfx942 (MI300X, MI325X), -mi35x for gfx950 (MI350X, MI355X) (the pattern of SGLang's
#   docs/basic_usage/deepseek_v32.md, `lmsysorg/sglang:v0.5.8-rocm700-mi30x` / `-mi35x`; v0.5.11 is the newest
#   such tag found, Docker Hub 2026-05-05). SGLang builds for no other AMD part (hardware_specs/mi210.toml).
ROCM_IMAGES = {
    "vllm": {"": "vllm/vllm-openai-rocm:v0.30.0"},
    "sglang": {"mi300x": "lmsysorg/sglang:v0.5.11-rocm700-mi30x", "mi325x": "lmsysorg/sglang:v0.5.11-rocm700-mi30x",
               "mi355x": "lmsysorg/sglang:v0.5.11-rocm700-mi35x"},
}


def image(engine: str, gpu: str, amd: bool) -> str:
    """The engine's published server image for the GPU: the ROCm build on an AMD part (ROCM_IMAGES), else the
    CUDA one (IMAGES). An AMD part the engine publishes no image for is an error."""
    if not amd:
        return IMAGES[engine]
    images = ROCM_IMAGES.get(engine, {})
    found = images.get("") or images.get(gpu)
    if found is None:
        from kvcalc.errors import KvcalcError

        raise KvcalcError(f"--emit k8s: {engine} publishes ROCm images for {', '.join(images) or 'no AMD part'}, "
                          f"not for {gpu}")
    return found


NODE_GPUS = 8  # GPUs a pod (one node) of a manifest holds, unless the GPU's spec says otherwise (node_gpus)
# LeaderWorkerSet sets these in every pod of a group (the LWS docs; vLLM's and SGLang's LWS examples use them), and
# Kubernetes expands $(NAME) in a container's command from its environment
LWS_LEADER, LWS_SIZE, LWS_INDEX = "$(LWS_LEADER_ADDRESS)", "$(LWS_GROUP_SIZE)", "$(LWS_WORKER_INDEX)"
DP_RPC_PORT = "13345"  # the port vLLM's data-parallel deployment docs use in their multi-node example


def multinode_args(engine: str, c: dict, pods: int, leader: bool, node_gpus: int = NODE_GPUS) -> list[str]:
    """What an instance spread over `pods` nodes adds to each node's command, as each engine's multi-node docs run it:
    vLLM  tensor / pipeline parallel: --nnodes, --node-rank, --master-addr, and --headless on the other nodes (the
          multiprocessing executor; docs.vllm.ai deployment/frameworks/lws); data parallel (expert parallelism with
          attention DP): --data-parallel-size-local, --data-parallel-address, --data-parallel-rpc-port and, on the
          other nodes, --data-parallel-start-rank and --headless (docs.vllm.ai serving/data_parallel_deployment);
    SGLang --nnodes, --node-rank, --dist-init-addr (docs.sglang.io references/multi_node_deployment)."""
    if engine == "vllm":
        if c["expert_parallel"] > 1 and c["expert_parallel"] > c["tensor_parallel"]:
            if c["tensor_parallel"] > node_gpus:  # a rank over several nodes: vLLM infers it from --nnodes and
                # --node-rank (arg_utils.py, 0.30: data_parallel_size_local from the world size a node holds), a form
                # its data-parallel deployment docs do not show; not written (the thirty-ninth audit, launch 3: each
                # 4-GPU pod had been given a whole TP-8 rank, the workers ranks past the deployment's)
                from kvcalc.errors import KvcalcError

                raise KvcalcError(f"--emit k8s: vLLM's data-parallel ranks of TP {c['tensor_parallel']} span "
                                  f"{-(-c['tensor_parallel'] // node_gpus)} nodes of {node_gpus} GPUs, which this "
                                  "manifest does not write; launch it by vLLM's multi-node docs (--nnodes, "
                                  f"--node-rank), or take a layout of TP {node_gpus} or less")
            local = node_gpus // c["tensor_parallel"]  # data-parallel ranks a node holds
            args = ["--data-parallel-size-local", str(local), "--data-parallel-address", LWS_LEADER,
                    "--data-parallel-rpc-port", DP_RPC_PORT]
            # the node's first rank, by the shell's arithmetic on the pod index (Kubernetes leaves $((...)) alone)
            return args if leader else args + ["--data-parallel-start-rank", f"$((LWS_WORKER_INDEX * {local}))",
                                               "--headless"]
        args = ["--nnodes", LWS_SIZE, "--node-rank", "0" if leader else LWS_INDEX, "--master-addr", LWS_LEADER]
        return args if leader else args + ["--headless"]
    if engine == "sglang":
        return ["--nnodes", LWS_SIZE, "--node-rank", "0" if leader else LWS_INDEX,
                "--dist-init-addr", f"{LWS_LEADER}:20000"]
    raise ValueError(engine)


CONFIG_DIR = "/etc/kvcalc"  # where a manifest mounts the files a command reads (TensorRT-LLM's LLM API options)


def k8s_manifest(engine: str, gpu: str, commands: list[tuple[str, list[str], int, int]],
                 name: str = "kvcalc-plan", config: dict | None = None, files: dict[str, str] | None = None,
                 amd: bool = False, node_gpus: int = NODE_GPUS) -> str:
    """Kubernetes manifests for (role, command, GPUs per instance, instances) (one per pool when disaggregated):
    a Deployment where a command's GPUs fit one node of node_gpus (the GPU spec's: 4 on a GB200 NVL72 compute tray,
    where 8-GPU pods could never be scheduled; the nineteenth audit, P4), a LeaderWorkerSet
    (leaderworkerset.x-k8s.io/v1) of such pods where they do not: a leader template (node rank 0, the API server) and a worker template (the other
    nodes, headless), each with the engine's multi-node flags (multinode_args; config: plan's point_dict). GPUs are
    requested as nvidia.com/gpu, or amd.com/gpu on AMD parts (amd: the GPU spec's vendor), in the engine's image for
    the part (image). TensorRT-LLM across nodes runs under an MPI launcher
    (trtllm-llmapi-launch with Slurm or mpirun), which is not written here: a comment says so instead. files: name ->
    text of the files the command reads by name, put in a ConfigMap mounted at CONFIG_DIR and named there by path."""
    resource = "amd.com/gpu" if amd else "nvidia.com/gpu"
    server_image = image(engine, gpu, amd)
    docs = []
    files = files or {}
    if files:
        data = "".join(f"  {f}: |\n" + "".join(f"    {line}\n" for line in text.splitlines()) for f, text in files.items())
        docs.append(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-config\ndata:\n" + data)

    def container(cmd: list[str], per_pod: int, indent: int, shell: bool = False) -> str:
        pad = " " * indent
        cmd = [f"{CONFIG_DIR}/{a}" if a in files else a for a in cmd]
        if shell:  # one shell line, so the LWS variables expand and $((...)) evaluates
            cmd = ["sh", "-c", " ".join(shlex.quote(a) if "$(" not in a else a for a in cmd)]
        args = "".join(f"\n{pad}    - {json.dumps(a)}" for a in cmd)
        # /dev/shm as a memory-backed volume: a container's default 64 MiB is too small for the NCCL and
        # multiprocessing buffers of a tensor-parallel server (vLLM's Kubernetes docs mount an emptyDir of medium
        # Memory there; vllm-project/production-stack PR #994: "too small for TP and leads to crashes / Bus error";
        # the nineteenth audit, P5)
        mounts = (f"{pad}  volumeMounts:\n{pad}  - name: shm\n{pad}    mountPath: /dev/shm\n"
                  + (f"{pad}  - name: config\n{pad}    mountPath: {CONFIG_DIR}\n" if files else "")
                  + f"{pad}volumes:\n{pad}- name: shm\n{pad}  emptyDir:\n{pad}    medium: Memory\n"
                  + (f"{pad}- name: config\n{pad}  configMap:\n{pad}    name: {name}-config\n" if files else ""))
        return (f"{pad}containers:\n{pad}- name: server\n{pad}  image: {server_image}\n"
                f"{pad}  command:{args}\n{pad}  resources:\n{pad}    limits:\n{pad}      {resource}: {per_pod}\n"
                + mounts)

    for role, cmd, gpus, replicas in commands:
        app_name = f"{name}-{role}" if role else name
        per_pod, pods = min(gpus, node_gpus), -(-gpus // node_gpus)
        if pods == 1:
            docs.append(f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app_name}\nspec:\n"
                        f"  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {app_name}\n"
                        f"  template:\n    metadata:\n      labels:\n        app: {app_name}\n    spec:\n"
                        + container(cmd, per_pod, 6))
        elif engine == "trtllm":
            docs.append(f"# {app_name}: TensorRT-LLM across {pods} nodes runs under an MPI launcher "
                        "(trtllm-llmapi-launch with Slurm, or mpirun), which this manifest does not set up; "
                        "--emit trtllm prints the serve command each rank runs\n")
        else:
            c = config or {}
            leader = container(cmd + multinode_args(engine, c, pods, True, node_gpus), per_pod, 8, shell=True)
            worker = container(cmd + multinode_args(engine, c, pods, False, node_gpus), per_pod, 8, shell=True)
            docs.append(f"apiVersion: leaderworkerset.x-k8s.io/v1\nkind: LeaderWorkerSet\nmetadata:\n"
                        f"  name: {app_name}\nspec:\n  replicas: {replicas}\n  leaderWorkerTemplate:\n"
                        f"    size: {pods}\n    restartPolicy: RecreateGroupOnPodRestart\n"
                        f"    leaderTemplate:\n      spec:\n" + leader
                        + "    workerTemplate:\n      spec:\n" + worker)
    return "---\n".join(docs)


# the engines kvcalc writes launch commands for
LAUNCHED = ("vllm", "sglang", "trtllm")
# packages whose driver shows each die as a GPU of its own, and that GPU's spec: ROCm shows an MI250X as two GCDs
# (hardware_specs/mi250x.toml, mi250x-gcd.toml), and --tensor-parallel-size and amd.com/gpu count GCDs
PACKAGES = {"mi250x": ("mi250x-gcd", 2)}


def package_warning(hw, engine: str | None) -> str | None:
    """Why an engine's times on a package of several devices (PACKAGES) are of a deployment no engine launches, or
    None: an engine runs the package's dies as GPUs of their own (the twenty-fifth audit, G3: plan had chosen vLLM at
    TP 1 on a whole MI250X, one 128 GB device, and timed it without the all-reduces between its two dies)."""
    if engine is None or hw.name not in PACKAGES:
        return None
    device, n = PACKAGES[hw.name]
    return (f"--gpu: {hw.name} is a package its driver shows as {n} GPUs ({device} each), which an engine runs as "
            f"GPUs of their own (use -g {device}, with --tp {n} for the whole package): these times are of one device "
            "no engine launches")


def format_warnings(hw, weight_dtype: str, engine: str | None, kv_dtype: str | None = None,
                    spec=None) -> list[str]:
    """What estimate, compare, capacity, serve, sweep and the simulator say of a deployment that does not start as
    asked (engines/formats.py's checks and this module's): a weight format its vendor does not run (foreign_format),
    one the engine does not load there (engine_format_refusal), int8 weights on a spec with no int8 peak
    (unset_int8_peak), a KV format
    the engine does not keep there (kv_format_refusal, and the engine's own ENGINE_KV_REFUSED where the profile was
    reached through --engine auto), a package timed as one device (package_warning), and with spec a model the
    engine's server has no class for (engine_model_refusal); engine None: the roofline."""
    kv = (kv_format_refusal(engine, hw, kv_dtype), engine_kv_refusal(engine, kv_dtype)) if kv_dtype else ()
    model = None
    if spec is not None and engine is not None:  # an architecture the engine's server has no class for, as plan
        # refuses it (the twenty-sixth audit, R4: sweep and estimate had timed Jamba under TensorRT-LLM in silence)
        if why := engine_model_refusal(engine, spec):
            model = f"--engine {engine}: {why}: these times are of a deployment that does not start"
    return [why for why in (package_warning(hw, engine), model, foreign_format(hw, weight_dtype),
                            engine_format_refusal(engine, hw, weight_dtype), unset_int8_peak(hw, weight_dtype), *kv)
            if why]


def package_refusal(gpu: str) -> str | None:
    """Why --emit has no launch command for a GPU that is a package of several devices (PACKAGES), or None: an
    engine's flags count the devices the driver shows (the fourteenth audit, P1: TP 1 on one 64 GB GCD for a replica
    sized on 128 GB)."""
    if gpu not in PACKAGES:
        return None
    device, n = PACKAGES[gpu]
    return (f"--emit: {gpu} is a package its driver shows as {n} GPUs ({device} each), and an engine's flags count "
            f"those: plan with -g {device} for a launch command")


def emit(target: str, spec, c: dict, max_model_len: int, amd: bool = False, hw=None) -> str:
    """The launch text for `target` (vllm, sglang, trtllm or k8s: the configuration's own engine in a manifest;
    amd: the configuration's GPU is an AMD part, whose manifest takes the ROCm image and amd.com/gpu). hw: the GPU spec
    planned on, else the bundled one c names (a spec file's own name finds no file again, and its node_gpus and
    engines are its own: the thirty-fourth audit, specs 3)."""
    from kvcalc.errors import KvcalcError
    from kvcalc.specs.catalog import load_gpu

    hw = hw or load_gpu(c["gpu"])

    if target not in EMIT_TARGETS:
        raise KvcalcError(f"--emit: expected one of {', '.join(EMIT_TARGETS)}, got {shown_value(target)}")
    engine = c["engine"] if target == "k8s" else target
    if engine == "vllm":
        cmd, extra = vllm_command(spec, c, max_model_len, hw), ""
    elif engine == "sglang":
        cmd, extra = sglang_command(spec, c, max_model_len, hw), ""
    elif engine == "trtllm":
        cmd, options = trtllm_command(spec, c, max_model_len)
        extra = "".join(f"\n# {name}\n{text}" for name, text in options.items())
    else:
        runs = [e for e in LAUNCHED if e not in hw.unsupported_engines]
        if not runs:  # the fourteenth audit, P4: the advice had led to three refusals
            raise KvcalcError(f"--emit: the plan runs on {engine!r}, and no engine kvcalc launches (vllm, sglang, "
                              f"trtllm) runs on {c['gpu']}: the plan is a datasheet-roofline bound, with no launch "
                              "command")
        choices = ", ".join(runs[:-1]) + " or " * (len(runs) > 1) + runs[-1]
        raise KvcalcError(f"--emit: the plan runs on {engine!r}, which has no launch command; choose {choices}")
    if why := package_refusal(c["gpu"]):
        raise KvcalcError(why)
    extra = checkpoint_note(spec) + extra
    if c["converted_weights"] and c["weight_dtype"] not in {"vllm": _VLLM_QUANT, "sglang": _SGLANG_QUANT}.get(engine, {}):
        extra = (f"# weights: {c['weight_dtype']} is a format {hf_repo_id(spec)} does not ship and {engine} does not "
                 "convert at load time: quantise the checkpoint first (NVIDIA ModelOpt, llm-compressor) and serve "
                 "that one\n" + extra)
    roles = {"vllm": ("prefill", "decode"), "sglang": ("prefill", "decode"), "trtllm": ("CONTEXT", "GENERATION")}
    if c["disaggregate"]:
        prefill_gpus, decode_gpus = (int(x) for x in c["disaggregate"].split(":"))
        pools = [(role, [a.replace("{role}", role.lower() if engine == "sglang" else role)
                         .replace("{file_role}", role.lower()) for a in cmd], gpus)
                 for role, gpus in zip(roles[engine], (prefill_gpus, decode_gpus))]
    else:
        pools = [("", cmd, c["gpus_per_replica"])]
    if target == "k8s":
        tp = c["tensor_parallel"]
        instances = [(role.lower(), command, tp, c["replicas"] * gpus // tp) if c["disaggregate"] else
                     (role, command, gpus, c["replicas"]) for role, command, gpus in pools]
        files = options if engine == "trtllm" else {}  # mounted from a ConfigMap
        notes = extra.split(f"\n# {next(iter(options))}\n")[0] if engine == "trtllm" else extra
        if c["disaggregate"]:  # the router is not in the manifest: say what to run in front of the two pools
            notes = ROUTERS[engine] + notes
        config = "".join(f"{line}\n" if line.startswith("#") else f"# {line}\n" for line in notes.strip().splitlines())
        return config + k8s_manifest(engine, c["gpu"], instances, config=c, files=files, amd=amd,
                                     node_gpus=hw.node_gpus)
    many = (f"# {c['replicas']} replicas of this deployment (each on its own {c['gpus_per_replica']} GPUs), behind a "
            "load balancer\n" if c.get("replicas", 1) > 1 else "")  # the fourteenth audit, P6: said only in the manifest
    if not c["disaggregate"]:
        return many + " ".join(shlex.quote(a) for a in cmd) + "\n" + extra
    out = [f"# {role} pool: {gpus // c['tensor_parallel']} instance(s) of {c['tensor_parallel']} GPUs per replica\n"
           + " ".join(shlex.quote(a) for a in command) for role, command, gpus in pools]
    return many + "\n".join(out) + "\n" + ROUTERS[engine] + extra


# Disaggregated serving needs a front door that sends each request to a prefill instance and then a decode one; each
# engine documents its own (the fresh audit: the emitted pools had none). vLLM: docs/features/nixl_connector_usage.md,
# "Proxy Server"; SGLang: its PD disaggregation docs, sglang_router.launch_router --pd-disaggregation (the prefill URL
# followed by its bootstrap port, 8998 by default); TensorRT-LLM: docs "Disaggregated serving", trtllm-serve
# disaggregated with a YAML of context_servers and generation_servers URLs.
ROUTERS = {
    "vllm": "# route requests (each to a prefill instance, then a decode one): vLLM's proxy from its repository\n"
            "# (PREFILL_PORT, DECODE_PORT: each vllm serve's --port, 8000 by default)\n"
            "python tests/v1/kv_connector/nixl_integration/toy_proxy_server.py --port 9000 --prefiller-hosts "
            "PREFILL_HOST --prefiller-ports PREFILL_PORT --decoder-hosts DECODE_HOST --decoder-ports DECODE_PORT\n",
    "sglang": "# route requests (each to a prefill instance, then a decode one):\n"
              "python -m sglang_router.launch_router --pd-disaggregation --prefill http://PREFILL_HOST:30000 8998 "
              "--decode http://DECODE_HOST:30000 --host 0.0.0.0 --port 8000\n",
    "trtllm": "# route requests (each to a context server, then a generation one), disagg_config.yaml listing their\n"
              "# URLs under context_servers and generation_servers:\ntrtllm-serve disaggregated -c disagg_config.yaml\n",
}
