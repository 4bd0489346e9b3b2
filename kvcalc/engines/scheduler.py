"""How each engine's scheduler fills a step, as data the request-level simulator (kvcalc/serving/simulate.py) runs.

One small class per engine, named after the policy it copies, each citing the source it follows. A policy says:
  mixed        prefill chunks and decodes share a step (vLLM V1, TensorRT-LLM), or a step is either a prefill
               batch or a decode batch, prefill first (SGLang without --enable-mixed-chunk, vLLM V0
               without chunked prefill)
  budget       tokens one step may schedule (max_num_batched_tokens / chunked_prefill_size / max_num_tokens)
  max_seqs     requests running at once (max_num_seqs / max_running_requests / max_batch_size)
  block_size   tokens per KV block (page)
  admission    "on_demand": blocks for the tokens scheduled this step (vLLM's KVCacheManager.allocate_slots);
               "full_length": a request enters only if its prompt and all its output fit (TensorRT-LLM's
               GUARANTEED_NO_EVICT capacity scheduler); "token_ratio": its prompt plus its output clipped at
               4,096 tokens, in full, beside the running requests' outstanding outputs (clipped the same way)
               reserved at new_token_ratio (SGLang's PrefillAdder)
  multi_step   decode steps run per scheduler call (vLLM --num-scheduler-steps, 0.6-0.7): a queued request waits
               for the block to end; 1 elsewhere
  ahead        the scheduler runs one step ahead of the GPU (vLLM's async scheduling, SGLang's overlap scheduler,
               TensorRT-LLM's overlap scheduler): it fills step n + 1 while step n runs, so a request that arrives
               during step n enters step n + 2, unless the scheduler had nothing to run (schedules_ahead)
  preempt      what happens when a decode finds no free block: "recompute" (vLLM: the last request in the
               running list loses its blocks and goes to the front of the queue), "retract" (SGLang: the same,
               and new_token_ratio is raised), or None (cannot happen under full-length admission)
"""

from __future__ import annotations

from dataclasses import dataclass

from kvcalc.errors import KvcalcError
from kvcalc.formulas.engine_memory import SGLANG_MAMBA_SLOTS_PER_RUNNING, TRTLLM_BLOCK_TOKENS


@dataclass(frozen=True)
class SchedulerPolicy:
    name: str
    mixed: bool
    budget: int
    max_seqs: int
    block_size: int
    admission: str
    preempt: str | None
    init_new_token_ratio: float = 1.0
    min_new_token_ratio: float = 1.0
    new_token_ratio_decay: float = 0.0
    multi_step: int = 1
    # the most tokens of one prompt a step takes: pooled data-parallel replicas (--ep) share a budget of dp x each
    # replica's, but a prompt lives in one replica and takes at most that replica's budget (None: the whole budget)
    max_piece: int | None = None
    # vLLM from 0.19 (PR #37307, scheduler_reserve_full_isl on by default): a waiting request enters only where its
    # whole sequence fits (KVCacheManager.allocate_slots(..., full_sequence_must_fit=True)), not its first chunk
    full_sequence_admission: bool = False
    # the scheduler fills step n + 1 while step n runs (schedules_ahead): an arrival during step n waits for n + 2
    ahead: bool = False
    # a prompt piece the token budget cuts is rounded down to a multiple of this (TensorRT-LLM: tokens_per_block);
    # 1: the exact remainder, as vLLM V1 and SGLang take it
    chunk_unit: int = 1
    # a preempted request's full blocks stay in the prefix cache until reused (vLLM V1, prefix caching on by default:
    # KVCacheManager.free puts them back tail-first, BlockPool keeps their hashes until get_new_blocks evicts them,
    # and get_computed_blocks finds them when the request is scheduled again): it recomputes only what was evicted
    preempted_prefix_cached: bool = False


VLLM_FULL_SEQUENCE_ADMISSION = (0, 19)  # v0.19.0's release notes: "Schedule requests based on full input sequence
# length (#37307)"; vllm/config/scheduler.py scheduler_reserve_full_isl: bool = True


