"""What an engine spends outside its kernels, per release band: a cost per forward step (scheduler, sampler, the
Python between kernels, the host-device sync) and a cost per request (API server, tokenisation, detokenisation:
it lands in TTFT).

Overheads belong to the engine and its release (and, roughly, the host CPU), not to the GPU's kernels, so they live
here as data and not in the per-GPU kernel profiles. Each band names the releases it covers, where its figures
come from, and the published rows they were fitted on (`kvcalc validate --published validation/published/` refits
them, and scores every source with the constants refitted without it: kvcalc/ledgers/published.py).

    step time      = kernels + step_us + step_us_per_extra_gpu * (GPUs - 1)
                             + step_us_per_synced_layer * (layers, where a tensor- or expert-parallel group
                                                           synchronises its GPUs in every layer; else 0)
                                                    (decode and prefill steps; never in the speed of light)
    TTFT           = prefill step + request_ms

The synchronised-layer term is what a group of GPUs loses in each layer beyond its kernels and collectives as
measured alone: every layer's all-reduce (or all-to-all) waits for the slowest GPU's kernels and launches, which
kernel tables timed one GPU and one collective at a time do not show. It is one figure for every band with a
fitted overhead (SYNCED_LAYER_US), fitted with the bands' fixed costs on the rows of every band together, since each
band's multi-GPU rows come from one publisher alone; a band with no overhead modelled (TensorRT-LLM's PyTorch back
end, which no published row covers) carries none of it either, nor does gpt-fast, which has no bands.

A profile file may state its own `[overhead]` (a deployment profile from `kvcalc calibrate --from-benchmark`); it
wins over the table. --engine-version picks a band where releases differ; the default is the band of the profile's
own release (the one its kernels were measured on).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from kvcalc.engines.kernel_eras import FLAG_RELEASE, asks_latest, flag_release, release3, run_month, with_era
from kvcalc.errors import KvcalcError
from kvcalc.formulas.engine_memory import VLLM_RELEASED
from kvcalc.specs.profile import EngineOverhead, EngineProfile


@dataclass(frozen=True)
class Band:
    """One engine's releases that share a runtime design, and what each of their steps and requests costs."""

    engine: str
    name: str  # what --engine-version accepts besides a release number
    first: tuple[int, int]  # first (major, minor) release of the band
    last: tuple[int, int]  # last release of the band known to kvcalc
    design: str  # the runtime, in words
    step_us: float  # per forward step on one GPU [us]
    step_us_per_extra_gpu: float  # added per GPU beyond the first [us]
    request_ms: float  # per request, in TTFT [ms]
    provenance: str  # fitted (on the rows named below), transferred (from another band), or none
    sources: tuple[str, ...]


LEDGER = "validation/published/ (kvcalc validate --published; median |log error| fit, leave-one-source-out scored)"

