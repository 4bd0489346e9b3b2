"""Find and load spec files by name, alias or path.

Bundled specs live at the repository's top level (hardware_specs/, model_specs/) and are copied into the
wheel as kvcalc/_bundled/; whichever exists is used, so editable and plain installs behave the same.
Files are TOML (tomllib) or YAML (yaml.safe_load, when PyYAML is installed); nothing is ever evaluated.
"""

from __future__ import annotations

import difflib
import functools
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from kvcalc.errors import KvcalcError
from kvcalc.specs import HardwareSpec, ModelSpec
from kvcalc.specs.files import is_existing_path, parse_error, read_regular_file
from kvcalc.specs.profile import EngineProfile

Kind = Literal["model", "gpu", "profile"]
_FOLDER = {"model": "model_specs", "gpu": "hardware_specs", "profile": "hardware_specs/profiles"}
_SCHEMA: dict[Kind, type[BaseModel]] = {"model": ModelSpec, "gpu": HardwareSpec, "profile": EngineProfile}
ENGINES = ("auto", "roofline", "vllm", "sglang", "trtllm", "gpt-fast")
DEFAULT_PROFILED_ENGINE = "vllm"  # what --engine auto uses where a profile exists: the most deployed open engine
SPEC_SUFFIXES = (".toml", ".yaml", ".yml")


@functools.lru_cache(maxsize=None)
def spec_dir(kind: Kind) -> Path:
    package = Path(__file__).resolve().parent.parent  # kvcalc/
    bundled = package / "_bundled" / _FOLDER[kind]
    return bundled if bundled.is_dir() else package.parent / _FOLDER[kind]


def read_spec_file(path: Path) -> dict:
    """Parse a TOML or YAML spec file (a regular file of at most 1 MiB, UTF-8 with or without a byte-order mark)
    into a dict, naming the file in any error."""
    if path.suffix.lower() not in SPEC_SUFFIXES:  # .TOML too (audit O8)
        raise KvcalcError(f"{path}: spec files end in .toml, .yaml or .yml (models also take a config.json); "
                          f"got {path.suffix or 'no suffix'}")
    raw = read_regular_file(path, "a spec file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise KvcalcError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    kind = "TOML" if path.suffix.lower() == ".toml" else "YAML"
    try:
        data = tomllib.loads(text) if kind == "TOML" else _load_yaml(path, text)
    except RecursionError:
        raise KvcalcError(f"{path}: not valid {kind}: nested too deeply") from None
    except tomllib.TOMLDecodeError as e:
        raise KvcalcError(f"{path}: not valid TOML: {e}") from None
    except KvcalcError:  # _load_yaml's own one line (a KvcalcError is a ValueError: not to be prefixed again)
        raise
    except ValueError as e:  # the fifth audit: an integer of 5,000 digits ended in Python's ValueError traceback
        raise KvcalcError(f"{path}: not valid {kind}: {parse_error(e)}") from None
    if not isinstance(data, dict):
        raise KvcalcError(f"{path}: expected a table of fields at the top level")
    return data


def _load_yaml(path: Path, text: str):
    try:
        import yaml
    except ImportError:
        raise KvcalcError(f"{path}: YAML spec files need PyYAML (pip install pyyaml); TOML needs nothing") from None
    try:
        return yaml.load(text, Loader=_core_schema_loader(yaml))  # noqa: S506 (a SafeLoader, YAML 1.2's numbers)
    except yaml.YAMLError as e:
        raise KvcalcError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None


def _core_schema_loader(yaml):
    """PyYAML's SafeLoader with YAML 1.2's core schema for numbers, as TOML and JSON read them: 3.35e3 is a number
    (YAML 1.1 left it a string), while 8_0, 0x50 and 2:12 (1.1's separators, hex and base 60) stay text, which the
    spec models then refuse where a number belongs (the sixth audit's verification)."""
    import re

    class CoreLoader(yaml.SafeLoader):
        pass

    CoreLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:int",
                                                                          "tag:yaml.org,2002:float",
                                                                          "tag:yaml.org,2002:bool")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    # 1.2's booleans too: true and false only; 1.1's yes, no, on and off stay text, which a boolean field refuses
    # (the thirty-fourth audit, specs 9: `pcie_p2p: yes` had read true, and a key `on:` had been named True)
    CoreLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                     list("tTfF"))
    CoreLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
    CoreLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
        list("-+0123456789."))

    def decimal(loader, node):  # 1.2's integers are decimal: 040 is 40 (PyYAML's 1.1 constructor read it as octal
        # 32, and refused 080: the seventh audit, V1)
        text = loader.construct_scalar(node)
        if not re.fullmatch(r"[-+]?[0-9]+", text):  # an explicit !!int of another base
            raise yaml.constructor.ConstructorError(None, None, f"expected a decimal integer, got {text!r}",
                                                    node.start_mark)
        return int(text, 10)  # past Python's digit limit, a ValueError that the reader words (parse_error)

    CoreLoader.add_constructor("tag:yaml.org,2002:int", decimal)

    def unique_keys(loader, node, deep=False):  # YAML 1.2 (3.2.1.1): a mapping's keys are unique, as TOML's are;
        # PyYAML takes the last (the ninth round, H12: a repeated num_layers halved a model in silence)
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:  # '? [a, b]': PyYAML's own "found unhashable key", not a TypeError from the set (the
                # twenty-eighth audit, F2)
                raise yaml.constructor.ConstructorError(None, None, "found unhashable key", key_node.start_mark) \
                    from None
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    CoreLoader.construct_mapping = unique_keys
    return CoreLoader