def vllm_v1(budget: int = 8192, max_seqs: int = 1024, block_size: int = 16) -> SchedulerPolicy:
    """vLLM V1's Scheduler.schedule() (vllm/v1/core/sched/scheduler.py): the running requests first, in order, each
    taking min(its new tokens, what is left of max_num_batched_tokens) (decodes 1, or 1 + k with speculation; a
    partly prefilled prompt its remainder: chunked prefill); when KVCacheManager.allocate_slots fails, the last
    running request is preempted (`self.running.pop()`, num_computed_tokens = 0, prepended to the waiting queue) and
    recomputed later, less the full blocks the prefix cache still holds of it (preempted_prefix_cached); then, if
    nothing was preempted, waiting requests in FCFS order while the budget lasts and len(running) < max_num_seqs.
    Defaults: vllm/engine/arg_utils.py get_batch_defaults, OPENAI_API_SERVER on a GPU with >= 70 GiB that is not an A100: max_num_batched_tokens 8192, max_num_seqs 1024 (2048 / 256 otherwise);
    block_size 16 (vllm/config/cache.py)."""
    return SchedulerPolicy("vllm-v1", mixed=True, budget=budget, max_seqs=max_seqs, block_size=block_size,
                           admission="on_demand", preempt="recompute", preempted_prefix_cached=True)


def vllm_v0(budget: int = 2048, max_seqs: int = 256, block_size: int = 16) -> SchedulerPolicy:
    """vLLM V0's Scheduler._schedule_default (vllm/core/scheduler.py, releases before 0.8, chunked prefill off): a
    step is either prompts or decodes, prompts first: waiting requests are prefilled whole while they fit
    max_num_batched_tokens (default max(max_model_len, 2048), vllm/config.py SchedulerConfig) and max_num_seqs (256),
    and the running requests decode only in steps without prompts; blocks are allocated as tokens come and a decode
    that finds none preempts by recomputation (kvcalc drops the requests with the most output left first, where V0
    drops the newest). V0 turned chunked prefill on by itself above a 32K context (EngineArgs, use_long_context):
    then its schedule is vllm_v1's."""
    return SchedulerPolicy("vllm-v0", mixed=False, budget=budget, max_seqs=max_seqs, block_size=block_size,
                           admission="on_demand", preempt="recompute")


def sglang_prefill_first(budget: int = 8192, max_seqs: int = 4096, block_size: int = 1) -> SchedulerPolicy:
    """SGLang's Scheduler.get_next_batch_to_run (python/sglang/srt/managers/scheduler.py): a prefill (extend) batch
    whenever get_new_batch_prefill finds a waiting request that fits, else one decode step of every running request
    (prefill priority; prefill and decode mix only with --enable-mixed-chunk). PrefillAdder
    (python/sglang/srt/managers/schedule_policy.py) admits a request while its prompt plus min(max_new_tokens,
    CLIP_MAX_NEW_TOKENS = 4,096), in full, fit beside the running requests' outstanding outputs, each clipped at
    4,096 and reserved at new_token_ratio (add_one_req, _get_running_request_total_token_offset; a prompt cut at
    chunked_prefill_size holds only its chunk until its last, add_chunked_req); the ratio starts at 0.7
    (SGLANG_INIT_NEW_TOKEN_RATIO) and returns there whenever the scheduler idles (self_check_during_idle), decays by
    (0.7 - 0.7 x 0.14) / 600 a decode step to 0.7 x 0.14 (global_config: default_min_new_token_ratio_factor 0.14,
    default_new_token_ratio_decay_steps 600); a decode that finds the pool full retracts requests
    (ScheduleBatch.retract_decode: the fewest tokens generated first, until the kept requests' next token fits,
    check_decode_mem; their KV is freed, they go back to the queue) and the ratio becomes
    retract_decode's estimate, (the kept requests' tokens decoded + 20 x their count) / their max_new_tokens, at
    most 1 (global_config.retract_decode_steps 20).
    page_size 1 (server_args.py default); chunked_prefill_size 8192 on an 80 GB GPU (server_args.py
    _handle_gpu_memory_settings); max_running_requests: sglang_max_running (the simulator passes it)."""
    init = 0.7
    floor = init * 0.14
    return SchedulerPolicy("sglang", mixed=False, budget=budget, max_seqs=max_seqs, block_size=block_size,
                           admission="token_ratio", preempt="retract", init_new_token_ratio=init,
                           min_new_token_ratio=floor, new_token_ratio_decay=(init - floor) / 600)