# Release boundaries:
# vLLM: the V1 engine (GPUModelRunner) is the default from v0.8.0 (formulas/engine_memory.py VLLM_V1_ENGINE, vLLM
#   0.8.2 docs); Model Runner V2 for every model from v0.29.0 (PR #53183; VLLM_MRV2_ALL); latest known v0.30.
# TensorRT-LLM: the PyTorch back end is the LLM API's and `trtllm-serve`'s default from 1.0 (the 1.0.0rc docs'
#   quick start, nvidia.github.io/TensorRT-LLM/1.0.0rc2/torch.html, builds no engine; by 1.1.0rc3 the TensorRT engine
#   needs `from tensorrt_llm._tensorrt_engine import LLM`, and the engine back end was later removed: the docs'
#   "Migration Guide: TensorRT Backend Removed"); before it, the TensorRT engine and its C++ runtime
#   (gptSession / gptManager); latest known 1.3 (the bundled profiles' 1.3.0rc20).
# SGLang: one band: the overlap ("zero-overhead") scheduler is the default from v0.4.0 (SGLang v0.4 blog,
#   lmsys.org/blog/2024-12-04-sglang-v0-4); latest known 0.5.14.
BANDS: tuple[Band, ...] = (
    Band("vllm", "v0", (0, 1), (0, 7), "V0 engine (LLMEngine: Python scheduler and sampler in the step loop)",
         1820, 0, 0, "fitted on its 8 rows", (LEDGER,)),
    Band("vllm", "v1", (0, 8), (0, 28), "V1 engine (EngineCore in its own process, GPUModelRunner; Model Runner V2 "
         "for dense models from 0.25, vLLM PR #44443)",
         1280, 0, 9.04, "fitted on its 32 rows", (LEDGER,)),
    Band("vllm", "v2", (0, 29), (0, 30), "V1 engine with Model Runner V2",
         1280, 0, 9.04, "transferred from v1", (LEDGER,)),
    # its 10 rows are NVIDIA's batch-1 first-token times: the gap they fit is a request's (the thirty-fourth audit,
    # overhead 3: fitted as a step's, 2,070 us had been added to every decode step)
    Band("trtllm", "engine", (0, 5), (0, 21), "TensorRT engine, C++ runtime (gptSession / gptManager)",
         0, 0, 2.07, "fitted on its 10 rows (first-token times: the per-request cost only)", (LEDGER,)),
    # No published row of the PyTorch back end is in the ledger; its runtime is not the C++ engine's, so that band's
    # fit is not transferred to it (the engine band's constants made TensorRT-LLM 1.x's own perf-overview ledger,
    # validation/serve, worse: 11.4 % against 6.5 % median without them)
    Band("trtllm", "pytorch", (1, 0), (1, 3), "PyTorch back end (PyExecutor: Python scheduler and sampler)",
         0, 0, 0, "not modelled: no published end-to-end rows of this band (the serving ledger's nine gpustack "
         "rows of it are scored, not fitted on)", (LEDGER,)),
    Band("sglang", "0.4+", (0, 4), (0, 5), "overlap scheduler (CPU scheduling hidden behind the GPU step)",
         171, 0, 0, "fitted on its 2 rows", (LEDGER,)),
)


# Per layer of a step whose GPUs synchronise [us]: fitted on the published ledger's overhead rows of every band
# together (kvcalc/ledgers/published.py fit_overheads: 4 publishers' multi-GPU rows, lmsys-blog, TensorRT-LLM,
# qwen-docs and tenstorrent-tt-inference-server, beside 5 publishers' one-GPU rows), leave-one-source-out scored
SYNCED_LAYER_US = 34.5


def synced_layers(layers: int, tp: int, ep: int = 1) -> int:
    """Layers of a step whose GPUs synchronise in each: all of them in a tensor- or expert-parallel group, none on
    one GPU (pipeline stages hand over once a stage, which the pipeline term times)."""
    return layers if tp > 1 or ep > 1 else 0


# the newest series each engine has published past its newest band (`pip index versions [--pre]`, 2026-12-07: vllm
# 0.34.0, formulas/engine_memory.py VLLM_RELEASED; tensorrt-llm 1.4.0rc1): a release up to it is timed as that band,
# with a warning (band); only major.minor is compared
RELEASED = {"vllm": VLLM_RELEASED, "trtllm": (1, 4)}


def bands(engine: str) -> list[Band]:
    return [b for b in BANDS if b.engine == engine]


def unmodelled_latest(engine: str) -> Band | None:
    """The engine's newest band where its overheads are not modelled (no published run of it), or None."""
    newest = max(bands(engine), key=lambda b: b.last, default=None)
    return newest if newest is not None and newest.provenance.startswith("not modelled") else None


def band_named(engine: str | None, version: str) -> Band | None:
    """The band --engine-version names by its name (v0, 0.4+) or by its releases as kvcalc prints them (0.1-0.7);
    engine None: any engine's."""
    text = version.strip().lower()
    return next((b for b in (bands(engine) if engine else BANDS)
                 if text in (b.name, f"{b.first[0]}.{b.first[1]}-{b.last[0]}.{b.last[1]}")), None)


def release_tuple(text: str) -> tuple[int, int] | None:
    """'0.6.3', 'v0.30.1', '1.3.0rc20', '0.7a (pre-release)' -> (major, minor); None when it names no release
    (kernel_eras.release3's first two parts)."""
    release = release3(text)
    return release[:2] if release else None


# engines whose rules kvcalc follows change within a minor series, so a release must name its patch number
PATCH_RELEASED = {"sglang": "0.4.4 splits the step budget over data-parallel ranks, 0.5.3 sizes it by the GPU's "
                            "memory, 0.5.6 ends the older MoE kernel era"}


