"""The fortieth hostile audit, area `hybrid` (docs/validation.md, "Fortieth hostile audit"): sliding, chunked,
linear-attention and Mamba layers beside softmax attention. Each test is named after the finding it holds fixed and
asserts a cited engine rule worked by hand, or a figure the audit worked by hand from that rule."""

import json
import warnings

import pytest

import kvcalc.formulas.engine_memory as em
from kvcalc.specs.catalog import load_model

POOL_H200_MTP2 = 50_872_249_313  # serve's kv_pool_bytes_per_gpu below: Qwen3-Next on two H200s, vLLM, mtp=2


def _serve(*args, **kw):
    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kvcalc.serve(*args, **kw)


def test_40_hybrid1_a_gated_deltanet_state_keeps_k_more_conv_inputs_and_the_mtp_layer_joins_the_full_kind():
    """hybrid 1: under MTP with k = 2 at TP 2, vLLM's Gated DeltaNet conv keeps K - 1 + k = 5 past inputs, not 3
    (vllm-project/vllm mamba_utils.py gated_delta_net_state_shape: conv_kernel_size - 1 + num_spec; qwen3_next.py
    passes num_spec = num_speculative_tokens), and the MTP layer is a 13th full-attention layer
    (qwen3_next_mtp.py: Qwen3NextDecoderLayer(layer_type="full_attention")) when the kinds are grouped
    (kv_cache_utils.py _get_kv_cache_groups_uniform_page_size). By hand, a GPU's state a layer is 16 value heads x
    128 x 128 x 2 B + 5 x 8,192 / 2 channels x 2 B = 524,288 + 40,960 = 565,248 B; a full layer's token 1 KV head x
    256 x 2 x 2 B = 1,024 B; the block 16 x ceil(565,248 / 16,384) = 560 tokens. 13 full against 36 state layers:
    36 >= 1.5 x 13, so groups of 13, the state kind in ceil(36 / 13) = 3. kvcalc had paged 544-token blocks in
    12-layer groups."""
    m = load_model("qwen3-next-80b-a3b")
    assert em.vllm_state_bytes(m, tp=2, speculative_tokens=2) == 16 * 128 * 128 * 2 + 5 * 4096 * 2 == 565_248
    layout = em.vllm_layout(m, 2.0, tp=2, speculative_tokens=2, draft_layers=1)
    assert layout.block_tokens == 16 * -(-565_248 // (16 * 1024)) == 560
    assert layout.group_layers == 13 and layout.groups == {"full": 1, "state": 3}
    # without speculation the layout stays the thirty-third audit's: 544-token blocks, 12-layer groups
    plain = em.vllm_layout(m, 2.0, tp=2)
    assert (plain.block_tokens, plain.group_layers, plain.groups) == (544, 12, {"full": 1, "state": 3})


def test_40_hybrid1_serve_holds_the_requests_vllm_pages_with_the_mtp_layer_in_its_blocks():
    """hybrid 1: `serve -m qwen3-next-80b-a3b -g h200 --tp 2 -e vllm -i 4000 --output-len 96 --speculate mtp=2`. By
    hand from the pool serve sizes (50,872,249,313 B a GPU): floor(pool / (13 x 560 x 1,024)) = 6,824 blocks; a
    request of 4,096 tokens takes ceil(4,096 / 560) = 8 full blocks and, in 'align' (vLLM 0.30's default), 2 + k = 4
    blocks in each of the 3 state groups: 20; 6,824 / 20 = 341 requests. kvcalc had printed 368 (12-layer groups of
    544-token blocks, the draft's KV added beside them)."""
    r = _serve("qwen3-next-80b-a3b", "h200", tp=2, engine="vllm", input_len=4000, output_len=96, concurrency=64,
               speculate="mtp=2,alpha=0.875")  # the depth past its one MTP layer needs an acceptance
    # (the fortieth audit, speculate 1); the pool does not depend on it
    assert r["kv_pool_bytes_per_gpu"] == POOL_H200_MTP2
    blocks = POOL_H200_MTP2 // (13 * 560 * 1024)
    assert blocks == 6_824
    assert r["max_concurrency"] == blocks // (8 + 3 * (2 + 2)) == 341
    # without speculation nothing moves: the thirty-third audit's 561
    assert _serve("qwen3-next-80b-a3b", "h200", tp=2, engine="vllm", input_len=4000, output_len=96,
                  concurrency=64)["max_concurrency"] == 561


def test_40_hybrid1_an_eagle_layer_pads_gpt_oss_sliding_kind_as_vllm_says():
    """hybrid 1, the same grouping for a model without state layers: vLLM's own comment in
    _get_kv_cache_groups_uniform_page_size, "A typical example is gpt-oss-20b + eagle, with 12 sw + 13 full. We pad it
    to (13 sw, 13 full)". kvcalc had grouped gpt-oss-20b's 12 + 12 layers in groups of 12 and added the draft's KV
    beside them; gpt-oss-120b's 18 + 18 + 1 likewise take groups of 19 (vLLM PR #29303: "18 sliding + 1 padding")."""
    for name, half in (("gpt-oss-20b", 12), ("gpt-oss-120b", 18)):
        m = load_model(name)
        layout = em.vllm_layout(m, 2.0, draft_layers=1)
        assert layout.group_layers == half + 1 and layout.groups == {"full": 1, "window": 1}
        assert em.vllm_layout(m, 2.0).group_layers == half


def test_40_hybrid2_sglang_sets_the_per_draft_token_states_aside_before_its_split():
    """hybrid 2: SGLang's handle_max_mamba_cache (sgl-project/sglang model_runner_kv_cache_mixin.py at 001ccef0)
    takes mamba_cache_per_req x max_running_requests x speculative_num_draft_tokens out of the memory before the
    0.9 / 1.9 split. Qwen3-Next at TP 2: one request's state a GPU is 36 x (16 x 128 x 128 x 4 B + 3 x 4,096 x 2 B)
    = 38,633,472 B; under mtp=3 (4 draft tokens) and SGLang's 48 running requests the reserve is 7,417,626,624 B.
    On the audit's pool of 51,628,901,755 B a GPU: 44,211,275,131 B are split, floor(x 0.9 / 1.9 / 38,633,472) = 542
    slots, 44,211,275,131 - 542 x 38,633,472 = 23,271,933,307 B of KV at 12 layers x 1,024 B = 12,288 B a token:
    1,893,874 tokens, where kvcalc had held 2,211,418 in 633 slots."""
    m = load_model("qwen3-next-80b-a3b")
    per_request = 36 * (16 * 128 * 128 * 4 + 3 * 4096 * 2)
    assert em.sglang_state_bytes(m, 2.0, tp=2) == per_request == 38_633_472
    reserve = em.sglang_speculative_state_bytes(m, 2.0, tp=2, max_running=48, draft_tokens=4)
    assert reserve == 48 * 4 * per_request == 7_417_626_624
    kv, slots, _ = em.sglang_mamba_held(m, 51_628_901_755, per_request, 2.0, tp=2, reserve_bytes=reserve)
    assert slots == 542 == int((51_628_901_755 - reserve) * 0.9 / 1.9 // per_request)
    assert kv == 51_628_901_755 - reserve - 542 * per_request == 23_271_933_307
    assert em.sglang_kv_tokens(m, kv, 2.0, tp=2) == 23_271_933_307 // (12 * 1024) == 1_893_874


def test_40_hybrid2_serve_under_sglang_mtp_holds_the_requests_its_pool_holds():
    """hybrid 2: `serve -m qwen3-next-80b-a3b -g h200 --tp 2 -e sglang -i 131072 --output-len 256 --speculate mtp=3`:
    the audit's hand count from SGLang's rule is 13 requests of 131,328 tokens (kvcalc had said 16); the engine rule
    reports the reserve it took, and a pool without speculation takes none."""
    r = _serve("qwen3-next-80b-a3b", "h200", tp=2, engine="sglang", input_len=131072, output_len=256,
               concurrency=48, speculate="mtp=3,alpha=0.875")  # an acceptance: speculate 1
    assert r["max_concurrency"] == 13
    from kvcalc.engines.memory import engine_memory_rule
    from kvcalc.estimator import precision
    from kvcalc.specs.catalog import load_gpu

    m, hw = load_model("qwen3-next-80b-a3b"), load_gpu("h200")
    kw = dict(context=4096, memory_utilization=0.9)
    spec = engine_memory_rule("sglang", m, hw, precision("bf16", "bf16"), 2, speculate_method="mtp",
                              speculative_tokens=3, **kw)
    assert spec["speculative_state_bytes"] == 7_417_626_624
    given = engine_memory_rule("sglang", m, hw, precision("bf16", "bf16"), 2, speculate_method="mtp",
                               speculative_tokens=3, max_num_seqs=16, **kw)
    assert given["speculative_state_bytes"] == 16 * 4 * 38_633_472  # --max-running-requests 16
    assert engine_memory_rule("sglang", m, hw, precision("bf16", "bf16"), 2, **kw)["speculative_state_bytes"] == 0


FALCON_H1_7B = {  # tiiuae/Falcon-H1-7B-Instruct config.json, the fields kvcalc reads
    "architectures": ["FalconH1ForCausalLM"], "model_type": "falcon_h1", "hidden_size": 3072,
    "intermediate_size": 12288, "num_hidden_layers": 44, "num_attention_heads": 12, "num_key_value_heads": 2,
    "head_dim": 128, "vocab_size": 130049, "max_position_embeddings": 262144, "tie_word_embeddings": False,
    "mamba_d_ssm": 3072, "mamba_n_heads": 24, "mamba_d_head": 128, "mamba_d_state": 256, "mamba_n_groups": 1,
    "mamba_d_conv": 4, "mamba_expand": 2, "mamba_chunk_size": 128, "mamba_rms_norm": True, "mamba_conv_bias": True,
    "mamba_proj_bias": False, "projectors_bias": False, "hidden_act": "silu", "rms_norm_eps": 1e-5,
    "rope_theta": 1e11, "torch_dtype": "bfloat16"}


@pytest.mark.parametrize("tp, per_layer, total", [
    (1, 3 * (3072 + 2 * 256) + 24 * 128 * 256, 70_152_192),
    (2, 3 * (3072 + 2 * 2 * 256) // 2 + 12 * 128 * 256, 35_143_680),  # n_groups 1 widened to 2: each rank a copy
    (4, 3 * (3072 + 2 * 4 * 256) // 4 + 6 * 128 * 256, 17_639_424),
])
def test_40_hybrid4_mamba2_keeps_its_one_b_c_group_whole_on_every_rank(tmp_path, tp, per_layer, total):
    """hybrid 4: Mamba-2 with n_groups 1 (Falcon-H1-7B) at TP > 1: vLLM's mamba2_state_shape widens n_groups by
    extra_groups_for_head_shards ("for n_groups == 1, this is exactly tp_size - n_groups") before it divides the conv
    channels d_ssm + 2 n_groups d_state by tp, so each rank keeps (K - 1) x (d_ssm / tp + 2 d_state) (SGLang's
    Mamba2StateShape.create likewise). At TP 2: 44 layers x (3 x 2,048 + 12 x 128 x 256) x 2 B = 35,143,680 B a GPU,
    where kvcalc had divided the whole state by tp, 35,076,096; at TP 4 17,639,424 against 17,538,048."""
    from kvcalc.formulas.kv import linear_state_bytes
    from kvcalc.formulas.parallel import sequence_bytes_per_gpu
    from kvcalc.specs.hf import load_hf_spec

    (tmp_path / "config.json").write_text(json.dumps(FALCON_H1_7B))
    spec, _ = load_hf_spec(tmp_path)
    assert linear_state_bytes(spec, 2, tp) == 44 * per_layer * 2 == total
    # a sequence's bytes on one GPU carry the same state (capacity's and serve's kvcalc rule)
    kv_token = 2 * 128 * 2 * max(2 / tp, 1) * 44  # K and V of 2 KV heads (replicated past TP 2), 44 layers
    assert sequence_bytes_per_gpu(spec, 1000, 2.0, tp) == pytest.approx(1000 * kv_token + 44 * per_layer * 2)
    # SGLang's slots take the same conv, the SSM in float32
    assert em.sglang_state_bytes(spec, 2.0, tp) == 44 * (per_layer * 2 + 24 // tp * 128 * 256 * 2)


def test_40_hybrid4_models_whose_groups_divide_do_not_move():
    """hybrid 4: Nemotron-H-8B's 8 groups divide every TP it runs at, so its state a GPU stays the whole over tp."""
    from kvcalc.formulas.kv import linear_state_bytes

    m = load_model("nemotron-h-8b")
    for tp in (1, 2, 4, 8):
        assert linear_state_bytes(m, 2, tp) == linear_state_bytes(m, 2) / tp


def test_40_hybrid5_vllm_logs_max_model_len_a_block_below_the_grown_block():
    """hybrid 5: with prefix caching off (vLLM up to 0.27 for a hybrid) MambaModelConfig sets mamba_block_size =
    max_model_len, and _report_kv_cache_config logs num_blocks // groups x the smallest group's block_size. Nemotron-H-8B
    on an H100 at -c 512: the attention block grows to 16 x ceil(4,255,744 / (16 x 4,096)) = 1,040 tokens, 4 full and 24
    state layers in 7 groups of 4; with 3,405 blocks the log reads 3,405 // 7 x min(1,040, 512) = 486 x 512 = 248,832
    tokens, where kvcalc had said 486 x 1,040 = 505,440. Past the block (-c 8192) and in 'align' the block stands."""
    m = load_model("nemotron-h-8b")
    layout = em.vllm_layout(m, 2.0)
    assert layout.block_tokens == 16 * -(-4_255_744 // (16 * 4096)) == 1040
    assert layout.group_layers == 4 and sum(layout.groups.values()) == 7
    available = 3_405 * 4 * 1040 * 4096
    assert em.vllm_kv_tokens(m, available, 2.0, state_block_tokens=512) == 486 * 512 == 248_832
    assert em.vllm_kv_tokens(m, available, 2.0, state_block_tokens=8192) == 486 * 1040
    assert em.vllm_kv_tokens(m, available, 2.0) == 486 * 1040


def test_40_hybrid5_capacity_under_vllm_027_prints_the_logged_tokens():
    """hybrid 5, the reproducer: `capacity -m nemotron-h-8b -g h100 -e vllm -c 512 --vllm-version 0.27` gives 248,832
    KV tokens (486 x 512) and the concurrency it gave (486.43x); at 0.30 ('align', mamba_block_size the attention
    block) and at -c 8192 the figures stand (515,840 tokens and 173.65x, the audit's check of 0.30)."""
    from kvcalc import capacity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        short = capacity("nemotron-h-8b", "h100", engine="vllm", context=512, vllm_version="0.27")
        latest = capacity("nemotron-h-8b", "h100", engine="vllm", context=8192)
    assert short["engine_memory"]["kv_tokens"] == 248_832
    assert round(short["engine_memory"]["max_concurrency"], 2) == 486.43
    assert latest["engine_memory"]["kv_tokens"] == 515_840
    assert round(latest["engine_memory"]["max_concurrency"], 2) == 173.65