def trtllm_guaranteed_no_evict(budget: int = 8192, max_seqs: int = 2048,
                               block_size: int = TRTLLM_BLOCK_TOKENS) -> SchedulerPolicy:
    """TensorRT-LLM's in-flight batching (cpp/tensorrt_llm/batch_manager/capacityScheduler.cpp
    GuaranteedNoEvictScheduler, and the PyTorch executor's tensorrt_llm/_torch/pyexecutor/scheduler.py
    SimpleScheduler = BindCapacityScheduler + BindMicroBatchScheduler): a request is admitted only when the KV
    blocks for its prompt and its whole max_tokens output are free, so nothing is ever evicted; each step the
    micro-batch scheduler takes the generation requests (one token each) and context chunks up to max_num_tokens
    (context chunking), at most max_batch_size requests. Defaults: llmapi/llm_args.py max_batch_size 2048,
    max_num_tokens 8192; tokens_per_block 32 (KvCacheConfig). Context chunking is llm_args.py's
    enable_chunked_prefill, off by default (a prompt past max_num_tokens is then refused): this policy assumes it on,
    as plan's launch sets it, and serve's output says so (the fourteenth audit, S10). A context chunk the budget cuts
    is rounded down to whole KV blocks (microBatchScheduler.cpp setCtxRequestsChunkSize<kFIRST_COME_FIRST_SERVED>:
    actualChunkSize / chunkUnitSize * chunkUnitSize, the unit tokens_per_block; the thirtieth audit, S1)."""
    return SchedulerPolicy("trtllm", mixed=True, budget=budget, max_seqs=max_seqs, block_size=block_size,
                           admission="full_length", preempt=None, chunk_unit=block_size)



def check_trtllm_step(engine: str, step_tokens: int) -> None:
    """A TensorRT-LLM step budget under one KV block: a prompt it cuts is rounded down to whole blocks
    (trtllm_guaranteed_no_evict), so nothing of it would ever run (the thirty-first audit's review, 2: serve's waves
    had looped for ever at --step-tokens 16)."""
    if engine == "trtllm" and step_tokens < TRTLLM_BLOCK_TOKENS:
        raise KvcalcError(f"--step-tokens: {step_tokens:,} is under TensorRT-LLM's {TRTLLM_BLOCK_TOKENS}-token KV block, "
                          f"the least it cuts a prompt to: give at least {TRTLLM_BLOCK_TOKENS}")

# SGLang's CLIP_MAX_NEW_TOKENS (python/sglang/srt/managers/schedule_policy.py, environment variable
# SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION): the most output tokens PrefillAdder reserves for one request, admitted or
# running (the twelfth audit, S2)
SGLANG_CLIP_MAX_NEW_TOKENS = 4096

# SGLang's global_config.retract_decode_steps: the decode steps a retraction's new ratio reserves for each request
# kept (python/sglang/global_config.py, read by ScheduleBatch.retract_decode)
SGLANG_RETRACT_DECODE_STEPS = 20


def sglang_ratio_after_retraction(decoded, max_new) -> float:
    """SGLang's new_token_ratio after a retraction: ScheduleBatch.retract_decode's estimate over the requests kept,
    min(1, (their tokens decoded + retract_decode_steps x their count) / their max_new_tokens), which the scheduler
    takes as its ratio (update_running_batch). decoded, max_new: the kept requests' numbers (arrays or lists)."""
    return min(1.0, (float(sum(decoded)) + SGLANG_RETRACT_DECODE_STEPS * len(decoded)) / max(float(sum(max_new)), 1.0))


POLICIES = {"vllm": vllm_v1, "sglang": sglang_prefill_first, "trtllm": trtllm_guaranteed_no_evict,
            "vllm-v0": vllm_v0}