def has_patch(version: str) -> bool:
    """Whether a release number names its patch release ('0.5.3', '0.5.3rc1'), not only a series ('0.5', 'v0.5')."""
    m = FLAG_RELEASE.fullmatch(version.strip().lower())
    return bool(m and m[3] is not None)


def band_of_release(engine: str, release: tuple[int, int]) -> Band | None:
    return next((b for b in bands(engine) if b.first <= release <= b.last), None)


def band(engine: str, version: str | None = None, default_release: str | None = None) -> Band | None:
    """The band --engine-version names for `engine`: a band name (v0, v1, v2, engine, pytorch), a release
    (0.6.3, v1.2.0rc1), 'latest' (the newest band: today's release, as --vllm-version's default sizes the pool), or
    None: the band of default_release (the profile's own release). None where the engine has no bands (gpt-fast,
    roofline). An unknown band or a release kvcalc does not know is an error."""
    known = bands(engine)
    if not known:
        if version is not None and not asks_latest(version):
            raise KvcalcError(f"--engine-version: kvcalc models no release bands for {engine}; drop the flag")
        return None
    if asks_latest(version):
        return known[-1]
    if version is None:
        found = band_of_release(engine, release_tuple(default_release or "") or known[-1].last)
        return found or known[-1]
    by_name = band_named(engine, version)
    if by_name is not None:
        return by_name
    release = flag_release(version)
    if (release is not None and engine in PATCH_RELEASED and not has_patch(version)
            and band_of_release(engine, release[:2]) is not None):  # a series past every band: refused below
        # the twenty-fifth audit, F4: SGLang's '0.5' had been read as 0.5.0 (the older MoE era, the pre-0.5.3 chunk
        # rule), where a user may mean the 0.5 series: TTFT 2x latest's
        raise KvcalcError(f"--engine-version: {version.strip()!r:.40} names a series, and {engine}'s kernels and "
                          f"scheduler change within one ({PATCH_RELEASED[engine]}); give the release you run "
                          f"({release[0]}.{release[1]}.0 or a later patch) or latest")
    found = band_of_release(engine, release[:2]) if release else None
    if found is None and release and known[-1].last < release[:2] <= RELEASED.get(engine, (0, 0)):
        # a published release past the newest band kvcalc knows: that band's figures, said (the thirty-sixth audit,
        # releases 2: vLLM 0.31-0.34 and TensorRT-LLM 1.4.0rc had been refused as releases that do not exist)
        import warnings

        from kvcalc.errors import CapacityWarning

        newest = known[-1]
        warnings.warn(f"{engine} {version.strip()}: newer than the releases kvcalc's overheads follow "
                      f"(its {newest.name} band, {newest.first[0]}.{newest.first[1]}-{newest.last[0]}."
                      f"{newest.last[1]}); timed as that band", CapacityWarning, stacklevel=2)
        return newest
    if found is None:
        listing = "; ".join(f"{b.name}: {b.first[0]}.{b.first[1]}-{b.last[0]}.{b.last[1]}" for b in known)
        if engine in RELEASED:  # the published releases past the newest band, taken as it
            (major, minor), newest = RELEASED[engine], known[-1]
            listing += f"; {newest.last[0]}.{newest.last[1] + 1}-{major}.{minor} as {newest.name}"
        raise KvcalcError(f"--engine-version: {engine} has no release {version!r:.40} kvcalc knows; expected a band "
                          f"or a release within one ({listing})")
    return found


def band_of_ledger_row(engine: str, version_text: str) -> Band | None:
    """A published row's band from its engine_version as the source states it: a release number, or, where the
    source names none, the month of the run ('unknown (2024-10)', 'commit acbed3ef (2023-10)') against the date
    each band became the default (vLLM 0.8.0: 2025-03; TensorRT-LLM 1.0: 2025-09)."""
    release = release_tuple(version_text)
    if release is not None:
        return band_of_release(engine, release)
    when = run_month(version_text)
    if when is None:
        return None
    # SGLang: its one band begins with 0.4.0 (2024-12, the v0.4 blog): a run dated before it has none, as a stated
    # 0.3 has none (the review of the thirty-fourth audit, 8)
    switch = {"vllm": ((2025, 3), "v0", "v1"), "trtllm": ((2025, 9), "engine", "pytorch"),
              "sglang": ((2024, 12), None, "0.4+")}.get(engine)
    if switch is None:
        return bands(engine)[-1] if bands(engine) else None
    name = switch[1] if when < switch[0] else switch[2]
    if name is None:
        return None
    return next(b for b in bands(engine) if b.name == name)


