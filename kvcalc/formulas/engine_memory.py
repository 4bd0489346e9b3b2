"""The KV cache vLLM sizes at start-up: its budget per GPU, the tokens it holds and the concurrency it prints.

vLLM profiles one dummy step and gives the KV cache what is left (vllm/v1/worker/gpu_worker.py,
determine_available_memory; the V0 worker did the same):

    available = visible x gpu_memory_utilization - weights as loaded / tp - profiling peak - non-torch memory
                - CUDA-graph estimate (from 0.21)

weights      the checkpoint's tensors / tp, with what tensor parallelism keeps whole on every GPU
             (params.tp_whole_bytes), and the RoPE cos/sin table every GPU builds (vllm_rope_cache_bytes).
visible      torch.cuda.mem_get_info()'s total, not the datasheet figure: 79.22 GiB on an "80 GB" H100
             (vLLM PRs #10511 and #12126 log it), 23.58 GiB on a 24 GB RTX 3090 (issue #10517).
profiling    max(forward, sampler), what torch allocates beyond the weights in the dummy step:
  forward    T x (3 d + 3 I / tp) x b_a for a dense layer: the residual, the normed input and the MLP output (d
             each) beside the gate/up output (2 I) and its SiLU product (I). A fused-MoE layer holds its three
             intermediate caches instead: T x (3 d + k (3 I_e / tp + d)) x b_a. T = max_num_batched_tokens.
             On vLLM issue #10517's logs (Llama-3.1-8B, RTX 3090, no chunked prefill, T = max_model_len) this
             gives 2.06 and 2.99 GiB at T = 20,000 and 29,000 where vLLM logged 2.07 and 2.99.
  sampler    R x V x b bytes, R = min(max_num_seqs, T) rows of vocab logits, b by model runner:
             fp32 logits, top-k/top-p's sort (values and int64 indices), probabilities and their copies.
             'v0', the V0 worker (the default before vLLM 0.8): 41 bytes a logit; vLLM PR #10511 logs 1.26 GiB
             over 256 x 128,256 logits at TP 1 and TP 2 alike (the sampler sees the gathered vocab), which is why
             it is the sampler and not the forward pass that peaks.
             'v1', GPUModelRunner (the V1 engine's, the default from 0.8): 38.92 bytes a logit; llm-d's vLLM 0.11.0
             log of Llama-3.1-8B on one H100 shows a 4.76 GiB peak over 1024 x 128,256 logits (its other four
             0.11.0 logs show 38.4-39.6).
             'v2', Model Runner V2 (vllm/v1/worker/gpu/model_runner.py) profiles the sampler without top-k and
             top-p, so its term is the fp32 logits alone, 4 bytes, and the forward pass dominates; from vLLM 0.29
             its sampling is sharded over the batch (PR #50465: "cuts per-step logits memory by 1/TP"), 4 / tp.
             The runner by version (vllm_model_runner): v0 before 0.8; v1 until 0.25, which made V2 the default for
             dense models (PR #44443); V2 for every model from 0.29 (PR #53183). Logs say which: V2 logs
             '[model_runner.py] Model loading took', GPUModelRunner '[gpu_model_runner.py]'.
             GPUModelRunner samples with FlashInfer's top-k/top-p kernel where its log says "Using FlashInfer
             for top-p & top-k sampling" (the default where FlashInfer is installed in vLLM 0.10, off from PR
             #26859, on again from PR #40376): then no sort, 10 bytes a logit (bf16 logits, their fp32 copy, fp32
             probabilities). Three vLLM 0.10.1.1 logs of Qwen2-7B on A100 80GBs (dennislee22/vLLM-benchmarking)
             come within 0.1-1.4 % with it, where the sort's 38.92 would leave the 0.25-utilisation pool 20 % low.
             On vLLM 0.27.1 logs: Qwen2.5-0.5B on an RTX 4090 logs 0.31 GiB of peak (forward 0.26 GiB, where
             the sort would have taken 1.5 GiB); Qwen3-32B at TP 2 on RTX PRO 6000s leaves 1.66 GiB for peak,
             non-torch memory and CUDA graphs together, where the sort alone would take 5.9 GiB.
non-torch    0.16 GiB at TP 1 (cuBLAS workspace and the like: PR #12126's H100 log). TP > 1 adds NCCL's and
             vLLM's custom all-reduce buffers: 1.79 GiB on NVLink (PR #10511: 3.58 GiB at TP 2 against 1.79 GiB
             at TP 1), 0.09 GiB over PCIe, where vLLM turns its custom all-reduce off (issue #13061: 0.25 GiB
             at TP 2 on RTX 4090s). From vLLM 0.11 the worker sets up NCCL before it takes the memory snapshot the
             budget is measured from (PR #25359), so NCCL's start-up buffers sit outside the budget, in the
             1 - utilisation headroom, and only what the profiling step adds counts: 0.41 GiB at TP 2 on NVLink
             (llm-d's vLLM 0.11.0 log of Qwen3-32B on two H100s: 0.54 GiB non-torch against the band's 0.13 at TP 1). Over
             PCIe no log of 0.11 or later shows the split, so the 0.09 GiB stands for every version.
release      the sampler's bytes a logit and the non-torch figures are kept by release band, each fitted on the
bands        memory ledger's cited logs of that band (NON_TORCH_BANDS_GiB, SAMPLER_BYTES_PER_LOGIT), or a closed form
             read from vLLM's source where it gives one: from 0.17 GPUModelRunner's in-place Triton top-k/top-p
             sampler (vllm_triton_sampler_peak_bytes: 1.885 GiB for Llama-3.1-8B on an H100, logged 1.89; 0.11.0's
             sort: 38.92 bytes a logit) and FlashInfer's 1.5 GiB all-reduce fusion workspace at TP > 1 on NVSwitch
             Hopper and Blackwell (vllm_fusion_workspace_bytes), beside 0.25 GiB at TP 1 and 0.35 more at TP 2-4
             (0.11.0's: 0.13 and 0.41).
stages      under pipeline parallelism each stage profiles itself: the first holds the embedding, the last the
            lm_head and runs the sampler, the others only the forward pass. A stage's blocks are its available memory
            over its own layers' pages, and vLLM keeps the fewest blocks of any stage: on vLLM PR #20665's log
            (DeepSeek-V2-Lite, TP 2 x PP 2 on L4s) the first stage, 14 layers and 12.13 GiB, binds over the last,
            13 layers and 11.33 GiB.
cuda graphs  the CUDA-graph pool is captured after the KV cache is allocated. Before vLLM 0.21 it came out of the
             1 - utilisation headroom. From 0.21 GPUModelRunner captures a few graphs during profiling, extrapolates
             to the rest and takes that estimate out of the budget too (PR #30515 added it behind
             VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS; a vLLM 0.27.1 log, gpustack/runner PR #251, prints "CUDA graph
             memory profiling is enabled (default since v0.21.0). The current --gpu-memory-utilization=0.8200 is
             equivalent to --gpu-memory-utilization=0.8048 without" beside "Estimated CUDA graph memory: 0.36 GiB":
             the estimate, 0.0152 of the device's memory). Model Runner V2 returned 0 until 0.29 (PR #36520's
             placeholder; issue #49224), whose release notes add its CUDA-graph memory profiling. The estimate
             depends on the capture sizes and the kernels (0.09 to 118 GiB in vLLM's issues #53013 and #45178), so
             kvcalc takes it as an input (`--cuda-graph-memory`, the log's figure) and subtracts it where the
             version counts it (vllm_counts_cuda_graphs).

Blocks      vLLM V1 pages every layer that keeps a cache (vllm/v1/core/kv_cache_utils.py,
            _get_kv_cache_groups_uniform_page_size). Layers of one kind (full attention, sliding window, chunked
            local, linear/Mamba state) form groups of equal size g: g = the fewest layers of any kind, or the most
            where that is under 1.5 x the fewest; a kind with n layers takes ceil(n / g) groups, the last padded.
            Every group draws blocks from one pool; a block holds one page for each of g layers:
                num_blocks = floor(available / (g x page))
            page = 16 tokens x the attention bytes per token per layer, except beside linear layers, whose state
            must fit one page (HybridAttentionMambaModelConfig): the block grows to 16 x ceil(state / (16 x
            attention bytes per token)) tokens and the state is padded to the page. The state is kept in the model
            dtype (2 bytes), not the KV dtype. Under EAGLE or MTP speculation the drafter's attention layer is one of
            the layers paged, of the full kind (the comment in _get_kv_cache_groups_uniform_page_size: "gpt-oss-20b +
            eagle, with 12 sw + 13 full"), and a Gated DeltaNet conv keeps k more past inputs (vllm_state_bytes).
KV tokens   'GPU KV cache size': floor(num_blocks / groups) x the smallest group's block tokens (vLLM 0.11's report;
            _report_kv_cache_config's min_block_size). With prefix caching off a state group's block is
            max_model_len (mamba_block_size), so below the grown attention block the log counts max_model_len.
Concurrency num_blocks / the blocks one request of L tokens takes in every group: a full group ceil(L / block),
            a sliding group ceil(min(W - 1 + T, L) / block) + 1 (SlidingWindowSpec.max_memory_usage_bytes: the
            window plus one prefill chunk, and one block because the window need not start at a block edge), a
            chunked group ceil(min(C + T, L) / block), a state group one block. So Gemma-2's windowed layers save
            nothing at 8K, and Gemma-3-27B's 52 sliding and 10 full layers take 7 groups of 10 (8 layers padded).
            Checked on a public vLLM 0.11.0 log of gemma-3-27b-it (max_model_len 4096, 8192-token chunks): 89,994
            blocks give 205,696 tokens and 50.05x as logged; and on vLLM issue #26646 (Qwen3-Next-80B at TP 2,
            fp8 KV: blocks of 1,072 tokens, 4 groups), whose 90,048 tokens and 1.66x at 215,040 follow from 339
            blocks.

Defaults for `vllm serve` (vllm/engine/arg_utils.py, get_batch_defaults): a GPU showing >= 70 GiB that is not an
A100 gets max_num_batched_tokens 8192 and max_num_seqs 1024; others 2048 and 256. From vLLM 0.28 (PR #51726) a GPU
showing >= 160 GiB gets 16384 batched tokens (`device_memory >= 160 * GiB_bytes` with OPENAI_API_SERVER: 16384 at
tag v0.28.0, as a tracing of that tag quotes it); its max_num_seqs is taken as the 1024 of the tier below.

TensorRT-LLM gives the KV cache free_gpu_memory_fraction (0.9 by default) of the memory still free once the model
and its runtime are loaded (TensorRT-LLM docs, "How to Change KV Cache Behavior"; it logs "Memory usage when
calculating max tokens in paged kv cache: total ..., available ..." and "Allocated X GiB for max tokens in paged KV
cache (N)"):
    KV = fraction x (visible - weights / tp - activations - non-torch buffers)
with the activations of a forward pass of max_num_tokens (8192 by default; the engine sizes its activation memory
for it at build time) taken as vLLM's forward term, the same communication buffers, and whole blocks of 32 tokens
(its default tokens_per_block).

SGLang (ModelRunner.profile_max_num_token) instead keeps (1 - mem_fraction_static) of the memory free at start
for activations and CUDA graphs and gives the KV pool what is left after loading:
    KV = free after loading - total x (1 - mem_fraction_static)
       = visible x mem_fraction_static - weights / tp - non-torch buffers   (taking the total as the visible memory)
with the same communication buffers as vLLM's; the pool is counted in single tokens (page size 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kvcalc.dtypes import BYTES_PER_ELEMENT
from kvcalc.errors import KvcalcError
from kvcalc.formulas.kv import (
    cached_tokens,
    kv_bytes_per_sequence,
    kv_bytes_per_token_per_layer,
    linear_state_bytes,
)
from kvcalc.formulas.parallel import kv_shard_fraction, stage_layer_fraction
from kvcalc.formulas.params import (
    parts_bytes,
    pipeline_stage_layers,
    quantised_and_kept_params,
    weight_bytes_per_gpu,
)
from kvcalc.specs.hardware import capability, datacenter_blackwell, hopper
from kvcalc.specs.model import ModelSpec

GiB = 1024**3
BLOCK_TOKENS = 16  # vLLM's default block_size on CUDA
# Sampler bytes a logit by band (vllm_sampler_band). The v0, v1 and v1-0.17 figures are fits: the median over the
# memory ledger's `fit` rows of that band of logged activation peak / (rows x vocab) (kvcalc/ledgers/memory.py
# fit_constants; tests/formulas/test_engine_memory.py checks these equal that fit to 0.01), each row's source cited
# in validation/engine-memory/vllm*.csv; 'v2' is a closed form (the fp32 logits alone).
SAMPLER_BYTES_PER_LOGIT = {
    "v0": 41.21,  # the V0 worker; PR #10511: 1.26 GiB / (256 x 128,256 logits)
    "v1": 38.92,  # GPUModelRunner to 0.16; llm-d's vLLM 0.11.0 Llama-3.1-8B log: 4.76 GiB / (1024 x 128,256 logits)
    # (the median with llm-d's Qwen3-32B, 38.92, and the band's second source, a vLLM 0.10.2 Qwen3-Next-80B-A3B log at
    # TP 2 on H200s, https://github.com/sungwon-chae/arxiv_confi/blob/4a052075255d08515b67b11a7e121db85912e341/tmp_memo.md:
    # 5.58 GiB / (1024 x 151,936 logits) = 38.51)
    # GPUModelRunner from 0.17 is a closed form, not a figure a logit: vllm_triton_sampler_peak_bytes
    "v2": 4,  # Model Runner V2 profiles the sampler without top-k/top-p: the fp32 logits
}
MODEL_RUNNERS = ("v0", "v1", "v2")
VLLM_SAMPLER_LOW = (0, 17)  # GPUModelRunner's Triton top-k/top-p (PR #33538, merged 2026-02-17; v0.16.0 still sorts)
# GPUModelRunner's dummy sampler run from vLLM 0.17, read from vLLM's source (upstream main 08ed2b9688b4, 2026-04-02,
# whose sampler files are those of llm-d-planner's v0.19.0 logs): _dummy_sampler_run (v1/worker/gpu_model_runner.py)
# samples R = min(max_num_seqs, T) rows with temperature 0.5, top_p 0.9, top_k V - 1, no logprobs; from 8 rows
# apply_top_k_top_p runs the Triton kernel in place (v1/sample/ops/topk_topp_sampler.py), below 8 the PyTorch sort
# (the 'v1' figure). Alive at the peak, in random_sample:
#   R V (b + 12)   the logits in the model dtype (b bytes; _dummy_sampler_run holds them), their fp32 copy
#                  (sample/sampler.py logits.to(float32); none for an fp32 model), the fp32 probabilities
#                  (topk_topp_sampler.py softmax) and the fp32 exponential draws q (random_sample)
#   S V 4          the Triton kernel's per-program buffer, cached (ops/topk_topp_triton.py _TRITON_BUFFER_CACHE),
#                  S = min(next_pow2(min(SMs, R)), SMs)
#   T d b + 2 R d b  the dummy forward's hidden states, kept alive by profile_run, and two R-row copies of them
#   W              PyTorch's cuBLAS workspace (cublas_workspace_bytes)
# On llm-d-planner's v0.19.0 H100 logs this is within 0.008 GiB of the logged torch peak on every row (Llama-3.1-8B
# 1.884 against 1.89 GiB; Qwen2.5-7B 2.203 / 2.21; gemma-2-9b 3.642 / 3.65; Qwen2.5-72B at TP 2 2.291 / 2.29),
# which is why the fit of 15.45 bytes a logit it replaces sat below 14 + 4 S / R. Not modelled: a multimodal model's
# dummy encoder inputs and outputs, alive beside it (Gemma 3: about 0.23 GiB more at T = 8192).
TRITON_TOPK_MIN_ROWS = 8
SMS_UNSTATED = 132  # a part whose spec states no compute_units: the H100 SXM's / H200's count
# GPUModelRunner with FlashInfer's top-k/top-p kernel (its log: "Using FlashInfer for top-p & top-k sampling"): the
# bf16 logits (2), their fp32 copy (4) and the fp32 probabilities FlashInfer samples from (4), no sort
FLASHINFER_SAMPLER_BYTES_PER_LOGIT = 2 + 4 + 4
NON_TORCH_TP1 = 0.16 * GiB  # PR #12126, H100, TP 1
# Non-torch memory by release band (vllm_non_torch_band): (at TP 1, added by TP > 1 over NVLink) in GiB. The pre-0.11
# figures are the cited constants around this line; the 0.11 and 0.17 ones are fits, the median over the memory
# ledger's `fit` rows of that band of the logged non-torch memory at TP 1, and at TP > 1 on NVLink of what it adds
# over the same source's TP 1 figure (ledgers/memory.py fit_constants). 0.11: llm-d's vLLM 0.11.0 logs on H100s
# (Llama-3.1-8B at TP 1: 0.13 GiB; Qwen3-32B at TP 2: 0.54). 0.17: llm-d-planner's vLLM 0.19.0 logs on H100s
# (Llama-3.1-8B at TP 1: 0.25 GiB; at TP 2 and 4: 2.07 and 2.13, the 'non-torch forward increase', FlashInfer's
# all-reduce fusion workspace among it). Over PCIe every band adds NON_TORCH_TP_PCIE.
VLLM_NON_TORCH_0_17 = (0, 17)  # FlashInfer's all-reduce + RMSNorm fusion on by default (PR #34299, after v0.16)
NON_TORCH_TP_NVLINK = 1.79 * GiB  # PR #10511: added by TP 2 on NVLink (3.58 - 1.79 GiB), NCCL's buffers counted
# The 0.17 band's NVLink figure is what TP > 1 adds besides FlashInfer's fusion workspace (vllm_fusion_workspace_bytes):
# the median over llm-d-planner's v0.19.0 Llama-3.1-8B logs at TP 2 and 4 of non-torch less the TP 1 figure less the
# workspace (2.07 and 2.13 - 0.25 - 1.5 GiB), about the 0.11 band's 0.41
NON_TORCH_BANDS_GiB = {"pre-0.11": (NON_TORCH_TP1 / GiB, NON_TORCH_TP_NVLINK / GiB),
                       "0.11": (0.13, 0.41),  # was 0.16 and 0.40 (Qwen3-32B's 0.54 less its 0.14 at TP 1)
                       "0.17": (0.25, 0.35)}
# FlashInfer's all-reduce + RMSNorm fusion (vLLM's compilation pass, on by default at -O2 from PR #34299, 2026-02-11,
# for TP > 1 on compute capability 9.0 and 10.x with FlashInfer installed and DP = PP = 1: vllm/config/vllm.py; off on
# GPUs without NVLink multicast, PR #35085, and under --enforce-eager) builds its workspace during the profiling run, so
# the budget counts it: three buffers on SymmDeviceMemory (FlashInfer 0.6.7 comm/trtllm_ar.py, comm/allreduce.py),
# each rounded up to the recommended multicast granularity (comm/mnnvl.py), 512 MiB on an NVSwitch system (microsoft/
# mscclpp include/mscclpp/nvls.hpp: 1 << 29, "the recommended buffer size for NVLS, returned by
# cuMulticastGetGranularity"; not measured here): 1.5 GiB whatever the TP degree or hidden size, which is why
# llm-d-planner's v0.19.0 logs show ~2.1 GiB of non-torch memory at TP 2 and 4 alike, against 0.54 at 0.11
FUSION_WORKSPACE_BUFFERS = 3
MULTICAST_GRANULARITY_BYTES = 512 * 1024**2
# the tensor-parallel sizes the fusion supports: vllm/config/compilation.py PassConfig.flashinfer_max_size,
# FI_SUPPORTED_WORLD_SIZES = [2, 4, 8] (None, the pass off, for any other)
FUSION_WORLD_SIZES = (2, 4, 8)
NON_TORCH_TP_PCIE = 0.09 * GiB  # issue #13061: 0.25 GiB at TP 2 on RTX 4090s, less the TP 1 figure
# vLLM releases whose memory rule differs (version tuples (major, minor))
VLLM_LATEST = (0, 30)  # the newest release the rule follows: v0.30.0, 2026-09-22
# the newest vLLM release published (`pip index versions vllm`, 2026-12-07: 0.31.0 to 0.34.0 after 0.30.0): releases
# past VLLM_LATEST up to it are run with VLLM_LATEST's rule and a warning (engines/memory.py check_vllm_version)
VLLM_RELEASED = (0, 34)
VLLM_V1_ENGINE = (0, 8)  # the V1 engine, GPUModelRunner, is the default (vLLM 0.8.2's docs say so)
VLLM_NCCL_BEFORE_SNAPSHOT = (0, 11)  # PR #25359: NCCL set up before the memory snapshot, its buffers outside
VLLM_MRV2_DENSE = (0, 25)  # v0.25.0: Model Runner V2 the default for dense models (PR #44443)
VLLM_MRV2_ALL = (0, 29)  # v0.29.0: Model Runner V2 for every model (PR #53183), sampling sharded over TP (#50465),
# and V2's own CUDA-graph memory profiling (its release notes)
VLLM_CUDA_GRAPH_ESTIMATE = (0, 21)  # GPUModelRunner takes its CUDA-graph estimate out of the budget by default
LARGE_GPU_GIB = 70  # get_batch_defaults' threshold for the larger defaults
HUGE_GPU_GIB = 160  # and, from 0.28, for 16384 batched tokens
V0_MAX_NUM_SEQS = 256  # vLLM V0's EngineArgs.max_num_seqs (vllm/engine/arg_utils.py, 0.1 to 0.7)
V0_MIN_BATCHED_TOKENS = 2048  # V0's SchedulerConfig without chunked prefill: max(max_model_len, 2048)
VLLM_A100_SMALL_DEFAULTS = (0, 9)  # PR #17885: A100s take the small defaults whatever their memory
VLLM_BIGGER_BATCH = (0, 28)  # v0.28.0: PR #51726, 16384 batched tokens on GPUs showing >= 160 GiB
# The rules below go by the part's compute capability (hardware_specs' compute_capability: '9.0', '10.0', 'gfx942'), as
# the engines' own checks do, never by a spec's name (the twenty-fifth audit, G2: a renamed copy of h100-sxm.toml had
# lost FlashInfer's fusion workspace and the MXFP4 layout, gpt-oss-120b's pool 14 % larger): specs/hardware.py
# capability, hopper, datacenter_blackwell

STATE_BYTES = 2  # vLLM keeps Mamba and linear-attention state in the model dtype (mamba_cache_dtype 'auto')
ROPE_CACHE_BYTES = 2  # RotaryEmbedding casts its cos/sin table to the model dtype
ROPE_CACHE_BYTES_FP32 = {"gpt_oss": 4}  # families whose model file asks get_rope for float32 (gpt_oss.py: dtype=torch.float32)
# vLLM's MXFP4 MoE backends as its selection picks them (v0.10.1.1 mxfp4.py _should_use_marlin; v0.11.0 mxfp4.py
# get_mxfp4_backend; v0.19.0 fused_moe/oracle/mxfp4.py select_mxfp4_moe_backend): Marlin below compute capability 9.0
# (these parts: 8.0 and 8.6-8.9); on Hopper the OpenAI triton_kernels matmul, which a stock install has from PR #28788
# (merged 2025-11-15, bundled into vllm/third_party; first release 0.12). Before that a Hopper install's layout
# depended on how triton_kernels and torch were installed (0.10.x: below, not followed). 0.11 falls back to Marlin
# without it (quantization/mxfp4.py get_mxfp4_backend: "not has_triton_kernels()"), and a stock 0.11 install has
# none: vllm/utils has_triton_kernels calls it "the optional `triton_kernels` package", and neither requirements/ nor docker/Dockerfile installs it (vLLM at 9360d34fa,
# 2025-09-30, days before the 0.11.0 release). Yet the only 0.11.0 Hopper weights found, llm-d's sweep on one H100
# (github.com/llm-d/llm-d-benchmark config_explorer/empirical-vllm-memory-results.md @259334868c: gpt-oss-20b 13.47
# GiB, gpt-oss-120b 64.38), are not Marlin-sized (13.70, 65.93) but triton_kernels' without the 64-byte padding of
# the packed values that 0.19.0's swizzle adds (13.44, 64.33): so 0.11 on Hopper takes that layout,
# "triton-hopper-0.11", inferred from those two figures (the twenty-sixth audit, M1). The 120b row's other figures
# do not add up (its 3.33 GiB of KV cache is not 0.9 x 79.18 - 64.38 - 7.38 - 0.13 = -0.63, and its peak and
# non-torch memory are the 20b row's), so it is not a memory-ledger row. A stock pip install of 0.11 without
# triton_kernels still takes Marlin (13.70 GiB for the 20b): kvcalc follows the logs, 1.9 % low for such an install.
# The thirty-fifth audit, memory 2: 0.14.1 still loads the unpadded triton_kernels layout (vllm-project/vllm issue
# #33155: "Using Triton backend", "Model loading took 64.38 GiB", the unpadded 64.33), so the 64-byte padding arrives
# with 0.19.0's triton_kernels (v3.6.0; llm-d-planner's 0.19.0 gpt-oss-20b TP 2 row wants it), not with the bundling
# in 0.12; 0.15-0.18 are taken unpadded (not established). Memory 1, left: a stock pip 0.10.1 on an H100 takes Marlin
# (issue #23278: "leveraging the Marlin kernel", gpt-oss-120b "Model loading took 65.9651 GiB", Marlin's 65.93 here,
# and no KV pool), yet gpustack's 0.10.2 ran the same model on one H100 at a 32K context (validation/serve sv-019),
# which Marlin's layout leaves no room for: the 0.10 layout depends on the install, and the checkpoint's bytes stand.
VLLM_STOCK_MARLIN_ON_HOPPER = (0, 11)
VLLM_TRITON_KERNELS_PADDED = (0, 19)
GROUP_SIZE_SLACK = 1.5  # _get_kv_cache_groups_uniform_page_size: the most layers as group size below 1.5 x the fewest
TRTLLM_BLOCK_TOKENS = 32  # TensorRT-LLM's default tokens_per_block
TRTLLM_MAX_NUM_TOKENS = 8192  # TensorRT-LLM's default max_num_tokens
# trtllm-bench throughput's own settings (tensorrt_llm/bench/build/tuning.py): it sizes the KV cache from the
# checkpoint's safetensors element count at the format's bytes, keeps 0.95 of the rest for it, caps the whole batch at
# 4096 requests ("to avoid decoder buffer size becoming too large") and splits it over the pipeline stages
TRTLLM_BENCH_MAX_REQUESTS = 4096
TRTLLM_BENCH_KV_FRACTION = 0.95
TRTLLM_BENCH_MAX_TOKENS = 32768
# per weight format: safetensors elements per quantised weight in a ModelOpt checkpoint (NVFP4: two 4-bit values
# packed in a byte and an fp8 scale per 16) and the bytes trtllm-bench counts every element at
# (fp8-block: tuning.py's BYTES_PER_ELEM[FP8_BLOCK_SCALES] 1.0 at 04cba882; the twenty-ninth audit, M4: it had been
# counted at bf16's 2 bytes, and DeepSeek-V3 on 8 H200s clamped to 64 requests where trtllm-bench takes 384)
TRTLLM_BENCH_FORMATS = {"nvfp4": (1 / 2 + 1 / 16, 0.5), "fp8": (1.0, 1.0), "fp8-block": (1.0, 1.0)}


def vllm_default_batching(visible_GiB: float, gpu_name: str, version: tuple[int, int] = VLLM_LATEST,
                          max_model_len: int | None = None) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) that `vllm serve` of `version` picks for this GPU. Before 0.8 (the V0
    engine) 256 sequences (EngineArgs' max_num_seqs) and, with chunked prefill off, max(max_model_len, 2048) tokens
    (SchedulerConfig), whatever the GPU (the fourteenth audit, E2: V1's 1,024 had sized V0's sampler peak, 3.8 GiB
    over). From 0.8 (V1):
    vllm/engine/arg_utils.py EngineArgs._set_default_args (https://github.com/vllm-project/vllm/blob/
    6a1acac3fe2924ca221fdf048b74f9a020dabddd/vllm/engine/arg_utils.py#L2478-L2483): a GPU showing >= 70 GiB that is
    not an A100 gets 8192 tokens and 1024 sequences for the OpenAI server, any other 2048 and 256; the A100 carve-out
    came with PR #17885 (May 2025, v0.9), so 0.8 gives the 80 GB A100 the large defaults; from 0.28 a GPU showing
    >= 160 GiB gets 16384 tokens (VLLM_BIGGER_BATCH)."""
    if version < VLLM_V1_ENGINE:
        return max(max_model_len or 0, V0_MIN_BATCHED_TOKENS), V0_MAX_NUM_SEQS
    if version >= VLLM_BIGGER_BATCH and visible_GiB >= HUGE_GPU_GIB:
        return 16384, 1024
    if visible_GiB >= LARGE_GPU_GIB and not (version >= VLLM_A100_SMALL_DEFAULTS and "a100" in gpu_name.lower()):
        return 8192, 1024
    return 2048, 256


