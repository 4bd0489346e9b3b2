"""Which number formats an engine loads and stores on which GPU: the weight formats it does not load on a part
(engine_format_refusal), the vendor's own formats (foreign_format) and the KV formats it does not keep (ENGINE_KV_REFUSED,
kv_format_refusal). Plain data and small pure functions; every rule cites the engine's source or documentation."""

from __future__ import annotations

from kvcalc.specs.hardware import capability


def foreign_format(hw, weight_dtype: str) -> str | None:
    """The warning for a weight format the part's vendor does not run, or None: NVFP4 is NVIDIA's (ModelOpt's) format;
    an AMD part's fp4 peak is MXFP4's, and plan gives AMD no NVFP4 (the thirteenth audit, P1). The fourteenth, E4:
    estimate had timed NVFP4 on an MI300X without a word."""
    if weight_dtype == "nvfp4" and hw.vendor != "NVIDIA":
        return (f"--weight-dtype nvfp4: NVIDIA's 4-bit format, which {hw.name} ({hw.vendor}) engines do not load "
                "(AMD's 4-bit format is mxfp4); these times are of a deployment that does not run")
    return None


def unset_int8_peak(hw, weight_dtype: str) -> str | None:
    """The warning for int8 (W8A8) weights on a part whose spec has no int8 peak, or None: their GEMMs then run at the
    16-bit peak, as weight-only int8 (dtypes.matmul_compute_dtype). The thirtieth audit, H4: GB200 and RTX 3090 W8A8
    prefill had been timed 1.7x and 2.8x slow, without a word, though their datasheets print the int8 rate."""
    if weight_dtype != "int8" or "int8" in hw.peak_tflops.available():
        return None
    return (f"--weight-dtype int8: {hw.name}'s spec has no peak_tflops.int8, so its W8A8 GEMMs are timed at the "
            "16-bit peak, as weight-only int8; set peak_tflops.int8 in the spec where the part has int8 tensor cores")


def nvidia_capability(hw) -> tuple[int, int] | None:
    """(major, minor) of an NVIDIA part's compute capability (hardware_specs' compute_capability), None otherwise."""
    return capability(getattr(hw, "compute_capability", None)) if hw.vendor == "NVIDIA" else None


def engine_format_refusal(engine: str | None, hw, weight_dtype: str) -> str | None:
    """Why `engine` does not load `weight_dtype` weights on `hw`, or None (the twenty-second audit, Q1 and Q2, and the
    twenty-third, G1-G4: plan had chosen, and --emit launched, deployments that cannot start):
      nvfp4 under TensorRT-LLM or SGLang needs Blackwell's fp4 tensor cores: TensorRT-LLM's hardware support matrix
        (docs/source/features/quantization.md) lists NVFP4 on Blackwell only, and SGLang's
        ModelOptFp4Config.get_min_capability() is 100 (python/sglang/srt/layers/quantization/modelopt_quant.py);
        vLLM runs it on older parts weight-only (Marlin FP4);
      fp8 and fp8-block under TensorRT-LLM need an fp8 peak (the same matrix: FP8 not on Ampere); vLLM runs them
        weight-only there (FP8 Marlin), on NVIDIA parts only: on AMD, vLLM's FP8 kernels need MI300 or later
        (ROCmFP8ScaledMMLinearKernel.is_supported: 'requires MI3xx'; Marlin is CUDA-only), so a part without an fp8
        peak (CDNA 2: MI210, MI250X) has none;
      fp8-block under TensorRT-LLM: the matrix's FP8 (block scaling) column lists Hopper and Blackwell sm100/103 only,
        not Ada or sm120 (L4, L40S, RTX 4090, RTX 5090, RTX PRO 6000);
      fp8 and fp8-block under vLLM need compute capability 8.0 (vllm/model_executor/layers/quantization/fp8.py
        Fp8Config.get_min_capability() 80 at 0071b24: not a T4 or V100; the twenty-eighth audit, H2);
      mxfp4 under vLLM needs compute capability 8.0 (vllm/model_executor/layers/quantization/mxfp4.py
        Mxfp4Config.get_min_capability() 80: not a T4 or V100); under TensorRT-LLM Hopper or Blackwell (the matrix's
        MXFP4 column and examples/models/core/gpt_oss/README.md's MoE support matrix).
    The part's fp4 and fp8 peaks and its compute_capability stand for the architecture (hardware_specs/*.toml)."""
    peaks = hw.peak_tflops.available()
    cc = nvidia_capability(hw)
    names = {"trtllm": "TensorRT-LLM", "sglang": "SGLang", "vllm": "vLLM"}
    does_not_start = "these times are of a deployment that does not start"
    if weight_dtype == "nvfp4" and engine in ("trtllm", "sglang") and "fp4" not in peaks and hw.vendor == "NVIDIA":
        return (f"--weight-dtype nvfp4: {names[engine]} loads NVFP4 weights on Blackwell only (fp4 tensor cores), not "
                f"on {hw.name}; vLLM runs them there weight-only: {does_not_start}")
    if weight_dtype in ("fp8", "fp8-block") and engine == "trtllm" and "fp8" not in peaks:
        return (f"--weight-dtype {weight_dtype}: TensorRT-LLM loads FP8 weights on parts with fp8 tensor cores (Ada, "
                f"Hopper, Blackwell), not on {hw.name}; vLLM runs them there weight-only: {does_not_start}")
    if weight_dtype == "fp8-block" and engine == "trtllm" and cc is not None and cc[0] not in (9, 10):
        return (f"--weight-dtype fp8-block: TensorRT-LLM runs block-scaled FP8 on Hopper and datacenter Blackwell "
                f"(sm90, sm100/103) only, not on {hw.name} (sm{cc[0]}{cc[1]}): {does_not_start}")
    if weight_dtype in ("fp8", "fp8-block") and engine == "vllm" and hw.vendor == "AMD" and "fp8" not in peaks:
        return (f"--weight-dtype {weight_dtype}: vLLM's FP8 kernels on ROCm need MI300 or later (fp8 tensor cores), "
                f"and its weight-only FP8 (Marlin) runs on NVIDIA only; {hw.name} has neither: {does_not_start}")
    if weight_dtype in ("fp8", "fp8-block") and engine == "vllm" and cc is not None and cc < (8, 0):
        return (f"--weight-dtype {weight_dtype}: vLLM loads FP8 weights from compute capability 8.0 (Fp8Config), not "
                f"on {hw.name} ({cc[0]}.{cc[1]}): {does_not_start}")
    if weight_dtype == "mxfp4" and engine == "vllm" and cc is not None and cc < (8, 0):
        return (f"--weight-dtype mxfp4: vLLM loads MXFP4 weights from compute capability 8.0 (Mxfp4Config), not on "
                f"{hw.name} ({cc[0]}.{cc[1]}): {does_not_start}")
    if weight_dtype == "mxfp4" and engine == "trtllm" and cc is not None and cc < (9, 0):
        return (f"--weight-dtype mxfp4: TensorRT-LLM runs MXFP4 on Hopper and Blackwell only, not on {hw.name} "
                f"({cc[0]}.{cc[1]}); vLLM and SGLang run it there: {does_not_start}")
    return None


