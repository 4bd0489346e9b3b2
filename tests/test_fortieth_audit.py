"""The fortieth hostile audit (docs/validation.md, "Fortieth hostile audit") and the Left items it took up. Each test is
named after the finding it holds fixed and asserts a cited rule, a hand computation or another command's figure."""

import warnings

import pytest


def _serve(model, gpu, choice, **kw):
    """serve's answer for plan's choice: the same engine, layout (P:D in GPUs), formats and step budget, at the same
    request rate."""
    import kvcalc

    tp, disagg = choice["tensor_parallel"], choice["disaggregate"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kvcalc.serve(model, gpu, engine=choice["engine"], tp=tp, weight_dtype=choice["weight_dtype"],
                            kv_dtype=choice["kv_dtype"], step_tokens=choice["max_num_batched_tokens"],
                            disaggregate=tuple(int(x) for x in disagg.split(":")) if disagg else None, **kw)


@pytest.mark.parametrize("model, gpus, kw", [
    # the audit's two questions: one disaggregated replica a choice, where plan had printed 1,082 and 1,333 ms
    ("llama-3.1-8b", ["l40s"], dict(input_len=4000, output_len=300, request_rate=30, max_tpot_ms=40)),
    ("llama-3.1-70b", ["h100-sxm", "h200"], dict(input_len=2000, output_len=500, request_rate=20, max_tpot_ms=40,
                                                  price_per_gpu_hour={"h100-sxm": 2.5, "h200": 3.5})),
])
def test_40_planopt2_a_disaggregated_choice_is_timed_at_the_load_serve_finds(model, gpus, kw):
    """planopt 2 (carried from the thirty-ninth audit): a disaggregated replica's requests/s flattens where its prefill
    pool is full, and the load passes' affine latency between two timed budgets had placed the share's point past
    that knee, whose TTFT holds a queue wait the share never sees: Llama-3.1-8B on L40Ss at 30 requests/s, 57.4 in
    flight and 1,082 ms where serve finds 47.2 and 251 ms; Llama-3.1-70B on H100s (TensorRT-LLM 2P:2D), 108.7 and
    1,333 ms where serve finds 93.1 and 157 ms. The point a load pass keeps more than 1 % past the fewest requests in
    flight that carry the share is now bisected as serve bisects it: plan's TTFT, TPOT and requests in flight are
    serve's for the same deployment."""
    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = kvcalc.plan(model, gpus, disaggregated=True, **kw)
    for p in [plan["choice"], *plan["best_by_engine"].values()]:
        if not p["disaggregate"]:
            continue
        kw_serve = {k: kw[k] for k in ("input_len", "output_len", "request_rate", "max_tpot_ms")}
        s = _serve(model, p["gpu"], p, **kw_serve)
        assert s["replicas"] == p["replicas"]
        assert p["in_flight_per_replica"] == pytest.approx(s["concurrency"] / s["replicas"], rel=2e-3)
        assert p["ttft_ms"] == pytest.approx(s["ttft_ms"], rel=2e-3)
        assert p["tpot_ms"] == pytest.approx(s["tpot_ms"], rel=2e-3)
    assert plan["choice"]["disaggregate"]  # the question's answer is disaggregated, as the audit found it


def test_40_planopt2_bisect_shares_finds_the_knee_of_a_flattening_rate():
    """bisect_shares on a hand-worked replica: requests/s min(C / (1 + C / 100), 5) (Little's law with a latency of 1
    s + 10 ms a request in flight, and a prefill pool carrying 5 a second). The share 4/s is carried from C = 4 / (1 -
    0.04) = 4.1667 on, the pool's 5/s from its knee, C = 5 / 0.95 = 5.2632, where a chord between budgets of 4 and 64
    in flight (5/s already at 64) lands at 64."""
    from kvcalc.planning.plan import bisect_shares

    def rates_at(which, cs):
        return [min(c / (1 + c / 100), 5.0) for c in cs]

    found = bisect_shares([(4.0, 64.0, 4.0), (4.0, 64.0, 5.0), (0.0, 1.0, 0.5)], rates_at)
    assert found[0] == pytest.approx(4 / 0.96, rel=1e-6)
    assert found[1] == pytest.approx(5 / 0.95, rel=1e-6)
    assert found[2] == pytest.approx(0.5 / (1 - 0.005), rel=1e-6)
    assert all(r >= t for r, t in zip(rates_at(None, found), (4.0, 5.0, 0.5)))  # each carries its share
