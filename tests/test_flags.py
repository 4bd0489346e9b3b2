"""Flags that mean the same thing everywhere (issue 21 item 4), and the console script that builds one command
(issue 22's cold start).

Walks every command's click options (typer.main.get_command) and checks that a shared option has the same long
name, short flag, type, default and help wherever it appears; the few that differ are listed below with why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from kvcalc.cli import COMMAND_MODULES, app

runner = CliRunner()

# The commands that take a deployment (a model on GPUs): the shared options must agree across them.
DEPLOYMENT_COMMANDS = ("estimate", "compare", "capacity", "sweep", "roofline", "serve", "plan")
SHARED = ("--model", "--gpu", "--tp", "--pp", "--ep", "--weight-dtype", "--kv-dtype", "--engine", "--format",
          "--memory-utilization", "--context", "--concurrency", "--batch", "--prefill-chunk", "--engine-version")
# (command, flag): why its type, default or help differ from the other deployment commands'. Names and short flags
# must still agree.
DIFFERS = {
    ("sweep", "--model"): "an axis: comma-separated models",
    ("sweep", "--gpu"): "an axis: comma-separated GPUs",
    ("sweep", "--tp"): "an axis: comma-separated degrees",
    ("sweep", "--pp"): "an axis: comma-separated degrees",
    ("sweep", "--ep"): "an axis: comma-separated degrees",
    ("sweep", "--weight-dtype"): "an axis: comma-separated formats",
    ("sweep", "--kv-dtype"): "an axis: comma-separated formats",
    ("sweep", "--engine"): "an axis: comma-separated time models",
    ("sweep", "--context"): "an axis: comma-separated contexts",
    ("sweep", "--batch"): "an axis: comma-separated batches",
    ("roofline", "--gpu"): "one chart, several GPUs' roofs",
    ("roofline", "--batch"): "one chart, several batches' points",
    ("roofline", "--engine"): "where the points land: the roofs (default) or an engine's measured kernels",
    ("plan", "--gpu"): "the GPU types the search may choose from",
    ("plan", "--concurrency"): "a target to hold (one number), not a list",
    ("serve", "--tp"): "a comma-separated list draws the frontier",
    ("serve", "--concurrency"): "a number, a list (the frontier) or max",
    ("capacity", "--tp"): "optional: the fewest GPUs that fit by default",
    ("capacity", "--context"): "required: the context every sequence gets",
    ("capacity", "--batch"): "optional: as many as fit by default",
}
# Deployment commands without an option, and why.
ABSENT_OK = {
    ("roofline", "--tp"): "the chart plots arithmetic intensity, which tensor parallelism leaves unchanged "
                          "(FLOPs and bytes both divide by tp)",
    ("roofline", "--pp"): "as --tp: a pipeline stage has the whole model's intensity",
    ("roofline", "--ep"): "as --tp", ("roofline", "--memory-utilization"): "no memory fit on a chart",
    ("roofline", "--prefill-chunk"): "no memory fit on a chart", ("roofline", "--format"): "writes a chart",
    ("roofline", "--engine-version"): "no time outside the kernels on a chart",
    ("sweep", "--format"): "writes a file (--out)", ("sweep", "--engine-version"): "one release per engine axis",
    ("compare", "--engine-version"): "variants of one deployment; estimate takes it",
    ("sweep", "--concurrency"): "no serving", ("estimate", "--concurrency"): "no serving",
    ("compare", "--concurrency"): "no serving", ("roofline", "--concurrency"): "no serving",
    ("capacity", "--concurrency"): "it computes the concurrency",
    ("serve", "--context"): "the context is --input-len + --output-len",
    ("plan", "--context"): "the context is --input-len + --output-len",
    ("serve", "--batch"): "the batch follows from --concurrency", ("plan", "--batch"): "it chooses the batch",
    ("plan", "--tp"): "it chooses TP, PP and EP", ("plan", "--pp"): "it chooses", ("plan", "--ep"): "it chooses",
    ("plan", "--weight-dtype"): "it chooses the formats (--convert)", ("plan", "--kv-dtype"): "it chooses",
    ("plan", "--engine"): "--engines: the engines it may choose from", ("plan", "--engine-version"): "it chooses",
    ("plan", "--prefill-chunk"): "each engine's",
    ("serve", "--prefill-chunk"): "--step-tokens: the tokens a step schedules",
}
# Short flags used outside the deployment commands for something else, and why they are left.
SHORT_ELSEWHERE = {("import", "-n"): "--name, older than --concurrency's -n; import takes no deployment",
                   ("plan", "-o"): "--output-len, paired with -i as in the README's examples; plan writes no file "
                                   "(-o is --out on sweep and roofline)"}


def commands(cmd=None, path=()):
    cmd = cmd or typer.main.get_command(app)
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from commands(sub, (*path, name))
    else:
        yield " ".join(path), cmd


def options(cmd) -> dict:
    """{long flag: click option} of the visible options."""
    return {p.opts[0]: p for p in cmd.params if p.opts and p.opts[0].startswith("--") and not p.hidden}


def shorts(p) -> list[str]:
    return sorted(o for o in (*p.opts, *p.secondary_opts) if not o.startswith("--"))


def describe(p) -> tuple:
    default = p.default.value if hasattr(p.default, "value") else p.default
    if hasattr(p, "bare_type"):  # typer >= 0.29 (its own click)
        kind = p.bare_type()
    else:  # older typer, down to the floor in pyproject.toml (0.18): click's type, its choices, multiple
        kind = (p.type.name, tuple(map(str, getattr(p.type, "choices", None) or ())), p.multiple)
    return (kind, default, p.help, p.required)


ALL = dict(commands())


def test_every_short_flag_has_one_long_name_everywhere():
    seen: dict[str, set] = {}
    for name, cmd in ALL.items():
        for p in cmd.params:
            if p.hidden or not p.opts:
                continue
            for short in shorts(p):
                if (name, short) not in SHORT_ELSEWHERE:
                    seen.setdefault(short, set()).add(p.opts[0])
    assert {s: longs for s, longs in seen.items() if len(longs) > 1} == {}
    assert seen["-c"] == {"--context"}  # not serve's concurrency any more
    assert seen["-n"] == {"--concurrency"}
    assert seen["-b"] == {"--batch"} and seen["-m"] == {"--model"} and seen["-g"] == {"--gpu"}


@pytest.mark.parametrize("flag", SHARED)
def test_a_shared_option_has_the_same_short_flag_type_default_and_help(flag):
    found = {name: options(ALL[name])[flag] for name in DEPLOYMENT_COMMANDS if flag in options(ALL[name])}
    assert found, flag
    assert len({tuple(shorts(p)) for p in found.values()}) == 1, {n: shorts(p) for n, p in found.items()}
    same = {name: describe(p) for name, p in found.items() if (name, flag) not in DIFFERS}
    assert len(set(same.values())) <= 1, same  # (--concurrency: serve's and plan's differ by design)


def test_every_deployment_command_has_the_shared_options_or_says_why_not():
    missing = [(name, flag) for name in DEPLOYMENT_COMMANDS for flag in SHARED
               if flag not in options(ALL[name]) and (name, flag) not in ABSENT_OK]
    assert missing == []
    stale = [k for k in (*ABSENT_OK, *DIFFERS) if (k[1] in options(ALL[k[0]])) != (k in DIFFERS)]
    assert stale == []  # an exception for an option that now is (or is not) there


def test_the_defaults_users_compare():
    # the newcomer review: sweep and roofline defaulted to bf16 weights while estimate read the checkpoint's own
    for name in ("estimate", "compare", "capacity", "sweep", "roofline", "serve"):
        assert options(ALL[name])["--weight-dtype"].default == "auto", name
        assert options(ALL[name])["--kv-dtype"].default == "bf16", name
    for name in ("estimate", "compare", "serve", "capacity"):
        assert options(ALL[name])["--engine"].default == "auto", name
    assert options(ALL["capacity"])["--tp"].opts == ["--tp", "--gpus"]  # --gpus kept as the old name


def test_serve_concurrency_is_n_and_c_says_so():
    r = runner.invoke(app, ["serve", "-m", "llama-3-8b", "-i", "512", "--output-len", "128", "-c", "8"])
    assert r.exit_code == 2
    assert "-n/--concurrency 8" in r.output and "Traceback" not in r.output
    by_n = json.loads(runner.invoke(app, ["serve", "-m", "llama-3-8b", "-i", "512", "--output-len", "128", "-n", "8",
                                          "-f", "json"]).stdout)
    assert by_n["concurrency"] == 8


def test_capacity_takes_tp_and_the_old_gpus_alike():
    args = ["capacity", "-m", "llama-3-70b", "-c", "8192", "-f", "json"]
    by_tp = json.loads(runner.invoke(app, [*args, "--tp", "4"]).stdout)
    by_gpus = json.loads(runner.invoke(app, [*args, "--gpus", "4"]).stdout)
    assert by_tp["tensor_parallel"] == by_gpus["tensor_parallel"] == 4
    assert by_tp["max_sequences_at_context"] == by_gpus["max_sequences_at_context"]


def test_compare_takes_the_deployment():
    """llama-3-70b bf16 (80 layers, 8 KV heads of 128: 327,680 B of KV a token) holds no 8k sequence on one
    80 GiB H100 (141 GB of weights); on 4 its own row is capacity's --tp 4 concurrency, and each GPU holds 2 of
    the 8 KV heads (MHA 16 of its 64), so MHA holds at most an eighth as many sequences."""
    def rows(*extra):
        r = runner.invoke(app, ["compare", "-m", "llama-3-70b", "-c", "8192", "--attn", "mha", "-f", "json", *extra])
        assert r.exit_code == 0, r.output
        return {row["variant"]: row for row in json.loads(r.stdout)}

    one, four = rows(), rows("--tp", "4")
    assert one["gqa (own)"]["max_batch_at_context"] == 0 and not one["gqa (own)"]["fits"]
    cap = json.loads(runner.invoke(app, ["capacity", "-m", "llama-3-70b", "-c", "8192", "--tp", "4", "-f",
                                         "json"]).stdout)
    assert four["gqa (own)"]["max_batch_at_context"] == cap["max_sequences_at_context"] > 0
    assert four["gqa (own)"]["fits"]
    # 8x the KV a token, and MHA's larger K/V projections leave a little less room: at most an eighth
    assert 0 < four["mha"]["max_batch_at_context"] <= four["gqa (own)"]["max_batch_at_context"] // 8


def test_sweep_reads_the_checkpoint_format_as_estimate_does(tmp_path):
    """gpt-oss-120b ships MXFP4 experts: about 60.8 GiB (the checkpoint's 65.3 GB of safetensors,
    https://huggingface.co/openai/gpt-oss-120b), where bf16 would be about 217 GiB; one H100 holds it."""
    out = tmp_path / "s.csv"
    r = runner.invoke(app, ["sweep", "-m", "gpt-oss-120b", "-b", "1", "-c", "4096", "-o", str(out)])
    assert r.exit_code == 0, r.output
    import csv

    row = next(csv.DictReader(out.open()))
    assert row["weight_dtype"] == "mxfp4"
    weights = next(float(v) for k, v in row.items() if k.startswith("weights") and "bytes" in k)
    assert 55 * 2**30 < weights < 66 * 2**30


# ---- the console script builds the one command it runs (issue 22) ----

def test_command_modules_name_every_command_and_group():
    top = typer.main.get_command(app).commands
    assert set(COMMAND_MODULES) == set(top)
    for name, module in COMMAND_MODULES.items():
        assert top[name].callback is None or top[name].callback.__module__.endswith(module) or \
            hasattr(top[name], "commands"), name


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_one_command_app_parses_as_the_whole_app(name):
    whole = typer.main.get_command(app).commands[name]
    one = typer.main.get_command(app.only(name)).commands
    assert list(one) == [name]
    flat = dict(commands(one[name])) if hasattr(one[name], "commands") else {"": one[name]}
    full = dict(commands(whole)) if hasattr(whole, "commands") else {"": whole}
    assert flat.keys() == full.keys()
    for key in full:
        assert [(p.opts, describe(p)) for p in flat[key].params] == [(p.opts, describe(p)) for p in full[key].params]


def test_estimate_imports_no_other_command():
    probe = ("import sys\nsys.argv = ['kvcalc', 'estimate', '-m', 'llama-3-8b', '-f', 'json']\n"
             "from kvcalc.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('LOADED:' + ','.join(sorted(m for m in sys.modules if m.startswith('kvcalc.cli.'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = set(out.rsplit("LOADED:", 1)[1].strip().split(","))
    assert "kvcalc.cli.estimate_cmd" in loaded
    assert not loaded & {f"kvcalc.cli.{m}" for m in COMMAND_MODULES.values() if m != "estimate_cmd"}


@pytest.mark.parametrize("argv, collecting", [(["estimate", "-m", "llama-3-8b", "-f", "json"], False),
                                              (["plan", "--help"], True)])
def test_the_console_script_collects_garbage_only_where_a_run_is_long(argv, collecting):
    """pyproject's `kvcalc` script is kvcalc.console:main: a one-shot command (estimate) runs with the cyclic
    collector off, a long one (plan, serve, web) keeps it on."""
    import tomllib

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"kvcalc": "kvcalc.console:main"}
    probe = (f"import gc, sys\nsys.argv = ['kvcalc', *{argv!r}]\nfrom kvcalc.console import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\nprint('COLLECTING', gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith(f"COLLECTING {collecting}")
