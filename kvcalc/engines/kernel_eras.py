"""How much slower an older release's fused-MoE layers ran than the profile's own kernel tables time them.

The bundled profiles time kernels from tables measured on one recent release per engine (vLLM 0.24, SGLang 0.5.14,
TensorRT-LLM 1.3). Published runs of 2023-2025 releases are slower than those tables on mixture-of-experts models
above all (DeepSeek-V3 on eight H200s under vLLM 0.7 and SGLang 0.4: decode steps 2-4x kvcalc's), where dense
models of the same runs are within the overhead; the fused-MoE path (its kernels, their tuned configs, the routing
around them) is what changed most between releases. An era is a range of releases run before the tables' releases;
its factor multiplies the routed experts' time (the fused-MoE kernel, however the profile times it: its `moe.*`
curve, or the datasheet roofline where the profile has no curve for the weight format), nothing else, and never the
speed of light:

    routed experts' time (release in the era) = kvcalc's time for the profile's release x moe_scale

Each factor is fitted on the published ledger (validation/published/, kvcalc/ledgers/published.py fit_moe_scales):
the rows of the era whose model has routed experts and whose GPU has a measured profile, each publisher weighing the
same, minimising |log(predicted / measured)| with the release band's overheads in place; an era whose rows come
from fewer than MIN_PUBLISHERS publishers keeps 1. The ledger scores every row with the factor refitted without
its own publisher. `--engine-version` picks the era; the default (the profile's own release) is never scaled.

Release boundaries: vLLM 0.11.x were the current releases until December 2025 (0.11.0 adopted by 2025-10-08,
torch-spyre/sendnn-inference PR #513; 0.11.1 by 2025-11-19, IBM/ado PR #223; 0.12.0 current by 2025-12-11,
vllm-project/vllm-ascend PR #4918). SGLang v0.5.5.post3 is AMD's CI image of 2025-11-21 (the ledger's amd-sglang-ci
rows). TensorRT-LLM's TensorRT-engine back end ends with 0.21 (engines/overhead.py). Runs the ledger dates only by
month are in the era when run before ERA_END.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kvcalc.specs.profile import EngineProfile

ERA_END = (2025, 12)  # runs dated before this month, with no release given, are in their engine's era
MIN_PUBLISHERS = 2  # an era's factor is fitted only where its MoE rows come from at least two publishers


@dataclass(frozen=True)
class KernelEra:
    engine: str
    name: str
    first: tuple[int, int, int]
    last: tuple[int, int, int]  # inclusive; patch 999: every patch release of that minor
    moe_scale: float  # time factor on the fused-MoE kernel against the profile's tables
    provenance: str  # the rows it was fitted on, or why it is 1


LEDGER = "validation/published/ (kvcalc validate --published; kvcalc/ledgers/published.py fit_moe_scales)"

ERAS: tuple[KernelEra, ...] = (
    KernelEra("vllm", "0.1-0.11", (0, 1, 0), (0, 11, 999), 2.18,
              f"fitted on 34 MoE rows from 3 organisations, {LEDGER}"),
    KernelEra("sglang", "0.1-0.5.5", (0, 1, 0), (0, 5, 5), 3.13,
              f"fitted on 17 MoE rows from 3 organisations, {LEDGER}"),
    KernelEra("trtllm", "0.1-0.21", (0, 1, 0), (0, 21, 999), 1.0,
              f"not fitted: no scored MoE row of the era, {LEDGER}"),
)


def release3(text: str) -> tuple[int, int, int] | None:
    """'0.5.5.post3' -> (0, 5, 5); 'v0.11' -> (0, 11, 0); None when the text names no release."""
    m = re.match(r"\s*v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?", text)
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


def run_month(text: str) -> tuple[int, int] | None:
    """The month a ledger row's engine_version gives where it names no release: 'unknown (2025-04)' -> (2025, 4)."""
    m = re.search(r"\((\d{4})-(\d{2})\)", text or "")
    return (int(m[1]), int(m[2])) if m else None