def vllm_rope_cache_bytes(model: ModelSpec) -> float:
    """vLLM's RoPE cos/sin table on every GPU [B]: RotaryEmbedding computes cos and sin of rotary_width / 2
    frequencies for every position up to max_position_embeddings (YaRN's original length x its factor, the same
    figure) and keeps them in the model dtype; get_rope builds one table a model and the layers share it. vLLM PR
    #44738, which would have cut the table to max_model_len, was closed unmerged. Loaded with the weights, so vLLM's
    'Model loading took' counts it: Llama-3.1-8B logs 14.99 GiB where its bf16 parameters are 14.96 (the table,
    131,072 x 128 x 2 B, is the other 0.03). 0 without RoPE. Gemma 3's local layers build a second table (another
    base), not counted here."""
    if not model.max_position_embeddings:
        return 0.0
    return model.max_position_embeddings * model.rotary_width * ROPE_CACHE_BYTES_FP32.get(model.family, ROPE_CACHE_BYTES)


def vllm_mxfp4_backend(cc: str | None, version: tuple[int, int]) -> str | None:
    """The MXFP4 MoE backend vLLM `version` picks on a part of compute capability `cc`: 'marlin' (8.0-8.9),
    'triton-hopper' (9.0 from 0.19; 'triton-hopper-0.11', unpadded, from 0.11: the comments above
    VLLM_STOCK_MARLIN_ON_HOPPER), or None where kvcalc does not follow its layout (Hopper before 0.11, whose layout
    depends on the install; Blackwell's TensorRT-LLM and FlashInfer kernels, ROCm, older parts)."""
    if hopper(cc):
        if version >= VLLM_TRITON_KERNELS_PADDED:
            return "triton-hopper"
        return "triton-hopper-0.11" if version >= VLLM_STOCK_MARLIN_ON_HOPPER else None
    return "marlin" if (8, 0) <= (capability(cc) or (0, 0)) < (9, 0) else None