# KV formats an engine cannot store (or stores in a layout kvcalc does not count), by engine: the formats it takes.
# - SGLang's --kv-cache-dtype takes auto, fp8_e5m2, fp8_e4m3, bf16, bfloat16 and fp4_e2m1 (sgl-project/sglang
#   python/sglang/srt/server_args.py, add_cli_args), so no integer cache.
# - vLLM's integer caches are int8_per_token_head and int4_per_token_head (KVQuantMode, vllm/v1/kv_cache_interface.py):
#   each token's K and V head carries its own fp32 scale, carved from the pool (AttentionSpec.page_size_bytes adds
#   2 x block_size x num_kv_heads x 4 B), which kvcalc's int8 (no scale) and int4 (a bf16 scale per 128 elements) do
#   not count (the thirteenth audit, E4).
# - TensorRT-LLM's KV cache quantisation is FP8, INT8 (one per-tensor scale, as kvcalc's int8) or NVFP4
#   (https://nvidia.github.io/TensorRT-LLM/features/quantization.html): no int4.
_SGLANG_KV = "sglang stores no {kv} KV cache (its --kv-cache-dtype takes fp8_e4m3, fp8_e5m2, bf16 or fp4_e2m1)"
_VLLM_KV = ("vllm's {kv}_per_token_head cache adds an fp32 scale per token and KV head, which kvcalc's {kv} does not "
            "count (vLLM's fp8, nvfp4 and bf16 caches it does)")
ENGINE_KV_REFUSED = {"sglang": {"int8": _SGLANG_KV, "int4": _SGLANG_KV},
                     "vllm": {"int8": _VLLM_KV, "int4": _VLLM_KV},
                     "trtllm": {"int4": "trtllm stores no int4 KV cache (its KV formats are fp8, int8 and nvfp4)"}}


def engine_kv_refusal(engine: str | None, kv_dtype: str) -> str | None:
    """Why `engine` cannot store a `kv_dtype` KV cache (ENGINE_KV_REFUSED), or None."""
    why = ENGINE_KV_REFUSED.get(engine or "", {}).get(kv_dtype)
    if why is None:
        return None
    return f"--kv-dtype {kv_dtype}: {why.format(kv=kv_dtype)}; pick another --kv-dtype or --engine"


def kv_format_refusal(engine: str | None, hw, kv_dtype: str) -> str | None:
    """Why `engine` does not keep a `kv_dtype` cache on `hw`, or None (the twenty-fourth audit, K1):
    nvfp4 is NVIDIA's format, and its cache runs on datacenter Blackwell only (compute capability 10.x): vLLM's
    through FlashInfer's trtllm-gen path (PR #40177; 'is_device_capability_family(100)', issue #49011), TensorRT-LLM's
    'only available for SM10X in trtllm-gen' (issue #10241); none on AMD. What an engine stores on no GPU is
    ENGINE_KV_REFUSED's (engine_kv_refusal)."""
    if kv_dtype == "nvfp4" and engine is not None:
        cc = nvidia_capability(hw)
        if hw.vendor == "AMD" or (cc is not None and cc[0] != 10):
            return (f"--kv-dtype nvfp4: an NVFP4 KV cache runs on datacenter Blackwell only (compute capability 10.x), "
                    f"not on {hw.name}: these times and pools are of a deployment that does not start")
    return None