# --engine-version's release number, the whole of the flag in ASCII digits, with PEP 440's and the engines' own tags
# (0.6.3, v0.30.1, 1.3.0rc20, 0.5.5.post3, 0.10.1.1, 0.7.4.dev181+gf35f8e22). The fourth audit: '0.6.3garbage',
# '0.6 ; rm -rf' and Arabic-Indic digits had been read as releases by release3's prefix match, which the ledgers'
# annotated versions ('v0.5.3.post1 (rocm630 image 2025-10-13)') need.
FLAG_RELEASE = re.compile(r"v?([0-9]{1,4})\.([0-9]{1,4})(?:\.([0-9]{1,4}))?(?:\.[0-9]{1,4})?"
                          r"(?:[.-]?(?:post|rc|dev|a|b)[0-9]{0,6})*(?:\+[0-9a-z.]{1,40})?")


def asks_latest(version) -> bool:
    """Whether --engine-version names 'latest', in any case and spacing, as --vllm-version takes it (the twenty-first
    audit, C7: LATEST had been refused by one flag and taken by the other)."""
    return isinstance(version, str) and version.strip().lower() == "latest"


def flag_release(text: str) -> tuple[int, int, int] | None:
    """The release --engine-version names, or None when the text is not one release number (FLAG_RELEASE)."""
    m = FLAG_RELEASE.fullmatch(text.strip().lower()) if len(text) <= 60 else None
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


def era_of_release(engine: str, release: tuple[int, int, int]) -> KernelEra | None:
    return next((e for e in ERAS if e.engine == engine and e.first <= release <= e.last), None)


def era_of_version(engine: str, version: str | None) -> KernelEra | None:
    """The era --engine-version names: a release number (any case: V0.6.3), or an overhead band's name whose
    releases all lie in one era (vLLM's v0, 0.1-0.7); None for the default (the profile's own release), a band that
    reaches past an era (SGLang's 0.4+, or its range 0.4-0.5, holds the profile's own release), or a release past every
    era. The verification pass: 0.4+ had been read as release 0.4.0, and v0 as no release; the fourth audit: 0.4-0.5
    as release 0.4."""
    if version is None or asks_latest(version):
        return None
    from kvcalc.engines.overhead import band_named

    band = band_named(engine, version)
    if band is not None:
        return next((e for e in ERAS if e.engine == engine and e.first <= (*band.first, 0)
                     and (*band.last, 999) <= e.last), None)
    release = flag_release(version)
    return era_of_release(engine, release) if release else None


def era_of_ledger_row(engine: str, version_text: str) -> KernelEra | None:
    """A published row's era from its engine_version as the source states it: a release, or the month of the run
    ('unknown (2025-04)'), which is in the era when before ERA_END."""
    release = release3(version_text)
    if release is not None:
        return era_of_release(engine, release)
    month = run_month(version_text)
    if month is None or month >= ERA_END:
        return None
    return next((e for e in ERAS if e.engine == engine), None)


def with_era(profile: EngineProfile, version: str | None) -> EngineProfile:
    """The profile with the routed experts' factor of the release --engine-version names: its era's, or 1 outside
    every era (a profile calibrated on an older release carries that release's factor, and another release asked for
    replaces it: the verification pass); unchanged where no version is asked for."""
    if version is None or asks_latest(version):
        return profile
    era = era_of_version(profile.engine, version)
    if era is None or era.moe_scale == 1.0:
        return profile if profile.moe_time_scale == 1.0 else profile.model_copy(
            update={"moe_time_scale": 1.0, "moe_time_scale_source": ""})
    return profile.model_copy(update={
        "moe_time_scale": era.moe_scale,
        "moe_time_scale_source": f"{era.engine} {era.name} kernel era, {era.provenance} (kvcalc/engines/kernel_eras.py)"})


def describe(profile: EngineProfile | None) -> str:
    """The factor in words, for the time-model line and --explain; '' when there is none."""
    if profile is None or profile.moe_time_scale == 1.0:
        return ""
    return f"MoE kernels x{profile.moe_time_scale:g} ({profile.moe_time_scale_source})"
