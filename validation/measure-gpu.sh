#!/usr/bin/env bash
# How validation/<gpu>/ is measured on a CUDA GPU: the environment, `kvcalc calibrate` against the GPU's datasheet
# spec, and `kvcalc validate` at the widths of four models, one per attention kind (GQA, two-group GQA, MQA, MLA).
# Usage: validation/measure-gpu.sh BASE_SPEC OUT_DIR        e.g. validation/measure-gpu.sh h200 validation/h200
# Each step has a time limit, and validate writes its rows as it measures them, so a slow step costs only itself.
set -u
base=${1:?the GPU\'s bundled spec, e.g. h200}
out=${2:?the folder to write}
mkdir -p "$out"
{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,clocks.max.mem --format=csv
  nvidia-smi | grep -m1 'CUDA Version'
  python3 -c 'import platform, torch; p = torch.cuda.get_device_properties(0); print(f"torch {torch.__version__} | CUDA runtime {torch.version.cuda} | cuDNN {torch.backends.cudnn.version()} | python {platform.python_version()} | {p.name}: {p.multi_processor_count} SMs, {p.total_memory / 2**30:.2f} GiB visible, L2 {getattr(p, "L2_cache_size", 0) / 2**20:.0f} MiB")'
  # what vLLM budgets from: the device total torch sees, and what the process holds beyond torch's allocations
  # once CUDA and cuBLAS are up (vLLM's "non-torch memory" at one GPU)
  python3 -c 'import torch; free0, total = torch.cuda.mem_get_info(); a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16); (a @ a).sum().item(); free1, _ = torch.cuda.mem_get_info(); held = total - free1; print(f"mem_get_info total {total} B = {total / 2**30:.3f} GiB; used with an empty context {(total - free0) / 2**30:.3f} GiB; after a bf16 matmul: used {held / 2**30:.3f} GiB, torch reserved {torch.cuda.memory_reserved() / 2**30:.3f} GiB, the rest {(held - torch.cuda.memory_reserved()) / 2**30:.3f} GiB")'
} > "$out/ENVIRONMENT.txt" 2>&1
cat "$out/ENVIRONMENT.txt"
timeout 60 python3 -m kvcalc calibrate --device cuda --base "$base" --out "$out/$base-calibrated.toml"
for model in llama-3-8b chatglm2-6b falcon-7b deepseek-v2-lite; do
  SECONDS=0
  timeout 110 python3 -m kvcalc validate --gpu "$base" --device cuda --model "$model" --out "$out/validation-$model.csv"
  echo "validate $model: exit $?, ${SECONDS} s"
done