def validation_message(source: str, err: ValidationError) -> str:
    """One line naming the source, the field and what was expected."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    where = f"{loc}: " if loc and f"{loc}." not in msg else ""  # validators already name nested fields
    return f"{source}: {where}{msg}{more}"


def parse_spec(kind: Kind, data: dict, source: str):
    try:
        return _SCHEMA[kind].model_validate(data)
    except ValidationError as e:
        raise KvcalcError(validation_message(source, e)) from None


def load_spec_file(kind: Kind, path: Path):
    """A validated spec; parsed once per file version (path, size, modification time) and then reused, so that
    repeated estimates by name cost no parsing."""
    try:
        st = path.stat()
    except OSError as e:
        raise KvcalcError(f"{path}: cannot read ({e.strerror})") from None
    return _load_spec_file(kind, path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=512)
def _load_spec_file(kind: Kind, path: Path, size: int, mtime_ns: int):
    return parse_spec(kind, read_spec_file(path), str(path))


@functools.lru_cache(maxsize=4)
def catalog(kind: Kind) -> dict[str, Path]:
    """Every bundled spec's name and aliases (lower-case) mapped to its file (read once per process)."""
    out: dict[str, Path] = {}
    for path in sorted(spec_dir(kind).glob("*.toml")):
        data = read_spec_file(path)
        for key in [data.get("name", path.stem), *data.get("aliases", [])]:
            out[str(key).lower()] = path
    return out


# Suffixes of a chat or instruction-tuned checkpoint whose shape is its base model's (the same config.json but for
# the tokenizer's chat template), e.g. meta-llama/Llama-3.1-8B-Instruct, Llama-2-7b-chat-hf, gemma-2-9b-it.
TUNED_SUFFIXES = ("-instruct", "-chat", "-it", "-hf")


def bundled_path(kind: Kind, ref: str) -> Path | None:
    """The bundled spec file a name, alias or Hugging Face id names (case-insensitive), or None. A name is its file's
    stem (tests/test_flags.py checks), so the common case opens one file; aliases read the whole catalog once.
    A -Instruct/-chat/-it/-hf suffix falls back to the base model's spec."""
    key = ref.strip().lower()
    if "/" not in key and "\\" not in key and key not in (".", ".."):
        stem = spec_dir(kind) / f"{key}.toml"
        try:
            if stem.is_file():
                return stem
        except (OSError, ValueError):  # a 300-character name (ENAMETOOLONG) or a NUL byte: no such bundled spec
            pass
    names = catalog(kind)
    while key not in names:
        base = next((key.removesuffix(s) for s in TUNED_SUFFIXES if key.endswith(s)), key)
        if base == key or kind != "model":
            return None
        key = base
    return names[key]


def bundled_specs(kind: Kind) -> list:
    """Every bundled spec, loaded and validated, sorted by name."""
    return [load_spec_file(kind, p) for p in sorted(spec_dir(kind).glob("*.toml"))]