def vllm_server_defaults(gpu_name: str, visible_GiB: float, release: tuple[int, int]) -> tuple[int | None, int]:
    """(max_num_batched_tokens, max_num_seqs) that `vllm serve` picks when neither flag is given (None: the policy's
    default budget): from 0.8 (V1 by default) formulas/engine_memory.py vllm_default_batching, the rule capacity and
    serve's closed form follow (8192 and 1024 on a GPU showing >= 70 GiB, 16384 from 0.28 on one showing >= 160,
    2048 and 256 on others and, from 0.9, on A100s). Before 0.8 (V0) max_num_seqs was 256 (vllm/config.py
    SchedulerConfig); V0 ran prompts whole, prefill first, unless chunked prefill was on, which this policy does not
    model: its budget is left at the policy's default."""
    if release < (0, 8):
        return None, 256
    from kvcalc.formulas.engine_memory import vllm_default_batching

    return vllm_default_batching(visible_GiB, gpu_name, release)


# SGLang's chunked_prefill_size by the GPU's memory (formulas/engine_memory.py sglang_memory_tier) is the rule of
# server_args.py _handle_gpu_memory_settings from PR #10975 (merged 2025-09-27), first released in v0.5.3 (bumped
# 2025-10-06): the first release, and the first month of releases, that take it. Earlier releases sized it by other
# thresholds (below).
SGLANG_CHUNK_BY_MEMORY_SINCE = ((0, 5, 3), (2025, 10))
# Before it, from PR #2268 (2024-11-29, in v0.4.0): 2,048 on a GPU showing under 25,000 MiB, else 8,192 (server_args.py
# __post_init__: `if gpu_mem is not None and gpu_mem < 25_000: self.chunked_prefill_size = 2048`); earlier, 8,192
SGLANG_SMALL_GPU_CHUNK_SINCE = ((0, 4, 0), (2024, 12))
SGLANG_SMALL_GPU_MIB = 25_000
# Under --enable-dp-attention each rank's scheduler takes chunked_prefill_size // dp_size (server_args.py
# _handle_data_parallelism, after _handle_gpu_memory_settings has set it), from PR #4390 (merged 2025-03-13, "Support
# TP != DP"), taken here as first released in v0.4.4; before it, dp_size was tp_size and the size was halved
# (`self.chunked_prefill_size // 2`).
SGLANG_DP_CHUNK_SPLIT_SINCE = ((0, 4, 4), (2025, 4))


def release_before(release_text: str | None, since: tuple[tuple[int, int, int], tuple[int, int]]) -> bool:
    """Whether a run's release ('0.4.3.post2') or, failing one, its date ('unknown (2025-09)') comes before `since`,
    (the first release, the first month); False for None, 'latest' or a text naming neither. A release band's name
    (engines/overhead.py: '0.4+', '0.1-0.7') stands for the band's newest release, as its overheads and kernel era
    do (the thirty-sixth audit, releases 1: SGLang's '0.4+' had been read as release 0.4.0, so a step's prefill chunk
    was 0.4's, TTFT 3x the band's own release)."""
    from kvcalc.engines.kernel_eras import release3, run_month
    from kvcalc.engines.overhead import band_named

    if named := band_named(None, release_text or ""):
        return (*named.last, 999) < since[0]
    release, month = release3(release_text or ""), run_month(release_text or "")
    if release is not None:
        return release < since[0]
    return month is not None and month < since[1]


