"""What a command prints as CSV or a table, where it is more than its JSON rows: shared by kvcalc/cli and kvcalc/web
so both print the same columns."""

from __future__ import annotations


# capacity's keys that may be null (or carry a note beside a value: the load a cost is priced at): a note column each
CAPACITY_NOTED = ("max_context_at_batch", "min_gpus_for_weights", "gpus_for_target", "cost_per_million_tokens")


def capacity_csv_row(plan: dict) -> dict:
    """`kvcalc capacity --format csv`'s one row: the same columns in the same order whatever the rule and the plan
    (audit I2): the plan's scalars, each with its note column where it may be null (empty where it is not: the
    JSON's reason where it is, the fortieth audit, outputs 2, where gpus_for_target, cost_per_million_tokens and
    engine_memory had been blank with none), assumptions.* and every engine_memory.* key."""
    from kvcalc.planning.capacity import ENGINE_MEMORY_KEYS
    from kvcalc.serialize import _null_safe

    plan = _null_safe(plan)
    flat = {}
    for k, v in plan.items():
        if k not in ("assumptions", "engine_memory") and not k.endswith("_note"):
            flat[k] = v
            if k in CAPACITY_NOTED:
                flat[f"{k}_note"] = plan.get(f"{k}_note")
    flat["engine_memory_note"] = plan.get("engine_memory_note")
    flat.update({f"assumptions.{k}": v for k, v in plan["assumptions"].items()})
    em = plan["engine_memory"] or {}
    # each engine_memory.* column with its note column, whatever the rule: the reason a cell is empty (the JSON's, or
    # a key the engine's rule has not), empty where the cell is not or where engine_memory_note says why all are
    for k in dict.fromkeys((*ENGINE_MEMORY_KEYS, *(k for k in em if not k.endswith("_note")))):
        flat[f"engine_memory.{k}"] = em.get(k)
        flat[f"engine_memory.{k}_note"] = (None if not em else em.get(f"{k}_note") if k in em
                                           else f"not part of {em['engine']}'s memory rule")
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
    from kvcalc.serialize import json_safe

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

    from kvcalc.serialize import NULL_NOTES

    # plan_row's columns, empty (not null: misses says why, and no column gains a note for it)
    blank = {k: "" for k in plan_row(defaultdict(str))}

    def row(rank: str, r: dict) -> dict:
        cells = plan_row(r)
        # a null cell's reason beside it, the JSON's (the fortieth audit, outputs 2)
        simulated = r.get("simulated_note") or NULL_NOTES["simulated"]
        why = {"sim TTFT ms": simulated, "sim TPOT ms": simulated, "TPOT ms": r.get("tpot_ms_note"),
               "$/h": r.get("cost_per_hour_note") or NULL_NOTES["cost_per_hour"]}
        noted = {}
        for k, v in cells.items():
            noted[k] = v
            if v is None:
                noted[f"{k}_note"] = why.get(k)
        return {"rank": rank, "deployment": r["deployment"], **noted, "misses": ", ".join(r["misses"])}

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