def _multiple(x: int, m: int) -> int:
    """x rounded up to a multiple of m (vLLM's round_up)."""
    return -(-x // m) * m


def vllm_mxfp4_expert_bytes(model: ModelSpec, tp: int, backend: str) -> float:
    """One GPU's routed experts of an MXFP4 checkpoint as vLLM holds them after loading [B]: E experts a layer, each
    a fused gate/up [2I, H] and a down [H, I] projection of 4-bit values (half a byte) with one e8m0 scale byte per
    32 and a bias per output, the intermediate I split over tp. From vLLM's source (v0.19.0
    fused_moe/oracle/mxfp4.py mxfp4_round_up_hidden_size_and_intermediate_size, convert_to_mxfp4_moe_kernel_format;
    v0.10.1.1 and v0.11.0 quantization/mxfp4.py create_weights):
      marlin         H rounded up to 256 and I to 128, values and scales repacked in place (same bytes), biases bf16
                     (utils/marlin_utils_fp4.py prepare_moe_fp4_layer_for_marlin);
      triton-hopper  I rounded up to 64; triton_kernels (v3.6.0, bundled in 0.19.0) swizzles the values into
                     HopperMXValueLayout, each packed dimension padded to 64 bytes, and the scales into
                     HopperMXScaleLayout, rows padded to 2 x num_warps (8) x 16 = 256 and columns to 2; the
                     checkpoint's scale tensor stays allocated beside the swizzled one; biases fp32.
    gpt-oss-20b at TP 1 under Marlin: 24 x 32 x (5,888 x 3,072 + 3,072 x 2,944) x (1/2 + 1/32) + biases
    = 11,083,579,392 B, where the checkpoint holds 10,165,616,640."""
    moe, H = model.moe, model.hidden_size
    E, layers, i = moe.num_experts, model.moe_layers, moe.expert_intermediate_size // tp
    bias = 1 if model.mlp.bias else 0
    if backend == "marlin":
        h, i = _multiple(H, 256), _multiple(i, 128)
        values_and_scales = E * (2 * i * h + h * i) * BYTES_PER_ELEMENT["mxfp4"]  # 1/2 + 1/32
        return layers * (values_and_scales + bias * E * (2 * i + h) * 2)
    if backend in ("triton-hopper", "triton-hopper-0.11"):
        i = _multiple(i, 64)
        pack = 64 if backend == "triton-hopper" else 1  # 0.11's layout: the packed values unpadded (llm-d's logs)
        values = E * (_multiple(2 * i, 64) * _multiple(H // 2, pack) + _multiple(H, 64) * _multiple(i // 2, pack))
        swizzled_scales = E * (_multiple(2 * i, 256) * _multiple(H // 32, 2) + _multiple(H, 256) * _multiple(i // 32, 2))
        checkpoint_scales = E * (2 * i * H + H * i) // 32
        return layers * (values + swizzled_scales + checkpoint_scales + bias * E * (2 * i + H) * 4)
    raise ValueError(f"unknown MXFP4 backend {backend!r}")


def vllm_forward_peak_bytes(model: ModelSpec, tokens: int, b_a: float, tp: int = 1, ep: int = 1) -> float:
    """Activations the dummy forward pass of `tokens` tokens holds at its widest layer [B]. Under expert parallelism
    (ep > 1) the experts are whole on each GPU (vLLM's MoE tensor-parallel size is then 1) and the fused-MoE workspace
    is sized for every token's top-k, whichever GPU holds the expert."""
    d = model.hidden_size
    # a gated MLP holds its gate/up output (2 I) and their product (I); a plain one its up output and activation (2 I)
    width = 3 if model.mlp.kind == "gated" else 2
    widest = width * model.mlp.intermediate_size / tp if model.dense_layers else 0.0
    if model.moe is not None:
        moe = model.moe
        expert_tp = 1 if ep > 1 else tp
        widest = max(widest, moe.top_k * (3 * moe.expert_intermediate_size / expert_tp + d))
    return tokens * (3 * d + widest) * b_a


def vllm_model_runner(model: ModelSpec, version: tuple[int, int] = VLLM_LATEST) -> str:
    """The model runner vLLM `version` gives `model`: 'v0' (the V0 worker) before 0.8; 'v1' (GPUModelRunner) until
    0.25; then 'v2' (Model Runner V2) for dense softmax-attention models and 'v1' for MoE and hybrid ones; 'v2' for
    every model from 0.29."""
    if version < VLLM_V1_ENGINE:
        return "v0"
    hybrid_or_moe = model.moe is not None or model.linear_attention is not None
    if version >= VLLM_MRV2_ALL or (version >= VLLM_MRV2_DENSE and not hybrid_or_moe):
        return "v2"
    return "v1"


def vllm_sampler_band(runner: str, version: tuple[int, int] = VLLM_LATEST) -> str:
    """The key of SAMPLER_BYTES_PER_LOGIT for `runner` under vLLM `version`: GPUModelRunner ('v1') is 'v1' before
    0.17 and 'v1-0.17' from it; the others are their runner's name."""
    return "v1-0.17" if runner == "v1" and version >= VLLM_SAMPLER_LOW else runner


def vllm_sampler_peak_bytes(model: ModelSpec, rows: int, runner: str = "v1", tp: int = 1,
                            version: tuple[int, int] = VLLM_LATEST, flashinfer: bool = False,
                            per_logit: float | None = None, *, tokens: int = 0, b_model: float = 2.0,
                            compute_units: int | None = None, cublas_bytes: float = 0.0) -> float:
    """The dummy sampler run over `rows` rows of the full vocabulary [B]: GPUModelRunner's from vLLM 0.17 (and 8
    rows) in closed form (vllm_triton_sampler_peak_bytes, with the dummy forward of `tokens` tokens in the model dtype
    of b_model bytes, the part's compute_units and cublas_bytes), else at the bytes per logit of the runner's release
    band (vllm_sampler_band); Model Runner V2 shards it over the tensor-parallel GPUs from vLLM 0.29.
    flashinfer: GPUModelRunner samples with FlashInfer's top-k/top-p kernel instead (the V0 worker never does; Model
    Runner V2 profiles neither). per_logit: a sort band's figure refitted (the ledger's leave-one-source-out scoring);
    None: SAMPLER_BYTES_PER_LOGIT's."""
    shards = tp if runner == "v2" and version >= VLLM_MRV2_ALL else 1
    if flashinfer and runner == "v1":
        per_logit = FLASHINFER_SAMPLER_BYTES_PER_LOGIT
    elif runner == "v1" and version >= VLLM_SAMPLER_LOW:
        if rows >= TRITON_TOPK_MIN_ROWS:
            return vllm_triton_sampler_peak_bytes(model, rows, tokens, b_model, compute_units, cublas_bytes)
        per_logit = per_logit or SAMPLER_BYTES_PER_LOGIT["v1"]  # below 8 rows: the PyTorch sort, as before 0.17
    elif per_logit is None or runner == "v2":
        per_logit = SAMPLER_BYTES_PER_LOGIT[vllm_sampler_band(runner, version)]
    return rows * model.vocab_size * per_logit / shards


def vllm_profile_peak_bytes(model: ModelSpec, max_num_batched_tokens: int, max_num_seqs: int, b_a: float,
                            tp: int = 1, ep: int = 1, runner: str = "v1",
                            version: tuple[int, int] = VLLM_LATEST, flashinfer: bool = False,
                            per_logit: float | None = None, *, compute_units: int | None = None,
                            cublas_bytes: float = 0.0, last_of_stages: bool = False) -> float:
    """What vLLM's profiling step allocates beyond the weights, per GPU [B], under model runner `runner`: the larger
    of the forward pass's activations and the sampler's run. last_of_stages: the last of several pipeline stages,
    which from vLLM 0.17 also holds the dummy run's intermediate tensors, 2 T d b (gpu_model_runner.py
    _dummy_run; llm-d-planner's v0.19.0 pipeline log: 2.01 GiB where one stage's sampler takes 1.89)."""
    rows = min(max_num_seqs, max_num_batched_tokens)
    sampler = vllm_sampler_peak_bytes(model, rows, runner, tp, version, flashinfer, per_logit,
                                      tokens=max_num_batched_tokens, b_model=b_a, compute_units=compute_units,
                                      cublas_bytes=cublas_bytes)
    if last_of_stages and runner == "v1" and not flashinfer and version >= VLLM_SAMPLER_LOW:
        sampler += 2 * max_num_batched_tokens * model.hidden_size * b_a
    return max(vllm_forward_peak_bytes(model, max_num_batched_tokens, b_a, tp, ep), sampler)


vllm_pipeline_layers = pipeline_stage_layers  # vLLM's split of the layers over pipeline stages (get_pp_indices)


def vllm_non_torch_band(version: tuple[int, int]) -> str:
    """The key of NON_TORCH_BANDS_GiB for vLLM `version`: 'pre-0.11', '0.11' (NCCL set up before the snapshot,
    PR #25359) or '0.17' (FlashInfer's all-reduce fusion on by default, PR #34299)."""
    if version < VLLM_NCCL_BEFORE_SNAPSHOT:
        return "pre-0.11"
    return "0.17" if version >= VLLM_NON_TORCH_0_17 else "0.11"


def vllm_fusion_workspace_bytes(cc: str | None, topology: str | None, version: tuple[int, int], gpus: int,
                                pp: int = 1, data_parallel: int = 1) -> float:
    """FlashInfer's all-reduce + RMSNorm fusion workspace that vLLM `version` counts in non-torch memory per GPU [B]:
    FUSION_WORKSPACE_BUFFERS x MULTICAST_GRANULARITY_BYTES (1.5 GiB) for a tensor-parallel group of 2, 4 or 8
    GPUs (FUSION_WORLD_SIZES) on an NVSwitch system of compute capability 9.0 or 10.x, with pp = 1 and no data
    parallelism, from vLLM 0.17; else 0. Under --enforce-eager the pass does not run (not a kvcalc input: the figure
    then overstates non-torch memory)."""
    if (version < VLLM_NON_TORCH_0_17 or gpus not in FUSION_WORLD_SIZES or pp > 1 or data_parallel > 1
            or topology != "nvswitch" or not (hopper(cc) or datacenter_blackwell(cc))):
        return 0.0
    return FUSION_WORKSPACE_BUFFERS * MULTICAST_GRANULARITY_BYTES


def cublas_workspace_bytes(cc: str | None, vendor: str = "NVIDIA") -> float:
    """PyTorch's cuBLAS (hipBLAS) workspace, allocated by its caching allocator with the first GEMM [B]
    (aten/src/ATen/cuda/CublasHandlePool.cpp parseChosenWorkspaceSize): 32 MiB on compute capability 9.x, 10.x, 12.x,
    else ':4096:2:16:8', 8.125 MiB; on ROCm 128 MiB for gfx94x/gfx95x (MI300X, MI325X, MI355X), else 32 MiB."""
    if vendor == "AMD":
        return 128 * 1024**2 if (cc or "").startswith(("gfx94", "gfx95")) else 32 * 1024**2
    # CublasHandlePool.cpp: major 9, 10 and 12 only (the twenty-sixth audit, R7: 11.x, Thor, had been given 32 MiB)
    return 32 * 1024**2 if (capability(cc) or (0, 0))[0] in (9, 10, 12) else 4096 * 1024 * 2 + 16 * 1024 * 8


def vllm_triton_sampler_peak_bytes(model: ModelSpec, rows: int, tokens: int, b_model: float,
                                   compute_units: int | None = None, cublas_bytes: float = 0.0) -> float:
    """GPUModelRunner's dummy sampler run from vLLM 0.17 at `rows` (R >= 8) rows [B], with the dummy forward of
    `tokens` (T) tokens alive beside it (see TRITON_TOPK_MIN_ROWS's comment for each term):
        R V (b + 12) + S V 4 + T d b + 2 R d b + W,   S = min(next_pow2(min(SMs, R)), SMs)
    b is the model dtype's bytes (no fp32 copy for an fp32 model: 12 a logit). Llama-3.1-8B on an H100 (R 1,024,
    T 8,192, SMs 132, W 32 MiB): 1,838,661,632 + 67,719,168 + 67,108,864 + 16,777,216 + 33,554,432 B = 1.885 GiB,
    where vLLM 0.19.0 logs 1.89."""
    vocab, d = model.vocab_size, model.hidden_size
    sms = compute_units or SMS_UNSTATED
    programs = min(1 << (min(sms, rows) - 1).bit_length(), sms)
    copy = 0.0 if b_model >= 4 else b_model
    return (rows * vocab * (copy + 12) + programs * vocab * 4 + tokens * d * b_model
            + 2 * rows * d * b_model + cublas_bytes)


def vllm_non_torch_bytes(tp: int, nvlink: bool, nccl_in_budget: bool = True, band: str | None = None,
                         figures_GiB: tuple[float, float] | None = None, fusion_workspace: float = 0.0) -> float:
    """Memory allocated outside torch that the budget counts (communication buffers, library workspaces) [B]:
    the band's TP 1 figure, plus at TP > 1 its NVLink addition or NON_TORCH_TP_PCIE over PCIe.
    band: a key of NON_TORCH_BANDS_GiB (vllm_non_torch_band); None: 'pre-0.11' where nccl_in_budget (NCCL's
    start-up buffers counted: vLLM before 0.11, and the SGLang and TensorRT-LLM rules that share these figures), else
    '0.11'. figures_GiB: the band's (TP 1, NVLink addition) refitted (the ledger's leave-one-source-out scoring).
    fusion_workspace: FlashInfer's all-reduce fusion workspace where the version builds one (vllm_fusion_workspace_bytes)."""
    band = band or ("pre-0.11" if nccl_in_budget else "0.11")
    tp1, nvlink_added = figures_GiB or NON_TORCH_BANDS_GiB[band]
    if tp == 1:
        return tp1 * GiB
    return (tp1 + (nvlink_added if nvlink else NON_TORCH_TP_PCIE / GiB)) * GiB + fusion_workspace


def vllm_counts_cuda_graphs(runner: str, version: tuple[int, int] = VLLM_LATEST) -> bool:
    """Whether vLLM `version` under model runner `runner` takes its CUDA-graph estimate out of the KV budget:
    GPUModelRunner from 0.21, Model Runner V2 from 0.29, the V0 worker never."""
    if runner == "v1":
        return version >= VLLM_CUDA_GRAPH_ESTIMATE
    return runner == "v2" and version >= VLLM_MRV2_ALL


def vllm_available_kv_bytes(visible_bytes: float, utilization: float, weights_per_gpu: float, peak: float,
                            non_torch: float, cuda_graphs: float = 0.0) -> float:
    """vLLM's 'Available KV cache memory' per GPU [B] (negative when nothing is left); cuda_graphs: the CUDA-graph
    estimate where the version counts it."""
    return visible_bytes * utilization - weights_per_gpu - peak - non_torch - cuda_graphs


def kv_page_bytes(model: ModelSpec, b_kv: float, tp: int = 1, pp: int = 1, record: bool = True) -> float:
    """KV bytes of one block of BLOCK_TOKENS tokens across the layers one GPU holds [B] (the heaviest stage's;
    record: formulas/kv.py kv_bytes_per_token_per_layer's)."""
    return (BLOCK_TOKENS * model.attention_layers * kv_bytes_per_token_per_layer(model.attention, b_kv, record)
            * kv_shard_fraction(model, tp) * stage_layer_fraction(model, pp))


@dataclass(frozen=True)
class VllmLayout:
    """How vLLM pages one GPU's caches: groups of equal layer count drawing on one pool of blocks."""

    block_tokens: int  # tokens in one attention block
    page_bytes: float  # one block of one layer, the same for every group
    group_layers: int  # layers in each group, padding included
    groups: dict[str, int]  # groups of each kind: full, window, chunked, state

    @property
    def block_bytes(self) -> float:
        return self.group_layers * self.page_bytes


def vllm_block_alignment(model: ModelSpec, cc: str | None) -> int:
    """Tokens an attention block is a multiple of beside linear layers: 16, or 32 for head size 256 on the
    datacenter Blackwell parts (compute capability 10.x), where FlashInfer has no 16-token blocks for it."""
    return 32 if datacenter_blackwell(cc) and model.attention.head_dim == 256 else BLOCK_TOKENS


def vllm_state_bytes(model: ModelSpec, tp: int = 1, speculative_tokens: int = 0) -> float:
    """One linear layer's state for one request on one GPU as vLLM pages it [B]: LinearAttentionSpec.state_bytes at
    the model's dtype (STATE_BYTES); under speculative decoding of k tokens a Gated DeltaNet conv keeps K - 1 + k past
    inputs, not K - 1 (vllm-project/vllm vllm/model_executor/layers/mamba/mamba_utils.py at 2afe1e85,
    gated_delta_net_state_shape: conv_kernel_size - 1 + num_spec; models/qwen3_next.py at 002d6073,
    get_mamba_state_shape_from_config: num_spec = speculative_config.num_speculative_tokens). Mamba-2's and Mamba's
    shapes take no num_spec. Qwen3-Next at TP 2, k 2: 524,288 + 5 x 4,096 x 2 = 565,248 B."""
    la = model.linear_attention
    state = la.state_bytes(STATE_BYTES, tp)
    if la.kind == "gated_deltanet":
        state += speculative_tokens * la.conv_channels * STATE_BYTES / tp
    return state


def vllm_request_state_bytes(model: ModelSpec, tp: int = 1, pp: int = 1, speculative_tokens: int = 0) -> float:
    """One request's state over the linear layers of the heaviest stage on one GPU, as vLLM pages a model with no
    softmax attention (one state block a layer) [B]: vllm_state_bytes x its stage's linear layers."""
    return vllm_state_bytes(model, tp, speculative_tokens) * model.linear_layers * stage_layer_fraction(model, pp)


def vllm_layout(model: ModelSpec, b_kv: float, tp: int = 1, pp: int = 1, alignment: int = BLOCK_TOKENS,
                speculative_tokens: int = 0, draft_layers: int = 0) -> VllmLayout | None:
    """vLLM's block layout on the heaviest pipeline stage; None for a model with no softmax attention layer.
    alignment: what the grown attention block is a multiple of beside linear layers (vllm_block_alignment).
    speculative_tokens: k under speculative decoding, which widens a Gated DeltaNet state (vllm_state_bytes).
    draft_layers: the drafter's attention layers vLLM pages beside the target's, all of the full kind (EAGLE's and
    MTP's one: engines/memory.py vllm_draft_layers), on the last stage in vLLM, counted here on the heaviest stage
    (the same stage at pp 1, and an upper bound where the last stage is lighter); they count when the kinds are grouped
    (kv_cache_utils.py _get_kv_cache_groups_uniform_page_size, vllm-project/vllm at 001cabc1: "A typical example is
    gpt-oss-20b + eagle, with 12 sw + 13 full. We pad it to (13 sw, 13 full)"). The fortieth audit, hybrid 1:
    Qwen3-Next-80B with mtp=2 (alpha= given: the pool does not depend on it) at TP 2 had been paged in 12-layer
    groups of 544-token blocks, the draft's KV beside them, where vLLM pages 13-layer groups (the MTP layer a 13th full layer, 36 state layers in 3 groups of 13) of
    560-token blocks: 368 requests of 4,096 tokens on two H200s where it holds 341."""
    if model.attention_layers == 0:
        return None
    kinds = {"full": model.global_layers, "state": model.linear_layers,
             ("chunked" if model.attention.window_kind == "chunked" else "window"): model.window_layers}
    layers = {k: math.ceil(n / pp) for k, n in kinds.items() if n}
    if draft_layers:
        layers["full"] = layers.get("full", 0) + draft_layers
    per_token = kv_bytes_per_token_per_layer(model.attention, b_kv) * kv_shard_fraction(model, tp)
    block = BLOCK_TOKENS
    if "state" in layers:
        state = vllm_state_bytes(model, tp, speculative_tokens)
        block = alignment * math.ceil(state / (alignment * per_token))
    fewest, most = min(layers.values()), max(layers.values())
    size = most if most < GROUP_SIZE_SLACK * fewest else fewest
    return VllmLayout(block, block * per_token, size, {k: math.ceil(n / size) for k, n in layers.items()})


def vllm_kv_tokens(model: ModelSpec, available_bytes: float, b_kv: float, tp: int = 1, pp: int = 1,
                   alignment: int = BLOCK_TOKENS, speculative_tokens: int = 0, draft_layers: int = 0,
                   state_block_tokens: int | None = None) -> int:
    """'GPU KV cache size: N tokens' (0 for a model with no softmax attention: its pool holds only fixed states):
    floor(num_blocks / groups) x the smallest block of any group (vllm/v1/core/kv_cache_utils.py at 001cabc1,
    _report_kv_cache_config: min_block_size). state_block_tokens: a state group's block where it is not the
    attention block's, vLLM's mamba_block_size, which is max_model_len with prefix caching off (model_executor/
    models/config.py MambaModelConfig: "mamba block size will be set to max_model_len"); so below the grown block the
    log counts max_model_len a block (the fortieth audit, hybrid 5: Nemotron-H-8B at -c 512 on an H100 under 0.27,
    505,440 tokens where vLLM logs 486 x 512 = 248,832). speculative_tokens, draft_layers: vllm_layout's."""
    layout = vllm_layout(model, b_kv, tp, pp, alignment, speculative_tokens, draft_layers)
    if available_bytes <= 0 or layout is None:
        return 0
    blocks = math.floor(available_bytes / layout.block_bytes)
    block = layout.block_tokens
    if state_block_tokens is not None and "state" in layout.groups:
        block = min(block, state_block_tokens)
    return blocks // sum(layout.groups.values()) * block


# vLLM's window reservation counts the tokens in flight, not one step's: VllmConfig.max_in_flight_tokens =
# max_concurrent_batches x max_num_batched_tokens, which SlidingWindowSpec (and the chunked-local spec) add to the
# window (PR #47728, "Free out-of-window blocks on the processed-token basis under async scheduling", merged
# 2026-07-06; vllm/config/vllm.py in v0.27.1 as the twenty-ninth audit read it, M1; vLLM issue #54703: "With async
# scheduling, max_in_flight_tokens = 2 * max_num_batched_tokens"). max_concurrent_batches: pp + 1 under model runner
# v2 with async scheduling, 2 under GPUModelRunner at pp 1 with it, else pp.
VLLM_IN_FLIGHT_WINDOW = (0, 27)


def vllm_window_tokens(max_num_batched_tokens: int, version: tuple[int, int], runner: str, pp: int,
                       ahead: bool) -> int:
    """The tokens vLLM `version` adds to a sliding or chunked window when it sizes a request's blocks (above)."""
    if version < VLLM_IN_FLIGHT_WINDOW:
        return max_num_batched_tokens
    batches = (pp + 1 if runner == "v2" else 2 if pp == 1 else pp) if ahead else pp
    return batches * max_num_batched_tokens


def vllm_request_blocks(model: ModelSpec, layout: VllmLayout, max_model_len: int, max_num_batched_tokens: int,
                        speculative_tokens: int = 0) -> int:
    """Blocks one request of max_model_len tokens takes from the pool, over every group. max_num_batched_tokens: the
    tokens a window is extended by (vllm_window_tokens: one step's before vLLM 0.27, the tokens in flight after).
    speculative_tokens: under speculative decoding a recurrent state group keeps 1 + k state blocks a request
    (vllm/v1/kv_cache_interface.py MambaSpec.max_memory_usage_bytes: page_size_bytes * (1 + num_speculative_blocks),
    num_speculative_blocks = num_speculative_tokens; the thirty-first audit, speculate 1: one had been counted)."""
    b, length = layout.block_tokens, max_model_len
    held = {"full": math.ceil(length / b), "state": 1 + speculative_tokens}
    if "window" in layout.groups:
        held["window"] = math.ceil(min(model.attention.sliding_window - 1 + max_num_batched_tokens, length) / b) + 1
    if "chunked" in layout.groups:
        held["chunked"] = math.ceil(min(model.attention.sliding_window + max_num_batched_tokens, length) / b)
    return sum(n * held[kind] for kind, n in layout.groups.items())


def vllm_max_concurrency(model: ModelSpec, available_bytes: float, max_model_len: int, max_num_batched_tokens: int,
                         b_kv: float, tp: int = 1, pp: int = 1, alignment: int = BLOCK_TOKENS,
                         speculative_tokens: int = 0, draft_layers: int = 0, align: bool = False) -> float:
    """'Maximum concurrency for L tokens per request: Nx'. speculative_tokens: k, a state group's k more blocks a
    request (vllm_request_blocks) and a wider Gated DeltaNet state (vllm_layout); align: mamba_cache_mode 'align',
    one more state block; draft_layers: vllm_layout's."""
    if available_bytes <= 0:
        return 0.0
    extra = speculative_tokens + align
    layout = vllm_layout(model, b_kv, tp, pp, alignment, speculative_tokens, draft_layers)
    if layout is None:  # state only: 1 + k states a request, whole ones
        state = vllm_request_state_bytes(model, tp, pp, speculative_tokens)
        return float(math.floor(available_bytes / (state * (1 + extra))))
    blocks = math.floor(available_bytes / layout.block_bytes)
    return blocks / vllm_request_blocks(model, layout, max_model_len, max_num_batched_tokens, extra)


# The first SGLang release taken to derive mem_fraction_static from reserved memory rather than the TP ladder:
# sgl-project/sglang PR #7054 ("Simplify the heuristics for setting --mem-fraction-static", merged 2025-06-10) replaced
# the ladder, and 0.4.7 is taken as the first release cut after it (not checked against its tag); PR #10975
# (2025-09-27) then set the reserve by the GPU's memory tier, the rule sglang_derived_mem_fraction follows. The
# ledger's ~0.4.4 row (sgl-project/sglang PR #4760's log) is within 1.0 % at the ladder's 0.88.
SGLANG_RESERVED_MEMORY_RULE = (0, 4, 7)


def sglang_default_mem_fraction(tp: int) -> float:
    """SGLang's mem_fraction_static when none is given, by tensor-parallel size, as v0.4.x's ServerArgs.__post_init__
    sets it (sgl-project/sglang python/sglang/srt/server_args.py: 0.79 from TP 16, 0.81 from 8, 0.85 from 4, 0.87
    from 2, else 0.88), in releases before SGLANG_RESERVED_MEMORY_RULE. Releases from it to PR #10975 derive it by PR
    #7054's reserve, which kvcalc does not model (it takes #10975's, sglang_derived_mem_fraction)."""
    for least, fraction in ((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87)):
        if tp >= least:
            return fraction
    return 0.88


# SGLang's own defaults by the GPU's memory in MiB (server_args.py _handle_gpu_memory_settings, from PR #10975):
# (below this much memory: chunked_prefill_size, cuda_graph_max_bs under TP 4, from TP 4)
SGLANG_MEMORY_TIERS = ((20 * 1024, 2048, 8, 8), (35 * 1024, 2048, 24, 80), (60 * 1024, 4096, 32, 160),
                       (90 * 1024, 8192, 256, 512), (160 * 1024, 8192, 256, 512), (math.inf, 16384, 512, 512))


def sglang_memory_tier(gpu_mem_mib: float) -> tuple[int, int, int]:
    """(chunked_prefill_size, cuda_graph_max_bs under TP 4, from TP 4) SGLang takes for a GPU of gpu_mem_mib MiB where
    the flags are not given (SGLANG_MEMORY_TIERS): a step of 2,048 tokens below 35 GiB (T4, L4, A10, RTX 4090 and
    5090), 4,096 below 60 (A100 40GB, L40S), 8,192 below 160 (H100, H200, RTX PRO 6000), 16,384 from 160 (B200,
    MI300X)."""
    return next((c, a, b) for below, c, a, b in SGLANG_MEMORY_TIERS if gpu_mem_mib < below)


# what SGLang's _handle_gpu_memory_settings reserved beside, past the 10 GiB floor, for a speculative algorithm [MiB]:
# STANDALONE (a draft model: kvcalc's "draft") 6 GiB, the EAGLE family (EAGLE, EAGLE3, NEXTN: kvcalc's eagle and mtp)
# 2 GiB, NGRAM none (sgl-project/sglang python/sglang/srt/server_args.py of the 0.5 releases before 0.5.14; the
# twenty-ninth audit, R2). 0.5.14, the release the SGLang profiles time, reserves nothing for the draft (its
# _handle_gpu_memory_settings has no speculative term) and counts the draft's KV in the pool's bytes a token instead,
# (1 + the draft's layers / the model's) (model_executor/pool_configurator.py DefaultPoolConfigurator), which serve's
# draft KV a request already is (the thirty-third audit, launch L4's reading of the 0.5.14 wheel)
SGLANG_SPECULATION_RESERVE_MIB = {"draft": 6 * 1024, "eagle": 2 * 1024, "mtp": 2 * 1024}
SGLANG_NO_SPECULATION_RESERVE = (0, 5, 14)


def sglang_derived_mem_fraction(gpu_mem_mib: float, tp: int, pp: int = 1, dp: int = 1,
                                speculation: str | None = None, release: tuple[int, ...] | None = None) -> float:
    """The mem_fraction_static SGLang derives when none is given (sgl-project/sglang python/sglang/srt/
    server_args.py, _handle_gpu_memory_settings): (memory - reserved) / memory, rounded to 3 places, reserved [MiB] =
    512 + 1.5 max(chunked_prefill_size, 2048) + 2 cuda_graph_max_bs + tp pp / 8 x 1024, with data-parallel attention
    (dp > 1) 3 cuda_graph_max_bs dp more (and 1.5 more a rank past 300 graphs), at least 10 GiB on parts over 60 GiB;
    with speculation (the method: draft, eagle, mtp) SGLANG_SPECULATION_RESERVE_MIB more in a release before
    0.5.14 (release; None: 0.5.14's rule, the profiled one); without piecewise CUDA graphs. An H100 (81,559 MiB) at
    TP 1: 13,440 MiB, 0.835."""
    chunk, small, large = sglang_memory_tier(gpu_mem_mib)
    graphs = small if tp < 4 else large
    reserved = 512 + max(chunk, 2048) * 1.5 + graphs * 2 + tp * pp / 8 * 1024
    if dp > 1:
        reserved += graphs * dp * 3 + (graphs * dp * 1.5 if graphs > 300 else 0)
    if gpu_mem_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    if release is not None and tuple(release) < SGLANG_NO_SPECULATION_RESERVE:
        reserved += SGLANG_SPECULATION_RESERVE_MIB.get((speculation or "").split("=")[0], 0)
    return round((gpu_mem_mib - reserved) / gpu_mem_mib, 3)


# SGLang's weights under data-parallel attention (plan launches --tp-size ep --enable-dp-attention --dp-size ep / tp,
# without --enable-dp-lm-head, --moe-dense-tp-size 1 or DeepEP): every model's ParallelLMHead(use_attn_tp_group=
# enable_dp_lm_head) splits the lm_head over all ep GPUs, and deepseek_v2.py's dense layers (mlp_tp_size None) and
# shared experts (DeepseekV2MLP, whole only under DeepEP or Mooncake's all-to-all) likewise; the embedding is whole
# on each GPU (VocabParallelEmbedding(enable_tp=not is_dp_attention_enabled())), attention per its group (sgl-project/
# sglang python/sglang/srt/models/deepseek_v2.py; the twenty-third audit, S1: DeepSeek-V3 at --ep 8 had been given
# vLLM's layout, 4.9 GB a GPU more weights and a 15 % smaller pool)
SGLANG_DP_SPLIT_FAMILIES = ("deepseek_v2", "deepseek_v3", "deepseek_v32", "kimi_k2")


def sglang_weight_bytes_per_gpu(model: ModelSpec, b_w: float, tp: int, pp: int = 1, ep: int = 1) -> float:
    """Weight bytes on one GPU as SGLang lays them out [B]: formulas/params.py weight_bytes_per_gpu, but with the
    parts SGLang splits over the whole expert-parallel group under data-parallel attention (above) / ep, not / tp, and
    pipeline stages split as SGLang's get_pp_indices does (the layers left over on the last stages)."""
    weights = weight_bytes_per_gpu(model, b_w, tp, pp, ep, extra_layers="last")
    if ep <= tp:
        return weights
    parts = ("lm_head", "mlp", "moe/shared") if model.family in SGLANG_DP_SPLIT_FAMILIES else ("lm_head",)
    split = parts_bytes(model, b_w, parts)
    return weights - split / tp + split / ep


def sglang_kv_bytes(visible_bytes: float, mem_fraction_static: float, weights_per_gpu: float,
                    non_torch: float) -> float:
    """SGLang's KV pool per GPU [B] (negative when nothing is left)."""
    return visible_bytes * mem_fraction_static - weights_per_gpu - non_torch


# SGLang's pool for models with Mamba or linear-attention layers (python/sglang/srt/model_executor/
# model_runner_kv_cache_mixin.py, handle_max_mamba_cache): of the memory left for the cache, r / (1 + r) is a pool of
# per-request states (--mamba-full-memory-ratio r, 0.9 by default), max_mamba_cache_size = that / one request's state,
# the rest KV tokens; the states' SSM matrices in float32 (configs/mamba_utils.py mamba2_state_dtype: "Default
# float32"), the conv's past inputs in the model's dtype; and max_running_requests at most max_mamba_cache_size //
# MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO, 3 with the radix cache on (the default). The twenty-third audit, M1: the
# whole pool had been counted as KV, Qwen3-Next-80B on two H200s 3.7 M tokens where SGLang's rule gives 2.0 M, and
# 1,415 requests at 1K tokens where it runs 187.
SGLANG_MAMBA_FULL_MEMORY_RATIO = 0.9
SGLANG_MAMBA_SLOTS_PER_RUNNING = 3
SGLANG_SSM_STATE_BYTES = 4


def _state_share(model: ModelSpec, b_kv: float, tp: int, pp: int) -> float:
    """One request's linear-attention state on one GPU [B] (kv.linear_state_bytes): its shard of the value heads
    (LinearAttentionSpec.state_bytes: SGLang's Mamba2StateShape.create divides linear_num_value_heads by the TP size,
    and keeps Mamba-2's B and C by whole groups), its stage's layers; 0 without such layers. (The thirty-third audit,
    attention 1: it had been split by the softmax layers' KV heads, which stop dividing at TP 2 for Qwen3-Next's 2,
    so SGLang's pool held its state 4x too large a GPU at TP 8: 667 requests at 1K tokens where the rule holds
    2,277.)"""
    return linear_state_bytes(model, b_kv, tp) * stage_layer_fraction(model, pp)


def sglang_state_bytes(model: ModelSpec, b_kv: float, tp: int = 1, pp: int = 1) -> float:
    """One request's linear-attention state on one GPU as SGLang keeps it [B]: its SSM matrices in float32, its conv's
    past inputs in the model's dtype (SGLANG_SSM_STATE_BYTES); 0 without such layers."""
    la = model.linear_attention
    if la is None:
        return 0.0
    fp32 = model.model_copy(update={"linear_attention": la.model_copy(
        update={"recurrent_state_bytes": SGLANG_SSM_STATE_BYTES})})
    return _state_share(fp32, b_kv, tp, pp)


def sglang_speculative_state_bytes(model: ModelSpec, b_kv: float, tp: int = 1, pp: int = 1, max_running: int = 0,
                                   draft_tokens: int = 0) -> float:
    """What SGLang sets aside per GPU, before it splits the pool, for the per-draft-token states speculative decoding
    verifies against [B]: one request's state (sglang_state_bytes) x max_running_requests (of the data-parallel
    attention rank) x speculative_num_draft_tokens (k + 1 for a chain of k drafts), which MambaPool allocates as its
    intermediate_ssm_state_cache and intermediate_conv_window_cache (sgl-project/sglang python/sglang/srt/
    model_executor/model_runner_kv_cache_mixin.py at 001ccef0, handle_max_mamba_cache: "reserve the memory for the
    intermediate mamba states used for spec dec"; in v0.5.9 too, as a backport of it says); 0 without speculation
    or without linear-attention layers. The fortieth audit, hybrid 2: it had been left out, Qwen3-Next-80B's pool
    on two H200s under mtp=3 7.4 GB a GPU larger than SGLang's, 2,211,418 KV tokens where SGLang keeps 1,893,874."""
    return sglang_state_bytes(model, b_kv, tp, pp) * max_running * draft_tokens


def sglang_mamba_held(model: ModelSpec, pool_bytes: float, request_bytes: float, b_kv: float, tp: int = 1,
                      pp: int = 1, reserve_bytes: float = 0.0) -> tuple[float, int, float]:
    """(KV bytes, state slots, requests held) of SGLang's pool of pool_bytes per GPU for a model with linear-attention
    layers: less reserve_bytes (sglang_speculative_state_bytes), SGLANG_MAMBA_FULL_MEMORY_RATIO of it over 1 + that
    ratio to whole states (sglang_state_bytes), the rest KV; requests of request_bytes (sglang_request_bytes, their
    state at the model's dtype) hold their KV in the KV part, their state in one of the slots."""
    state = sglang_state_bytes(model, b_kv, tp, pp)
    r = SGLANG_MAMBA_FULL_MEMORY_RATIO
    pool_bytes -= reserve_bytes
    slots = int(max(pool_bytes, 0.0) * r / (1 + r) // state) if state > 0 else 0
    kv_pool = pool_bytes - slots * state
    kv_request = request_bytes - _state_share(model, b_kv, tp, pp)
    return kv_pool, slots, (min(max(kv_pool, 0.0) / kv_request, slots) if kv_request > 0 else float(slots))


def sglang_kv_tokens(model: ModelSpec, pool_bytes: float, b_kv: float, tp: int = 1, pp: int = 1,
                     hybrid: bool = False) -> int:
    """'KV Cache is allocated. #tokens: N': whole tokens of the cache across the layers one GPU holds (0 without
    softmax attention); with the hybrid sliding-window pool (hybrid: sglang_hybrid_swa), its full layers' tokens,
    pool / (F n_full + r S n_swa) (SGLANG_SWA_FULL_TOKENS_RATIO; the twenty-third audit, M3: the pool over every layer
    at the full size had been given, gpt-oss-120b's 93,342 on an H100 where SGLang holds 103,713 full-layer tokens
    and 82,970 sliding ones)."""
    if pool_bytes <= 0 or model.attention_layers == 0:
        return 0  # SGLang's cell size: DeepSeek sparse attention's plain count, not the fp8 record it stores
    per_token = kv_page_bytes(model, b_kv, tp, pp, record=False) / BLOCK_TOKENS
    if hybrid and model.window_layers:
        per_token *= (model.global_layers + SGLANG_SWA_FULL_TOKENS_RATIO * model.window_layers) / model.attention_layers
    return math.floor(pool_bytes / per_token)


# The model families SGLang runs with its hybrid sliding-window pool (SWAKVPool: the sliding layers' tokens in a pool
# of their own, freed past the window): model_config.py is_hybrid_swa_model's architectures, Llama4ForConditional-
# Generation, GptOssForCausalLM, MiMoV2FlashForCausalLM, Step3p5ForCausalLM and Gemma4ForCausalLM (sgl-project/sglang
# python/sglang/srt/configs/model_config.py). Every other model's sliding layers (Mistral, Gemma 2 and 3, Qwen's
# windows) keep each token in the one pool, as full layers do: the window limits what attention reads, not what the
# pool holds (the sixth audit: 19 sequences of Gemma-3-27B where SGLang's pool holds 5).
SGLANG_HYBRID_SWA_FAMILIES = ("llama4", "llama4_text", "gpt_oss", "mimo_v2_flash", "step3p5", "gemma4", "gemma4_text")


# SGLang's hybrid pool splits the KV bytes between a full-attention pool of N tokens and a sliding pool of r N
# (server_args.py swa_full_tokens_ratio, default 0.8; model_runner_kv_cache_mixin.py _resolve_hybrid_swa_tokens:
# full_tokens = total_memory / (F n_full + r S n_swa)). A request of L tokens holds L in the first and its window's
# tokens in the second, so one request takes (F + r S) max(L, min(L, W) / r) of the bytes (the nineteenth audit, E1:
# the window alone had been charged, 2.3 gpt-oss-120b requests of 131,072 tokens on an H100 where SGLang holds 1).
SGLANG_SWA_FULL_TOKENS_RATIO = 0.8
# GPUs on which SGLang disables the hybrid pool for gpt-oss: its default attention backend there is trtllm_mha
# (server_args.py _handle_model_specific_adjustments, GptOssForCausalLM: is_sm100_supported() -> "trtllm_mha", then
# "Disable hybrid SWA memory for GPT-OSS model with trtllm_mha attention backend")
SGLANG_NO_HYBRID_SWA = {"gpt_oss": datacenter_blackwell}


def sglang_hybrid_swa(model: ModelSpec, cc: str | None) -> bool:
    """Whether SGLang runs this model's sliding layers in its hybrid pool on a part of compute capability `cc`."""
    off = SGLANG_NO_HYBRID_SWA.get(model.family)
    return (bool(model.window_layers) and model.family in SGLANG_HYBRID_SWA_FAMILIES
            and not (off is not None and off(cc)))


def sglang_request_bytes(model: ModelSpec, max_model_len: int, b_kv: float, tp: int = 1, pp: int = 1,
                         hybrid: bool | None = None) -> float:
    """Bytes of SGLang's pool one request of max_model_len tokens takes per GPU: single tokens, no block rounding; a
    sliding layer holds every token unless SGLang runs the model with its hybrid pool (hybrid: sglang_hybrid_swa for
    the GPU; None: the family's default, SGLANG_HYBRID_SWA_FAMILIES), where the pool's split between full and sliding
    tokens decides (SGLANG_SWA_FULL_TOKENS_RATIO)."""
    if hybrid is None:
        hybrid = model.family in SGLANG_HYBRID_SWA_FAMILIES
    if not model.window_layers:
        return _request_bytes(model, max_model_len, b_kv, tp, pp)
    if not hybrid:
        model = model.model_copy(update={"attention": model.attention.model_copy(update={"sliding_window": None})})
        return _request_bytes(model, max_model_len, b_kv, tp, pp)
    r = SGLANG_SWA_FULL_TOKENS_RATIO
    per_token = (kv_bytes_per_token_per_layer(model.attention, b_kv, record=False) * kv_shard_fraction(model, tp)
                 * stage_layer_fraction(model, pp))
    full, sliding = per_token * model.global_layers, per_token * model.window_layers
    held = cached_tokens(max_model_len, model.attention.sliding_window)
    return (full + r * sliding) * max(max_model_len, held / r) + _state_share(model, b_kv, tp, pp)


def _request_bytes(model: ModelSpec, tokens: int, b_kv: float, tp: int, pp: int) -> float:
    """Bytes one request of `tokens` holds per GPU, each sliding layer its window (kv_bytes_per_sequence)."""
    kv = kv_bytes_per_sequence(model, tokens, b_kv, record=False) - linear_state_bytes(model, b_kv)
    return kv * kv_shard_fraction(model, tp) * stage_layer_fraction(model, pp) + _state_share(model, b_kv, tp, pp)


def trtllm_request_bytes(model: ModelSpec, max_model_len: int, b_kv: float, tp: int = 1, pp: int = 1) -> float:
    """Bytes of TensorRT-LLM's cache one request of max_model_len tokens takes per GPU, in whole 32-token blocks,
    each sliding layer its window (TensorRT-LLM's variable sliding-window attention)."""
    tokens = math.ceil(max_model_len / TRTLLM_BLOCK_TOKENS) * TRTLLM_BLOCK_TOKENS
    la = model.linear_attention
    if la is not None and la.recurrent_state_bytes is not None:  # TensorRT-LLM keeps the SSM state in the model's
        # dtype unless told (NemotronHybridConfig.mamba_ssm_cache_dtype "auto"), where vLLM and SGLang take float32
        model = model.model_copy(update={"linear_attention": la.model_copy(update={"recurrent_state_bytes": None})})
    return _request_bytes(model, tokens, b_kv, tp, pp)


def trtllm_kv_bytes(visible_bytes: float, free_fraction: float, weights_per_gpu: float, activations: float,
                    non_torch: float) -> float:
    """TensorRT-LLM's KV cache per GPU: its fraction of what is free after loading [B] (negative: nothing is)."""
    return free_fraction * (visible_bytes - weights_per_gpu - activations - non_torch)


def trtllm_kv_tokens(model: ModelSpec, kv_bytes: float, b_kv: float, tp: int = 1, pp: int = 1) -> int:
    """'Allocated X GiB for max tokens in paged KV cache (N)': whole blocks of 32 tokens (0 without attention)."""
    if kv_bytes <= 0 or model.attention_layers == 0:
        return 0
    block = kv_page_bytes(model, b_kv, tp, pp) / BLOCK_TOKENS * TRTLLM_BLOCK_TOKENS
    return math.floor(kv_bytes / block) * TRTLLM_BLOCK_TOKENS


def trtllm_bench_settings(model: ModelSpec, device_GiB: float, weight_dtype: str, b_kv: float, tp: int, pp: int,
                          input_len: int, output_len: int) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) that `trtllm-bench throughput` picks for a run (calc_engine_setting and
    finetune_setting in tensorrt_llm/bench/build/tuning.py). max_batch_size holds for each of the pp micro-batches,
    so at most pp x max_batch_size requests are in flight: about 4096 however many stages share them.
    device_GiB: one GPU's memory as NVML reports it."""
    quantised, kept = quantised_and_kept_params(model)
    elements, per_element = TRTLLM_BENCH_FORMATS.get(weight_dtype, (1.0, 2.0))
    engine_GiB = (quantised * elements + kept) * per_element / GiB
    kv_heads = max(tp, model.attention.num_kv_heads or model.attention.num_heads)
    head = model.attention.head_dim or model.hidden_size // model.attention.num_heads
    token_GiB = 2 * model.attention_layers * kv_heads * head * b_kv / GiB
    requests = (device_GiB * tp * pp - engine_GiB) * TRTLLM_BENCH_KV_FRACTION / (token_GiB * (input_len + output_len))
    if requests <= 0:  # trtllm-bench refuses an engine its GPUs cannot hold; it had clamped to 64 requests here
        raise KvcalcError(f"trtllm-bench: {model.name}'s engine ({engine_GiB:.1f} GiB at {weight_dtype}) leaves no "
                          f"room for a KV cache on {tp * pp} GPUs of {device_GiB:.1f} GiB")
    batch = min(requests, TRTLLM_BENCH_MAX_REQUESTS) / pp
    tokens = min(batch * (1 + input_len / output_len), TRTLLM_BENCH_MAX_TOKENS)
    return (_round_up(batch, 64, ((256, 32), (1024, 128), (math.inf, 256))),
            _round_up(tokens, 2048, ((4096, 256), (8192, 512), (math.inf, 1024))))


def _round_up(value: float, floor: int, ladder: tuple[tuple[float, int], ...]) -> int:
    """value rounded up to the step of the first (bound, step) of ladder it is under, and at least floor."""
    step = next(step for bound, step in ladder if value < bound)
    return max(floor, step * math.ceil(value / step))