def sglang_rank_chunk(server_chunk: int, dp: int, release_text: str | None = None) -> int:
    """The prefill tokens one of SGLang's dp data-parallel attention ranks schedules a step, from the server's
    chunked_prefill_size: divided by dp (halved before SGLANG_DP_CHUNK_SPLIT_SINCE); the whole of it without data-
    parallel attention."""
    if dp <= 1:
        return server_chunk
    return max(1, server_chunk // (2 if release_before(release_text, SGLANG_DP_CHUNK_SPLIT_SINCE) else dp))


def sglang_server_budget(memory_MiB: float, release_text: str | None = None, dp: int = 1) -> int:
    """The prefill tokens one SGLang scheduler (one of dp data-parallel attention ranks) takes a step when
    --chunked-prefill-size is not given: the server's size by the GPU's memory as SGLang reads it (memory_MiB: the
    spec's device_total_MiB, nvidia-smi's total on NVIDIA parts) (sglang_memory_tier: 2,048 on a 24 GB
    card, 4,096 on an L40S, 8,192 on an H100 or H200, 16,384 on a B200 or an MI300X; before
    SGLANG_CHUNK_BY_MEMORY_SINCE 2,048 under 25,000 MiB and 8,192 above, and before SGLANG_SMALL_GPU_CHUNK_SINCE
    8,192), shared by the ranks (sglang_rank_chunk). release_text: '0.5.14', 'v0.5.3.post1', a ledger row's 'unknown
    (2025-11)'; None or 'latest': today's. The twentieth audit, R4: every GPU had been given the H100's 8,192, and
    each of 8 ranks 8,192 where SGLang gives it 1,024."""
    from kvcalc.formulas.engine_memory import sglang_memory_tier

    if release_text is not None and not isinstance(release_text, str):  # the API's engine_version (the twenty-third
        # audit, F4: 5 or 0.4 had raised a TypeError here, before anything checked it)
        raise KvcalcError(f"--engine-version: expected a release such as 0.5.3, or latest, got {release_text!r}")
    mib = memory_MiB
    if release_before(release_text, SGLANG_SMALL_GPU_CHUNK_SINCE):
        server = 8192
    elif release_before(release_text, SGLANG_CHUNK_BY_MEMORY_SINCE):
        server = 2048 if mib < SGLANG_SMALL_GPU_MIB else 8192
    else:
        server = sglang_memory_tier(mib)[0]
    return sglang_rank_chunk(server, dp, release_text)


# Where a disaggregated request's first token reaches the client from (serving/simulate.py Workload.first_token; the
# twenty-third audit, D3 and D4): "step", vLLM's decode instance computes the prompt's last token again
# (Scheduler._update_waiting_for_remote_kv sets num_computed_tokens one short) and streams its first step's token;
# "admission", SGLang's decode server streams the prefill's token as its scheduler takes the request in
# (process_prebuilt), and TensorRT-LLM's generation server as its scheduler takes the request in, once the KV it
# reserved blocks for has arrived (py_executor.py: _prepare_disagg_gen_transmission_complete, then "Return the first
# token to the client", _handle_first_token_response; its disaggregated front end, openai_disagg_service.py, streams
# the generation server's response: the thirty-ninth audit, disagg 1, where "arrival", the token handed on with the
# KV, had put a full decode pool's 50 s wait in TPOT and left TTFT at the prefill's 24 ms); "arrival" stays for a
# workload whose first token is out with its KV. The roofline (engine None) runs vLLM's scheduler.
DISAGGREGATED_FIRST_TOKEN = {"vllm": "step", "sglang": "admission", "trtllm": "admission"}


def disaggregated_first_token(engine: str | None) -> str:
    """DISAGGREGATED_FIRST_TOKEN's entry for `engine` (vllm, sglang, trtllm, or a scheduler policy's name such as
    vllm-v1); vLLM's for the roofline and anything else."""
    return DISAGGREGATED_FIRST_TOKEN.get((engine or "vllm").split("-")[0], "step")


# SGLang's max_running_requests under EAGLE-family speculation (EAGLE, EAGLE3, STANDALONE; NEXTN is renamed EAGLE)
# where --max-running-requests is not given: server_args.py _handle_speculative_decoding, "Max running requests is
# reset to 48 for speculative decoding" (the fourteenth audit, S7)
SGLANG_SPECULATIVE_RUNNING = 48
SGLANG_SPECULATIVE = ("eagle", "mtp", "draft")  # kvcalc's methods SGLang runs as EAGLE, EAGLE (NEXTN), STANDALONE


def sglang_max_running(pool_tokens: float, context_len: int, speculate_method: str | None = None,
                       state_slots: int | None = None) -> int:
    """The requests one SGLang scheduler (one data-parallel attention rank) runs at once without
    --max-running-requests: ModelRunner's resolve_max_num_reqs, max(min(int(pool / context_len x 512), 4096), 2048)
    and at most pool // 2 (mem_cache/kv_cache_configurator.py; the fourteenth audit, S8: 4,096 had been taken for
    every model), or 48 under EAGLE-family speculation (SGLANG_SPECULATIVE_RUNNING); with linear-attention layers at
    most state_slots // 3 (formulas/engine_memory.py SGLANG_MAMBA_SLOTS_PER_RUNNING; the twenty-third audit, M1)."""
    if speculate_method in SGLANG_SPECULATIVE:
        return SGLANG_SPECULATIVE_RUNNING
    estimated = max(min(int(pool_tokens / max(context_len, 1) * 512), 4096), 2048)
    if state_slots is not None:
        estimated = min(estimated, state_slots // SGLANG_MAMBA_SLOTS_PER_RUNNING)
    return max(1, min(estimated, int(pool_tokens) // 2))


def state_slot_cap(engine: str, running: int, state_slots: int | None) -> int:
    """The requests a server launched to run `running` at once does run: SGLang clamps even a given
    --max-running-requests to its Mamba slots // 3 (model_runner_kv_cache_mixin.py init_memory, after the flag's
    value: `max_num_reqs = min(max_num_reqs, max_mamba_cache_size // ratio)`; the thirty-eighth audit, capacity 1:
    plan had sized and launched 250 in flight where SGLang runs 93). Later trees size the slots from the flag
    (_auto_mamba_demand_size), which kvcalc's memory rule (slots from mamba_full_memory_ratio) does not model."""
    if engine == "sglang" and state_slots:
        return min(running, state_slots // SGLANG_MAMBA_SLOTS_PER_RUNNING)
    return running


def running_cap(engine: str, gpu_name: str, visible_GiB: float, release: tuple[int, int], *, pool_tokens: float,
                context_len: int, speculate_method: str | None = None, given: int | None = None,
                state_slots: int | None = None) -> int:
    """The requests one replica's scheduler (one data-parallel group's) runs at once by the engine's own defaults
    (or `given`, its max_num_seqs / max_running_requests / max_batch_size): vLLM's max_num_seqs for the GPU and release
    (vllm_server_defaults; auto runs vLLM's scheduler), SGLang's sglang_max_running, TensorRT-LLM's max_batch_size
    2,048; none for the roofline. The rest wait in its queue (the fourteenth audit, S9: serve's closed form had decoded 507 a
    step where vLLM on an L40S runs 256)."""
    if given is not None:
        return state_slot_cap(engine, given, state_slots)
    if engine not in (*VLLM_SCHEDULED, "sglang", "trtllm"):  # the roofline: no engine's scheduler limits it
        from kvcalc.checks import MAX_BATCH

        return MAX_BATCH
    if engine == "sglang":
        return sglang_max_running(pool_tokens, context_len, speculate_method, state_slots)
    if engine == "trtllm":
        return trtllm_guaranteed_no_evict().max_seqs
    return vllm_server_defaults(gpu_name, visible_GiB, release)[1]


# gpt-fast's generate.py, in words (serve, the simulator, capacity and plan say why it is not a deployment)
GPT_FAST_IS_NO_SERVER = "a batch-1 generation script (no server, no batching of requests)"


# the engines whose steps the simulator and serve's closed form schedule as vLLM V1 does, with `vllm serve`'s default
# step budget and max_num_seqs for the GPU. The roofline runs vLLM's scheduler too, but with no engine's limits: it is
# the datasheet's bound (the ledgers' baseline column), so it keeps the policy's own defaults and no running cap
VLLM_SCHEDULED = ("vllm", "auto")


# vLLM's async scheduling (vllm/v1/core/sched/async_scheduler.py, PR #19970; EngineCore.step_with_batch_queue with
# two batches in flight schedules step n + 1 as soon as step n is submitted) is on by default from v0.14.0: PR #27614
# "[Core] Enable async scheduling by default", merged 2025-12-29, after v0.13.0 (SchedulerConfig.async_scheduling None,
# resolved to True by VllmConfig unless an option is incompatible). With EAGLE or MTP speculation (PR #31998) and
# under pipeline parallelism (PR #32359), both merged in January 2026, kvcalc takes it from the release after.
VLLM_ASYNC_SCHEDULING = (0, 14)
VLLM_ASYNC_WITH_SPECULATION = (0, 15)
# The first release, and the first month of releases, whose scheduler runs a step ahead by default, for runs named by
# a release or only by a date (the serving ledger's rows): vLLM above; SGLang's overlap scheduler, PR #2067 "Enable
# overlap by default" (merged 2024-11-19; its author: "Median TTFT becomes higher ... because we delayed the processing
# of the first batch in favor of launching the kernels for the next batch first"), the default of v0.4.0
# (engines/overhead.py's 0.4+ band); TensorRT-LLM's PyTorch back end, PR #4174 "Enable scheduling overlap by default"
# (May 2025; enable_overlap_scheduler renamed disable_overlap_scheduler), first in 0.20.0.
AHEAD_SINCE = {"vllm": (VLLM_ASYNC_SCHEDULING, (2026, 1)), "sglang": ((0, 4), (2024, 12)),
               "trtllm": ((0, 20), (2025, 6))}


def schedules_ahead(engine: str, *, release: tuple[int, int] | None = None, band: str | None = None, pp: int = 1,
                    speculation: str | None = None) -> bool:
    """Whether `engine`'s scheduler runs one step ahead of the GPU by default, so that a request arriving during
    step n enters step n + 2 (SchedulerPolicy.ahead). engine: vllm, sglang or trtllm (the profile's); release: vLLM's
    (major, minor); band: TensorRT-LLM's release band (engines/overhead.py: engine or pytorch); speculation: the
    --speculate method (draft, eagle, medusa, mtp) or None. Not under pipeline parallelism: the simulator's pipeline
    takes an arrival into the next micro-batch instead (SGLang and TensorRT-LLM turn overlap off there).
      vLLM     from 0.14 (VLLM_ASYNC_SCHEDULING); with EAGLE or MTP speculation from 0.15; never with a draft model,
               Medusa or the host's n-gram lookup, which VllmConfig's default resolution leaves off (a draft model's
               only from PR #48341, July 2026, in no release kvcalc pins)
      SGLang   the overlap scheduler, the default from v0.4 (Scheduler.event_loop_overlap); server_args.py turns it
               off under speculative decoding (unless SGLANG_ENABLE_SPEC_V2 is set) and pipeline parallelism
      TensorRT-LLM  the PyTorch back end's overlap scheduler (llm_args.py TorchLlmArgs.disable_overlap_scheduler
               False; PyExecutor._executor_loop_overlap), with MTP, EAGLE-3 and draft models, not n-gram
               (_torch/speculative/interface.py support_overlap_scheduler); not the TensorRT engine's C++ runtime"""
    if pp > 1:
        return False
    if engine == "vllm":
        if release is None or speculation in ("draft", "medusa", "ngram"):
            return False
        return release >= (VLLM_ASYNC_WITH_SPECULATION if speculation else VLLM_ASYNC_SCHEDULING)
    if engine == "sglang":
        return speculation is None
    if engine == "trtllm":
        return band == "pytorch" and speculation not in ("medusa", "ngram")
    return False


def ahead_before_default(engine: str, release_text: str) -> bool | None:
    """False where a run's release ('0.3.0', '0.17.post1.dev') or, failing one, its date ('unknown (2025-09)')
    comes before `engine` scheduled a step ahead by default (AHEAD_SINCE); None otherwise (the engine's own rule,
    schedules_ahead, decides)."""
    since = AHEAD_SINCE.get(engine)
    if since is None:
        return None
    return False if release_before(release_text, ((*since[0], 0), since[1])) else None


def scheduler_policy(engine: str, *, budget: int | None = None, max_seqs: int | None = None) -> SchedulerPolicy:
    """The policy of `engine` (vllm, sglang, trtllm; auto and roofline run vLLM's), with its defaults unless given."""
    make = POLICIES.get(engine, vllm_v1 if engine in (*VLLM_SCHEDULED, "roofline") else None)
    if make is None:
        why = (f" is {GPT_FAST_IS_NO_SERVER}, with no scheduler to simulate" if engine == "gpt-fast"
               else f": no scheduler policy for {engine!r}")
        raise KvcalcError(f"--engine {engine}{why}; expected one of vllm, sglang, trtllm")
    kwargs = {}
    if budget is not None:
        kwargs["budget"] = budget
    if max_seqs is not None:
        kwargs["max_seqs"] = max_seqs
    return make(**kwargs)
