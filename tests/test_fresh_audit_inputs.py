"""Fresh audit of 2026-12-05 (docs/validation.md): inputs that hung, crashed or went unnamed. One test a finding.

Commands that used to hang or fill the memory run as the console script in a subprocess with a timeout, so that a
regression fails the test instead of stopping the run.
"""

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.ledgers.serving_sim import is_serving_sim_ledger
from kvcalc.specs.files import check_writable
from test_audit import one_line_error  # tests/ is on sys.path (pytest's rootdir-relative imports)

ROOT = Path(__file__).parent.parent
KVCALC = Path(sys.executable).parent / "kvcalc"  # the console script (kvcalc.console:main) of this environment
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def script(*args, timeout=60, env=None, memory_bytes=None):
    """The console script run to its end (a hang is subprocess.TimeoutExpired, a test failure)."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))) if memory_bytes else None
    return subprocess.run([str(KVCALC), *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})}, preexec_fn=limit, cwd=ROOT)


def script_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [x for x in result.stderr.splitlines() if x.startswith("kvcalc: error:")]
    assert len(lines) == 1, result.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def fifo(tmp_path):
    def make(name):
        path = tmp_path / name
        os.mkfifo(path)
        return path
    return make


# ---------------------------------------------------------------------------------------------------------- A
SERVE = ("serve", "-m", "llama-3-8b", "-i", 2000, "--output-len", 200, "-n", 64, "-f", "json")


@pytest.mark.parametrize("flag, value", [
    ("--prefix-hit-rate", 0.9), ("--dataset", "garbage"), ("--percentile", "p-7"),
    ("--num-prompts", 0), ("--range-ratio", 7), ("--seed", 3),
    ("--seed", 0), ("--percentile", "99"),  # given at all, even at the simulator's default, it is still ignored
])
def test_a_serve_without_simulate_refuses_the_simulation_only_flags(flag, value):
    """`kvcalc serve -m llama-3-8b -i 2000 --output-len 200 -n 64 --max-num-seqs 4 --prefix-hit-rate 0.9 --dataset
    garbage --percentile p-7 --num-prompts 0 --range-ratio 7 -f json` exited 0 with the same numbers as without them."""
    one_line_error(cli(*SERVE, flag, value), f"{flag}: only with --simulate", f"leave out {flag}")


def test_a_serve_lists_the_first_simulation_only_flag_given_and_the_frontier_refuses_them_too():
    """The reproducer's whole line names one flag (its first simulation-only option in serve's order); a frontier
    (-n 1,8) takes the same check."""
    one_line_error(cli(*SERVE, "--prefix-hit-rate", 0.9, "--dataset", "garbage", "--percentile",
                       "p-7", "--num-prompts", 0, "--range-ratio", 7), "--num-prompts: only with --simulate")
    one_line_error(cli("serve", "-m", "llama-3-8b", "-i", 100, "--output-len", 10, "-n", "1,8", "--seed", 4),
                   "--seed: only with --simulate")
    # (--max-num-seqs is the closed form's too since the fourteenth audit's S9: the requests the engine runs at once)
    assert cli(*SERVE).exit_code == 0  # without them the closed form runs as before


# ---------------------------------------------------------------------------------------------------------- B
def test_b_validate_serve_on_a_fifo_or_a_device_is_one_line_error_not_a_hang(fifo):
    """`timeout 10 kvcalc validate --serve fifo.csv` was rc 124 (a hang); `kvcalc validate --serve /dev/zero` a
    MemoryError traceback: is_serving_sim_ledger opened and read a line before the regular-file check."""
    # a regular file is still told apart by its header: the bundled serving-benchmark ledger is one, TensorRT-LLM's
    # throughput table (header id,model,gpu,...) is not
    assert is_serving_sim_ledger(ROOT / "validation/serve/unseen-serving.csv") is True
    assert is_serving_sim_ledger(ROOT / "validation/serve/trtllm-perf-overview.csv") is False
    path = fifo("fifo.csv")  # in a subprocess: were it read again, this process would hang or run out of memory
    script_error(script("validate", "--serve", path, timeout=60), str(path), "not a regular file")
    script_error(script("validate", "--serve", "/dev/zero", timeout=60, memory_bytes=4 << 30), "/dev/zero",
                 "not a regular file")


# ---------------------------------------------------------------------------------------------------------- C
HEADER = "id,engine,engine_version,gpu,model,weight_dtype,kv_dtype,tp,metric,batch,input_len,output_len,measured,use,source"


def _row(tp=1, batch=1, input_len=5, output_len=200, measured="104.9"):
    return (f"x1,gpt-fast,2023-12,a100-sxm-80gb,llama-2-7b,bf16,bf16,{tp},decode_tokens_per_s,{batch},{input_len},"
            f"{output_len},{measured},score,s")


@pytest.mark.parametrize("field, row", [
    ("batch", _row(batch=-1)), ("input_len", _row(input_len=-5)), ("batch", _row(batch=0)),
    ("measured", _row(measured="-1")), ("measured", _row(measured="nan")), ("measured", _row(measured="inf")),
    ("tp", _row(tp=0)), ("output_len", _row(output_len=0)),
])
def test_c_validate_published_refuses_a_row_with_a_nonpositive_batch_length_degree_or_measurement(tmp_path, field, row):
    """`kvcalc validate --published neg.csv` with batch -1 (or input_len -5) ended in a TypeError traceback in the
    roofline; batch 0 and a negative measured value were scored."""
    path = tmp_path / "neg.csv"
    path.write_text(f"{HEADER}\nok,gpt-fast,2023-12,a100-sxm-80gb,llama-2-7b,bf16,bf16,1,decode_tokens_per_s,1,5,200,"
                    f"104.9,score,s\n{row}\n")  # the bad row on line 3, after a good one
    value = row.split(",")[HEADER.split(",").index(field)]
    one_line_error(cli("validate", "--published", path), str(path), "row x1", f"field {field}: expected a positive",
                   f"got '{value}'", "(line 3)")


# ---------------------------------------------------------------------------------------------------------- D
def test_d_writing_to_a_fifo_is_one_line_error_naming_the_flag(fifo):
    """`sweep -o fifo.csv`, `roofline -o fifo.svg` and `plan --plot fifo.svg` hung; `serve --plot fifo.png` printed
    "cannot write ... (None)"."""
    csv, svg, png = fifo("fifo.csv"), fifo("fifo.svg"), fifo("fifo.png")
    for path, flag in ((csv, "--out"), (svg, "--plot"), (png, "--plot")):
        with pytest.raises(KvcalcError, match=f"^{flag}: {path} is not a regular file"):
            check_writable(path, flag, (path.suffix,))
    script_error(script("sweep", "-m", "llama-3-8b", "-o", csv), f"--out: {csv} is not a regular file")
    script_error(script("roofline", "-m", "llama-3-8b", "-o", svg), f"--out: {svg} is not a regular file")
    script_error(script("plan", "-m", "llama-3.2-1b", "-g", "h100", "-i", 500, "-o", 100, "-n", 8, "--plot", svg),
                 f"--plot: {svg} is not a regular file")
    script_error(script("serve", "-m", "llama-3-8b", "-i", 100, "--output-len", 10, "-n", "1,8", "--plot", png),
                 f"--plot: {png} is not a regular file")


def test_d_a_regular_file_or_a_new_path_is_still_writable(tmp_path):
    """The FIFO check refuses only what exists and is not a regular file: an old result is overwritten as before."""
    old = tmp_path / "old.csv"
    old.write_text("x\n")
    check_writable(old, "--out", (".csv",))
    check_writable(tmp_path / "new.csv", "--out", (".csv",))


# ---------------------------------------------------------------------------------------------------------- E
def test_e_an_absurd_columns_is_laid_out_as_1000_not_for_minutes():
    """`COLUMNS=10000000 kvcalc estimate -m llama-3-8b` took ~10 s, COLUMNS=99999999 ~95 s (rich lays the tables out
    for the width): a COLUMNS above 1000 is taken as 1000, the same table in well under the 60 s allowed here."""
    wide = script("estimate", "-m", "llama-3-8b", env={"COLUMNS": "99999999"}, timeout=60)
    at_1000 = script("estimate", "-m", "llama-3-8b", env={"COLUMNS": "1000"}, timeout=60)
    assert wide.returncode == 0 and at_1000.returncode == 0, (wide.stderr, at_1000.stderr)
    assert wide.stdout == at_1000.stdout and "llama-3-8b" in wide.stdout


# ---------------------------------------------------------------------------------------------------------- F
def test_f_capacity_tp_0_names_tp_not_gpus():
    """`kvcalc capacity -m llama-3-8b -c 1000 --tp 0` said "--gpus: expected a whole number from 1 to 1,024, got 0";
    the flag is --tp (--gpus its old alias). llama-3-8b has 32 query heads, which 3 does not divide."""
    line = one_line_error(cli("capacity", "-m", "llama-3-8b", "-c", 1000, "--tp", 0),
                          "--tp: expected a whole number from 1 to 1,024, got 0")
    assert "--gpus" not in line
    one_line_error(cli("capacity", "-m", "llama-3-8b", "-c", 1000, "--gpus", 3),
                   "--tp: tensor parallelism over 3 GPUs needs it to divide the 32 query heads")