def with_band(profile: EngineProfile | None, version: str | None) -> EngineProfile | None:
    """The profile with the overhead of the band --engine-version picks stated on it (a profile that states its own
    overhead keeps it unless a version is asked for), and the fused-MoE factor of the release's kernel era
    (engines/kernel_eras.py; none for the default release)."""
    if profile is None:
        if version not in (None, "latest"):
            raise KvcalcError("--engine-version: the roofline has no engine; pick one with --engine")
        return None
    if profile.overhead is not None and (version is None or asks_latest(version)):
        return profile
    b = band(profile.engine, version, profile.engine_version)
    if b is None:
        return profile
    return with_era(profile.model_copy(update={"overhead": overhead_of(b)}), version)


# built once a band (a few bands, each frozen, as the model is): building it took ~12 us of every estimate's ~530
# (the fortieth audit, readme 2)
@functools.lru_cache(maxsize=None)
def overhead_of(b: Band) -> EngineOverhead:
    name = (f"{b.engine} {b.name} band, releases {b.first[0]}.{b.first[1]}-{b.last[0]}.{b.last[1]}, {b.provenance} "
            "(kvcalc/engines/overhead.py)")
    modelled = not b.provenance.startswith("not modelled")
    return EngineOverhead(step_us=b.step_us, step_us_per_extra_gpu=b.step_us_per_extra_gpu,
                          step_us_per_synced_layer=SYNCED_LAYER_US if modelled else 0.0,
                          request_ms=b.request_ms, sources=[name, b.design, *b.sources])


def step_cost_us(step_us, per_gpu_us, per_layer_us, gpus: int, synced: int):
    """The engine's time outside the kernels in one step [us]: step_us + per_gpu_us x (gpus - 1) + per_layer_us x
    synced (the module docstring's formula; numbers or numpy arrays, as the ledger's fit grids them)."""
    return step_us + per_gpu_us * (gpus - 1) + per_layer_us * synced


def stated_overhead(profile: EngineProfile | None) -> EngineOverhead | None:
    """The overhead terms a profile times its steps with: its own, else its release's band's; None for the roofline
    or an engine without bands."""
    if profile is None:
        return None
    if profile.overhead is not None:
        return profile.overhead
    b = band(profile.engine, None, profile.engine_version)
    return overhead_of(b) if b is not None else None


def overhead_seconds(profile: EngineProfile | None, gpus: int = 1, synced: int = 0) -> tuple[float, float]:
    """(per step [s], per request [s]) of a deployment on `gpus` GPUs (tp x pp, or the expert-parallel group) whose
    steps synchronise the GPUs in `synced` layers (synced_layers): step = step_us + step_us_per_extra_gpu *
    (gpus - 1) + step_us_per_synced_layer * synced, from the profile's stated overhead, else its release's band;
    nothing for the roofline (datasheet efficiencies) or an engine without bands."""
    o = stated_overhead(profile)
    if o is None:
        return 0.0, 0.0
    step_us = step_cost_us(o.step_us, o.step_us_per_extra_gpu, o.step_us_per_synced_layer, gpus, synced)
    return step_us * 1e-6, o.request_ms * 1e-3


def describe(profile: EngineProfile | None) -> str:
    """The overhead in words, for inputs.profile and --explain."""
    step_s, request_s = overhead_seconds(profile)
    if profile is None:
        return ""
    per_gpu = (profile.overhead or (overhead_of(band(profile.engine, None, profile.engine_version))
                                    if bands(profile.engine) else None))
    slope = f" + {per_gpu.step_us_per_extra_gpu:.0f} us per extra GPU" if per_gpu and per_gpu.step_us_per_extra_gpu else ""
    if per_gpu and per_gpu.step_us_per_synced_layer:
        slope += f" + {per_gpu.step_us_per_synced_layer:g} us per layer where GPUs synchronise"
    if profile.overhead is not None:
        where = profile.overhead.sources[0]
    else:
        b = band(profile.engine, None, profile.engine_version)
        where = overhead_of(b).sources[0] if b else f"not modelled for {profile.engine}"
    return f"overhead {step_s * 1e6:.0f} us/step{slope}, {request_s * 1e3:.1f} ms/request ({where})"
