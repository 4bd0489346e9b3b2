"""The roofline chart as data, for a page that draws it itself (kvcalc web): each GPU's roofs and each decode
operating point with its operator class, batch, intensity, attainable TFLOP/s and time. The same computation as
kvcalc/report/plot.py roofline() (operating_points, roof, step_time), without matplotlib."""

from __future__ import annotations

from collections.abc import Sequence


def roofline_data(gpus: Sequence = ("h100-sxm",), model="llama-3-8b", *, attn: Sequence = (None,),
                  batch: Sequence[int] = (1, 8, 64, 256), context: int = 4096, weight_dtype: str = "auto",
                  kv_dtype: str = "bf16", engine: str = "roofline", speculate: str | None = None) -> dict:
    """{"model", "context", ..., "roofs": [...], "points": [...]}.

    A roof: gpu, dtype, ridge_flop_per_byte, peak_tflops, bandwidth_GBps. A point: gpu, variant, batch, operator
    (attention, projections+MLP, lm_head, ...), flops, bytes, intensity_flop_per_byte, tflops (at the roofs: flops /
    its operators' speed-of-light time, each at the peak of the dtype it runs at, never above min(that peak,
    intensity x bandwidth); with a measured engine, flops / its expected time) and time_ms = flops / (tflops x 1e12)
    in ms."""
    from kvcalc.report.plot import compute_dtypes, point_tflops, roof, roofline_inputs
    from kvcalc.specs.catalog import load_gpu, load_model, resolve_engine

    # checked as `kvcalc roofline` checks them: the flag named in the message
    gpus, weight_dtype, points, x_lo, x_hi = roofline_inputs(gpus, model, attn, batch, context, weight_dtype,
                                                             kv_dtype, speculate, flags=True, engine=engine)
    spec = load_model(model)
    roofs, out = [], []
    for g in gpus:
        hw = load_gpu(g)
        profile = resolve_engine(engine, hw)
        for dtype in compute_dtypes(hw, weight_dtype):
            _, y, ridge = roof(hw, dtype, x_lo, x_hi)
            roofs.append({"gpu": hw.name, "dtype": dtype, "ridge_flop_per_byte": ridge, "peak_tflops": y[1],
                          "bandwidth_GBps": hw.bandwidth_Bps / 1e9})
        for variant, b, label, flops, bytes_, x, ops in points:
            tflops = point_tflops(ops, flops, hw, weight_dtype, kv_dtype, profile)  # the twelfth audit, E2
            out.append({"gpu": hw.name, "variant": variant, "batch": b, "operator": label, "flops": flops,
                        "bytes": bytes_, "intensity_flop_per_byte": x, "tflops": tflops,
                        "time_ms": flops / (tflops * 1e12) * 1e3})
    return {"model": spec.name, "context": context, "weight_dtype": weight_dtype, "kv_dtype": kv_dtype,
            "engine": engine, "intensity_range": [x_lo, x_hi], "roofs": roofs, "points": out}