def resolve(kind: Kind, ref: str):
    """A spec from a path (spec file; for models also a config.json or a folder holding one), a bundled name or
    alias (case-insensitive), or, for models, an ORG/NAME repo id in the local Hugging Face cache."""
    if isinstance(ref, os.PathLike):  # a pathlib.Path from the Python API, read as the path it names (the twentieth
        ref = os.fspath(ref)  # audit, W3: one to a missing file had ended in an AttributeError)
    if isinstance(ref, str) and not ref.strip():  # Path("") is the working folder (audit U7)
        raise KvcalcError(f"--{kind}: empty; expected a bundled name, a spec file"
                          + (", a config.json or an ORG/NAME repo id" if kind == "model" else ""))
    path = Path(ref)
    if is_existing_path(ref):
        if kind == "model" and (path.is_dir() or path.suffix == ".json"):
            from kvcalc.specs.hf import load_hf_model

            return load_hf_model(path)
        if path.is_dir():
            raise KvcalcError(f"--{kind}: {ref} is a folder; expected a spec file")
        try:
            return load_spec_file(kind, path)
        except KvcalcError as e:  # named by the flag (the sixth audit: a spec file's errors named none)
            text = str(e) if str(e).startswith("--") else f"--{kind}: {e}"
            raise KvcalcError(text if kind == "model" else text.replace(" (models also take a config.json)", "")
                              ) from None
    if ref.endswith((*SPEC_SUFFIXES, ".json")):
        try:  # (a name past the file system's length is no link: OSError)
            link = path.is_symlink()
        except OSError:
            link = False
        if link:  # a link loop or a dangling link exists as a link, not as a file (the thirty-fourth audit, specs
            # 10: "no such file" beside a file listed in its folder)
            raise KvcalcError(f"--{kind}: {ref} is a symbolic link that leads to no file (a loop, or a missing "
                              "target)")
        raise KvcalcError(f"--{kind}: no such file {ref}")
    found = bundled_path(kind, ref)
    if found is not None:
        return load_spec_file(kind, found)
    names = catalog(kind)
    if kind == "model" and "/" in ref:
        from kvcalc.specs.hf import load_hf_model

        return load_hf_model(ref)
    if "," in ref:  # a list where one is taken (the fifteenth audit, P4: "closest: mi300x" for l40s,mi300x,t4)
        many = "plan, sweep and roofline take several" if kind == "gpu" else "sweep takes several"
        raise KvcalcError(f"--{kind}: one {kind} here, got the list {ref[:60]!r}; {many}")
    close = difflib.get_close_matches(ref.lower(), list(names), n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    listing = "kvcalc models" if kind == "model" else "kvcalc gpus"
    shown = repr(ref) if len(ref) <= 60 else repr(ref[:40] + "...")
    raise KvcalcError(f"--{kind}: unknown {kind} {shown}{hint} ('{listing}' lists all)")


def load_model(ref: str | ModelSpec) -> ModelSpec:
    return ref if isinstance(ref, ModelSpec) else resolve("model", ref)


def load_gpu(ref: str | HardwareSpec) -> HardwareSpec:
    return ref if isinstance(ref, HardwareSpec) else resolve("gpu", ref)


def profile_path(gpu: str, engine: str) -> Path:
    return spec_dir("profile") / f"{gpu}.{engine}.toml"


def available_engines(gpu: str) -> list[str]:
    """Engines with a bundled profile for this accelerator (by its spec name), measured, transferred or fitted."""
    return [e for e in ENGINES[2:] if profile_path(gpu, e).is_file()]


class ProfileWarning(UserWarning):
    """An engine profile is applied to roofs or links other than those it was fitted against, or none exists."""


def bundled_profile(gpu: str, engine: str) -> EngineProfile | None:
    """The bundled GPU.ENGINE profile, or None."""
    path = profile_path(gpu, engine)
    return load_spec_file("profile", path) if path.is_file() else None


def measured_profile(gpu: str, engine: str) -> EngineProfile | None:
    """The bundled GPU.ENGINE profile if it was fitted to that part's own measured tables, else None."""
    p = bundled_profile(gpu, engine)
    return p if p is not None and p.provenance == "measured" else None


# What a profile's curves depend on besides the engine: the roofs they are fractions of and the links its collectives
# were measured over. A spec that differs from the profile's reference spec in any of these gets the profile
# transferred onto it (kvcalc/engines/transfer.retarget), with a warning.
ROOF_AND_LINK_FIELDS = ("memory_bandwidth_GBps", "peak_tflops", "interconnect", "interconnect_bandwidth_GBps",
                        "interconnect_peer_links", "scale_up_gpus", "scale_out_bandwidth_GBps", "scale_out_nic_per_gpu",
                        "topology", "pcie_p2p")


def onto_spec(profile: EngineProfile, hw: HardwareSpec, notes: list[str] | None = None) -> EngineProfile:
    """The profile as fitted when hw has its reference spec's roofs and links; else transferred onto hw's, warning
    (and adding the warning to `notes`, the output's list, where given)."""
    ref_path = bundled_path("gpu", profile.gpu)
    reference = load_spec_file("gpu", ref_path) if ref_path is not None else None
    if reference is not None and all(getattr(reference, f) == getattr(hw, f) for f in ROOF_AND_LINK_FIELDS):
        return profile
    import warnings

    from kvcalc.engines.transfer import retarget

    if reference is None:
        raise KvcalcError(f"--engine: the {profile.label} profile names no bundled spec ({profile.gpu}) to compare "
                          f"{hw.name}'s roofs with; --engine roofline uses the datasheet efficiencies")
    differ = [f for f in ROOF_AND_LINK_FIELDS if getattr(reference, f) != getattr(hw, f)]
    message = (f"--gpu {hw.name}: its {', '.join(differ)} differ from hardware_specs/{reference.name}.toml, which the "
               f"{profile.label} profile was fitted against: its kernel curves are applied to this spec's roofs and its "
               "collectives re-derived for this spec's links")
    warnings.warn(message, ProfileWarning, stacklevel=3)
    if notes is not None:
        notes.append(message)
    return retarget(profile, reference, hw, measured=measured_profile, load_gpu=load_gpu)


def engine_refusal(engine: str, hw: HardwareSpec) -> str:
    """One line: why `--engine engine` has no profile on this part."""
    if engine in hw.unsupported_engines:
        return f"--engine: {engine} does not run on {hw.name}: {hw.unsupported_engines[engine]}"
    have = available_engines(hw.name)
    hint = f"profiles for {hw.name}: {', '.join(have)}" if have else f"no profiles exist for {hw.name}"
    return (f"--engine: no {engine} profile for {hw.name} ({hint}); --engine roofline uses the datasheet "
            "efficiencies")


def resolve_engine(engine: str, hw: HardwareSpec, notes: list[str] | None = None) -> EngineProfile | None:
    """The engine profile `--engine` names for this accelerator; None for the datasheet-efficiency roofline.

    A part's own measured profile, else its transferred or fitted one (EngineProfile.provenance says which, and
    the output names it). auto: vLLM's profile where one exists, then SGLang's, then TensorRT-LLM's, a measured one
    before a transferred one; the roofline, with a warning, only where no engine has a profile. A spec whose roofs or
    links differ from the profile's reference spec gets the profile transferred onto them, with a warning."""
    if engine not in ENGINES:
        from kvcalc.checks import case_hint

        raise KvcalcError(f"--engine: unknown engine {engine!r}{case_hint(engine, ENGINES)}; expected one of "
                          f"{', '.join(ENGINES)}")
    if engine == "roofline":
        return None
    if engine == "auto":
        found = None  # the first engine's profile; a later engine's only if it is measured and this one not
        for e in (DEFAULT_PROFILED_ENGINE, "sglang", "trtllm"):
            p = None if e in hw.unsupported_engines else bundled_profile(hw.name, e)  # None: no such file
            if p is None:
                continue
            if found is None or (p.provenance == "measured" and found.provenance != "measured"):
                found = p
            if found.provenance == "measured":
                break  # parsed no further than needed: start-up reads one profile where vLLM's is measured
        if found is None:
            import warnings

            message = (f"--engine auto: no engine profile for {hw.name}; the datasheet-efficiency roofline times it "
                       "(no fixed kernel latencies)")
            warnings.warn(message, ProfileWarning, stacklevel=2)
            if notes is not None:
                notes.append(message)
            return None
        return onto_spec(found, hw, notes)
    if engine in hw.unsupported_engines:
        raise KvcalcError(engine_refusal(engine, hw))
    profile = bundled_profile(hw.name, engine)
    if profile is None:
        raise KvcalcError(engine_refusal(engine, hw))
    return onto_spec(profile, hw, notes)
