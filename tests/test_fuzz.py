"""Hostile input, property-based: every subcommand, every spec field, every config.json field.

The property: kvcalc exits 0 or 2, never with a traceback or a hang; an error is one line naming the flag, file or
field; JSON output is strict JSON (no NaN or Infinity) and table output prints no nan or inf. A fixed seed
(derandomize) and bounded example counts keep CI deterministic and quick.
"""

import json
import os
import re
import signal
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.specs.catalog import spec_dir
from kvcalc.specs.toml_out import _tables

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures" / "hf"
FUZZ = settings(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))

HOSTILE_NUMBERS = ["0", "-1", "1", "3", "7", "1e310", "nan", "inf", "-inf", "1e300", "5e-324", str(2**63),
                   str(10**400), "abc", "", "0.5", "65536", "99999999999", "0x10", "1_000"]
HOSTILE_NAMES = ["llama-3-8b", "deepseek-v3", "mistral-7b", "gemma-2-9b", "falcon-7b", "gpt-3-175b",
                 "mixtral-8x7b", "x" * 300, "/dev/zero", "/dev/null", "/", ".", "nope", "", "a/b", "/etc/passwd",
                 "README.md", "\x00", "model.toml", "config.json"]
HOSTILE_GPUS = ["h100", "mi300x", "rtx-4090", "l40s", "b200", "x" * 300, "/dev/zero", "nope", "", "/"]
HOSTILE_OUT = ["/nonexistent/dir/out", "/", ".", "x" * 300, "/dev/full", "/proc/version", "out"]


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def invoke(args: list[str], seconds: int = 20):
    """Run the CLI in-process with a time limit; a hang is a failure like a traceback."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        return runner.invoke(app, args)
    except Hang:
        pytest.fail(f"hang: kvcalc {' '.join(args)[:200]}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def assert_well_behaved(args: list[str], r) -> None:
    shown = " ".join(a[:40] for a in args)
    assert r.exception is None or isinstance(r.exception, SystemExit), f"traceback from kvcalc {shown}: {r.exception!r}"
    assert r.exit_code in (0, 2), f"exit {r.exit_code} from kvcalc {shown}: {r.output[-300:]}"
    assert "Traceback" not in r.output
    if r.exit_code == 2:
        errors = [line for line in r.stderr.splitlines() if line.startswith("kvcalc: error:")]
        assert len(errors) == 1, f"expected one error line from kvcalc {shown}: {r.stderr[-300:]}"
        return
    if "json" in args:
        json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the JSON of kvcalc {shown}"))
    else:
        assert not re.search(r"\b(nan|inf)\b", r.stdout, re.IGNORECASE), f"non-finite output from kvcalc {shown}"


FLAGS = {
    "estimate": ["--batch", "--context", "--prompt", "--kv-lora-rank", "--rope-dim", "--memory-utilization", "--tp",
                 "--prefill-chunk", "--weight-dtype", "--kv-dtype", "--attn", "--engine"],
    "compare": ["--batch", "--context", "--memory-utilization", "--prefill-chunk", "--attn", "--engine",
                "--weight-dtype"],
    "capacity": ["--context", "--batch", "--gpus", "--target-tokens-per-s", "--price-per-gpu-hour",
                 "--memory-utilization", "--prefill-chunk", "--engine", "--kv-dtype", "--max-num-batched-tokens",
                 "--max-num-seqs", "--vllm-runner", "--vllm-version", "--cuda-graph-memory"],
    "serve": ["--input-len", "--output-len", "--concurrency", "--request-rate", "--tp", "--engine", "--weight-dtype",
              "--kv-dtype", "--memory-utilization", "--step-tokens", "--disaggregate", "--price-per-gpu-hour",
              "--max-ttft-ms", "--max-tpot-ms", "--arrivals", "--vllm-runner", "--vllm-version",
              "--cuda-graph-memory"],
}
CHOICES = {
    "--attn": ["mha", "mqa", "gqa3", "gqa0", "gqa8", "mla", "linear", "xx", "gqa100000", "own", "", ","],
    "--engine": ["auto", "roofline", "vllm", "trtllm", "gpt-fast", "tgi", ""],
    "--weight-dtype": ["bf16", "fp8", "int4", "int8", "fp32", "x", ""],
    "--kv-dtype": ["bf16", "fp8", "int4", "x"],
    "--concurrency": ["1", "max", "1,8", "0", "-1", "abc", "nan", "1e300", ",", "64"],
    "--disaggregate": ["1:1", "0:1", "x", "1:1:1", "2:3", ":", "1:-1"],
    "--tp": ["1", "2", "1,2", "3", "0", "x", "8"],
    "--arrivals": ["staggered", "waves", "", "x"],
    "--vllm-runner": ["auto", "v1", "v2", "v0", "v3", ""],
    "--vllm-version": ["latest", "0.6.5.dev", "0.11", "v0.30.1", "0.9.x", "11", "0.x", "", "9" * 60, "0.99999"],
}


@st.composite
def planning_argv(draw):
    command = draw(st.sampled_from(sorted(FLAGS)))
    args = [command, "-m", draw(st.sampled_from(HOSTILE_NAMES))]
    if draw(st.booleans()):
        args += ["-g", draw(st.sampled_from(HOSTILE_GPUS))]
    for flag in draw(st.lists(st.sampled_from(FLAGS[command]), max_size=3, unique=True)):
        pool = CHOICES.get(flag, HOSTILE_NUMBERS)
        args += [flag, draw(st.one_of(st.sampled_from(pool), st.integers(-10, 10**12).map(str)))]
    if command == "capacity" and "--context" not in args:
        args += ["--context", "4096"]
    if command == "serve":
        args += [] if "--input-len" in args else ["--input-len", "512"]
        args += [] if "--output-len" in args else ["--output-len", "128"]
        if "--concurrency" not in args and "--request-rate" not in args:
            args += ["--concurrency", "8"]
    args += ["-f", draw(st.sampled_from(["table", "json", "csv"]))]
    return args


@pytest.mark.slow
@settings(FUZZ, max_examples=250)
@given(planning_argv())
def test_estimate_compare_and_capacity_survive_hostile_flags(args):
    assert_well_behaved(args, invoke(args))


@settings(FUZZ, max_examples=40)
@given(st.sampled_from(["sweep", "roofline"]), st.sampled_from(HOSTILE_NAMES[:7]), st.sampled_from(HOSTILE_OUT),
       st.sampled_from(["1,8", "0", "1e310", "abc", "", ",", str(2**63), "64"]),
       st.sampled_from(["1024", "0", "-5", "1e9", "abc", str(10**12)]))
def test_sweep_and_roofline_survive_hostile_outputs_and_axes(tmp_path_factory, command, model, out, batch, context):
    suffix = ".csv" if command == "sweep" else ".png"
    target = out if out.startswith("/") else str(tmp_path_factory.mktemp("out") / (out + suffix))
    args = [command, "-m", model, "--batch", batch, "--context", context, "--out", target]
    assert_well_behaved(args, invoke(args, seconds=60))


@settings(FUZZ, max_examples=60)
@given(st.sampled_from(["show model", "show gpu", "import", "validate --published", "profiles ledger --data",
                        "validate --gpu h200 --rescore"]),
       st.sampled_from(HOSTILE_NAMES + HOSTILE_OUT))
def test_file_taking_commands_survive_hostile_paths(tmp_path_factory, command, path):
    args = [*command.split(), path]
    if command == "import":
        args += ["--name", "n", "--out", str(tmp_path_factory.mktemp("imp") / "n.toml")]
    assert_well_behaved(args, invoke(args))


def test_a_fifo_never_blocks(tmp_path):
    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)
    for args in (["estimate", "-m", str(fifo)], ["show", "model", str(fifo)], ["estimate", "-m", "llama-3-8b", "-g", str(fifo)]):
        r = invoke(args, seconds=10)
        assert r.exit_code == 2 and "not a regular file" in r.stderr


HOSTILE_VALUES = [float("inf"), float("nan"), -1, 0, 1e308, 5e-324, 2**62, 2**63, "x", True, [], [1], 3.5, 10**30]


def _fields(data: dict, prefix=()):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _fields(value, (*prefix, key))
        elif key not in ("sources",):
            yield (*prefix, key)


def _mutated(data: dict, path: tuple, value) -> dict:
    out = json.loads(json.dumps(data))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


GPU = tomllib.loads((spec_dir("gpu") / "h100-sxm.toml").read_text())
MODELS = {m: tomllib.loads((spec_dir("model") / f"{m}.toml").read_text()) for m in ("llama-3-8b", "deepseek-v3", "gemma-2-9b", "nemotron-h-8b")}
SPEC_CASES = [("gpu", None, f) for f in _fields(GPU)] + [("model", m, f) for m, d in MODELS.items() for f in _fields(d)]


def _toml(data: dict) -> str:
    lines: list[str] = []
    _tables("", data, lines)
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@settings(FUZZ, max_examples=250)
@given(st.sampled_from(SPEC_CASES), st.sampled_from(HOSTILE_VALUES), st.sampled_from(["estimate", "compare", "capacity", "sweep"]))
def test_every_spec_field_survives_hostile_values(tmp_path_factory, case, value, command):
    kind, model, field = case
    folder = tmp_path_factory.mktemp("spec")
    spec = folder / "s.toml"
    spec.write_text(_toml(_mutated(GPU if kind == "gpu" else MODELS[model], field, value)))
    target = ["-g", str(spec), "-m", "llama-3-8b"] if kind == "gpu" else ["-m", str(spec)]
    args = [command, *target, "--context", "4096"]
    if command == "sweep":
        args += ["--batch", "1,64", "--out", str(folder / "o.csv")]
    else:
        args += ["-f", "json"]
    assert_well_behaved(args, invoke(args, seconds=60))


CONFIGS = {name: json.loads((FIXTURES / name / "config.json").read_text())
           for name in ("Meta-Llama-3-8B", "DeepSeek-V3", "gemma-2-9b", "Qwen3-30B-A3B", "falcon-7b", "gpt2",
                        "Jamba-v0.1", "Nemotron-H-8B-Base-8K")}
CONFIG_CASES = [(name, (key,)) for name, data in CONFIGS.items() for key in data]


DIGITS_5000 = "9" * 5000  # written as a JSON number: past Python's 4300-digit int parsing limit
CONFIG_VALUES = [*HOSTILE_VALUES, None, "false", {"a": 1}, 5, DIGITS_5000]


@pytest.mark.slow
@settings(FUZZ, max_examples=250)
@given(st.sampled_from(CONFIG_CASES), st.sampled_from(CONFIG_VALUES))
def test_every_config_field_survives_hostile_values(tmp_path_factory, case, value):
    name, field = case
    config = tmp_path_factory.mktemp("hf") / "config.json"
    data = _mutated(CONFIGS[name], field, 0) if value is None else CONFIGS[name]
    text = json.dumps(data)
    if value is not None:  # replace the field textually, so that a 5000-digit number can be written
        literal = value if value is DIGITS_5000 else json.dumps(value)
        text = json.dumps({k: v for k, v in data.items() if k != field[0]})[:-1] + f', "{field[0]}": {literal}}}'
    config.write_text(text)
    args = ["estimate", "-m", str(config), "-f", "json"]
    assert_well_behaved(args, invoke(args))


@pytest.mark.parametrize("text, message", [
    ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
    ('{"num_hidden_layers": ' + "9" * 5000 + "}", "not valid JSON"),
])
def test_malformed_configs_are_one_line(tmp_path, text, message):
    config = tmp_path / "config.json"
    config.write_text(text)
    r = invoke(["estimate", "-m", str(config)])
    assert r.exit_code == 2 and message in r.stderr


def test_boolean_fields_must_be_booleans(tmp_path):
    # "false" is a non-empty string: reading it as true would tie the embeddings of a model that does not.
    data = dict(CONFIGS["Meta-Llama-3-8B"], tie_word_embeddings="false")
    (tmp_path / "config.json").write_text(json.dumps(data))
    r = invoke(["estimate", "-m", str(tmp_path / "config.json")])
    assert r.exit_code == 2 and "tie_word_embeddings: expected true or false, got 'false'" in r.stderr


def test_layer_types_must_be_a_list(tmp_path):
    data = dict(json.loads((FIXTURES / "gemma-3-1b-pt" / "config.json").read_text()), layer_types=5)
    (tmp_path / "config.json").write_text(json.dumps(data))
    r = invoke(["estimate", "-m", str(tmp_path / "config.json")])
    assert r.exit_code == 2 and "layer_types: expected a list of num_hidden_layers (26) strings" in r.stderr


@pytest.mark.parametrize("name, text, message", [
    ("deep.toml", "a = " + "[" * 10_000 + "]" * 10_000 + "\n", "not valid TOML"),
    ("bom.toml", "\ufeff" + (spec_dir("gpu") / "h100-sxm.toml").read_text(), None),
    ("nosuffix", "name = 'x'\n", "spec files end in .toml, .yaml or .yml"),
])
def test_spec_file_errors_say_what_they_are(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    r = invoke(["estimate", "-m", "llama-3-8b", "-g", str(path)])
    if message is None:  # a byte-order mark is fine
        assert r.exit_code == 0
    else:
        assert r.exit_code == 2 and message in r.stderr and "YAML" not in r.stderr


@pytest.mark.parametrize("command", [
    ["sweep", "-m", "llama-3-8b"], ["roofline", "-m", "llama-3-8b"], ["validate", "--gpu", "h100"],
    ["calibrate"], ["import", str(FIXTURES / "gpt2"), "--name", "n"],
])
@pytest.mark.parametrize("out, message", [
    ("missing/x", "does not exist"), ("file/x", "is not a folder"), ("folder", "is a folder"), ("x" * 256, "longer than 255"),
])
def test_unwritable_out_fails_before_any_work(tmp_path, command, out, message):
    (tmp_path / "file").write_text("")
    suffix = {"sweep": ".csv", "roofline": ".png", "validate": ".csv", "calibrate": ".toml", "import": ".toml"}[command[0]]
    (tmp_path / ("folder" + suffix)).mkdir()
    r = invoke([*command, "--out", str(tmp_path / (out + suffix))])
    assert r.exit_code == 2 and message in r.stderr, r.stderr


def test_a_full_device_is_one_line(tmp_path, monkeypatch):
    import errno

    from kvcalc.errors import KvcalcError
    from kvcalc.specs.files import write_text

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(KvcalcError, match=r"--out: cannot write .*\(No space left on device\) \(the device is full\)"):
        write_text(tmp_path / "x.toml", "a = 1", "--out")


def test_a_read_only_folder_fails_before_any_work(tmp_path, monkeypatch):
    # As root every folder is writable, so the permission check is simulated.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    r = invoke(["sweep", "-m", "llama-3-8b", "--out", str(tmp_path / "s.csv")])
    assert r.exit_code == 2 and "no permission to write in" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["estimate", "-m", "/dev/zero"], "/dev/zero: spec files end in"),
    (["estimate", "-m", "/dev/zero.toml"], "no such file"),
    (["estimate", "-m", "x" * 300], "unknown model"),
    (["estimate", "-m", "llama-3-8b", "-g", "y" * 300 + ".toml"], "no such file"),
    (["estimate", "-m", "llama-3-8b", "-c", "1" + "0" * 400], "--context: expected a whole number"),
    (["estimate", "-m", "llama-3-8b", "-b", str(2**63)], "--batch: expected a whole number"),
    (["capacity", "-m", "llama-3-8b", "-c", "4096", "--target-tokens-per-s", "inf"], "--target-tokens-per-s: expected a finite"),
    (["capacity", "-m", "llama-3-8b", "-c", "4096", "--target-tokens-per-s", "1e300"], "--target-tokens-per-s: expected a finite"),
])
def test_hostile_names_and_numbers_are_one_line(args, message):
    r = invoke(args)
    assert r.exit_code == 2 and message in r.stderr, r.stderr


def test_a_huge_hidden_size_is_refused_not_wrapped(tmp_path):
    # 2**62 used to wrap int64 in sweep into a negative KV size that "fits".
    data = _mutated(MODELS["llama-3-8b"], ("hidden_size",), 2**62)
    spec = tmp_path / "huge.toml"
    spec.write_text(_toml(data))
    r = invoke(["sweep", "-m", str(spec), "--out", str(tmp_path / "s.csv")])
    assert r.exit_code == 2 and "hidden_size: Input should be less than or equal to 100000000" in r.stderr


def test_yaml_without_pyyaml_says_so(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed: `import yaml` fails
    spec = tmp_path / "gpu.yaml"
    spec.write_text("name: x\n")
    r = invoke(["estimate", "-m", "llama-3-8b", "-g", str(spec)])
    assert r.exit_code == 2 and "YAML spec files need PyYAML" in r.stderr


@pytest.mark.parametrize("args", [["validate", "--gpu", "h100"], ["calibrate", "--out", "c.toml"]])
def test_validate_and_calibrate_without_torch_are_one_line(args, monkeypatch, tmp_path):
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    r = invoke(args)
    assert r.exit_code == 2
    assert r.stderr == "kvcalc: error: validate and calibrate need PyTorch: pip install 'kvcalc[validate]'\n"
