"""What a command prints as CSV or a table, where it is more than its JSON rows: shared by kvcalc/cli and kvcalc/web
so both print the same columns."""

from __future__ import annotations


def capacity_csv_row(plan: dict) -> dict:
    """`kvcalc capacity --format csv`'s one row: the same columns in the same order whatever the rule and the plan
    (audit I2): the plan's scalars, the two notes a reader needs, assumptions.* and every engine_memory.* key."""
    from kvcalc.planning.capacity import ENGINE_MEMORY_KEYS

    flat = {}
    for k, v in plan.items():
        if k not in ("assumptions", "engine_memory") and not k.endswith("_note"):
            flat[k] = v
            if k in ("max_context_at_batch", "min_gpus_for_weights"):
                flat[f"{k}_note"] = plan.get(f"{k}_note")
    flat.update({f"assumptions.{k}": v for k, v in plan["assumptions"].items()})
    em = plan["engine_memory"] or {}
    flat.update({f"engine_memory.{k}": em.get(k) for k in (*ENGINE_MEMORY_KEYS, *em)})
    return flat


def estimate_csv_row(doc: dict) -> dict:
    """`kvcalc estimate --format csv`'s row: its JSON, with every part of the parameter breakdown a column (0 where
    the model has none), so rows of several models line up (the thirty-fourth audit, API 9: 78 columns for a dense
    model, 81 for a MoE one, 82 for a hybrid)."""
    from kvcalc.formulas.params import BREAKDOWN_PARTS

    weights = doc.get("weights")
    if isinstance(weights, dict) and isinstance(weights.get("breakdown"), dict):
        got = weights["breakdown"]
        unknown = [k for k in got if k not in BREAKDOWN_PARTS]
        doc = {**doc, "weights": {**weights, "breakdown": {k: got.get(k, 0) for k in (*BREAKDOWN_PARTS, *unknown)}}}
    return doc


def serve_csv_row(plan: dict) -> dict:
    """`kvcalc serve --format csv`'s one row (one concurrency or rate): the JSON's scalars, whole byte counts and the
    nulls' notes as the JSON prints them, then assumptions.*."""
    from kvcalc.report.serialize import json_safe

    doc = json_safe(plan)
    flat = {k: v for k, v in doc.items() if k != "assumptions"}
    flat.update({f"assumptions.{k}": v for k, v in doc["assumptions"].items()})
    return flat


PLAN_ROOFLINE_MARK = "roofline (datasheet)"  # plan's engine cell for a row timed on the datasheet roofline


def plan_csv_rows(result: dict) -> list[dict]:
    """`kvcalc plan --format csv`'s rows: every row the table and the JSON give, with why each missed (misses): the
    choice and runners-up, the closest misses when nothing meets the limits, the frontier, the simulator's misses,
    and the deployments that do not fit (the engine's reason in misses, the other cells empty) (audit A12)."""
    from collections import defaultdict

    blank = {k: None for k in plan_row(defaultdict(str))}  # plan_row's columns

    def row(rank: str, r: dict) -> dict:
        return {"rank": rank, "deployment": r["deployment"], **plan_row(r), "misses": ", ".join(r["misses"])}

    ranked = ([result["choice"]] if result["choice"] else []) + result["runners_up"]
    out = [row("choice" if i == 0 else str(i), r) for i, r in enumerate(ranked)]
    out += [row("closest", r) for r in result["closest"]]
    out += [row("frontier", r) for r in result["frontier"]]
    out += [row("simulated miss", r) for r in result.get("simulated_misses", [])]
    out += [{"rank": "does not fit", "deployment": x["deployment"], **blank, "misses": x["reason"]}
            for x in result["rejected"]["does_not_fit_examples"]]
    return out


def plan_row(r: dict) -> dict:
    """A row of `kvcalc plan`'s table and CSV (the choice, a runner-up or a point of the frontier): GPU, engine,
    layout (+ the speculation method), formats, GPUs, batch budget, TTFT, TPOT, tokens/s per GPU and cost."""
    layout = r["layout"] + (f"+{r['speculate'].split(',')[0].split('=')[0]}" if r.get("speculate") else "")
    engine = r["engine"] if r.get("engine_profile", True) else PLAN_ROOFLINE_MARK  # no profile: marked (audit A1)
    # the simulator's percentile where plan checked one (--percentile, or drawn lengths): the fifth audit found the
    # table showing the steady state's 17 ms where the p90 asked for was 1,091 ms
    simulated = r.get("simulated") if isinstance(r.get("simulated"), dict) else {}
    return {"GPU": r["gpu"], "engine": engine, "layout": layout, "w/KV": r["formats"],
            "GPUs": r["gpus"], "seqs": r["max_num_seqs"], "TTFT ms": r["ttft_ms"], "TPOT ms": r["tpot_ms"],
            "sim TTFT ms": simulated.get("ttft_ms"), "sim TPOT ms": simulated.get("tpot_ms"),
            "tok/s/GPU": r["output_tokens_per_s_per_gpu"], "$/h": r["cost_per_hour"]}
