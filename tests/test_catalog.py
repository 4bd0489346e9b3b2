"""Finding specs by name, alias and path; the wheel carries the spec folders."""

import subprocess
import sys
import zipfile

import pytest

from kvcalc.errors import KvcalcError
from kvcalc.specs.catalog import load_gpu, load_model


def test_aliases_and_case_resolve():
    assert load_gpu("H100").name == "h100-sxm"
    assert load_gpu("a100").name == "a100-sxm-80gb"
    assert load_model("Mixtral").name == "mixtral-8x7b"


def test_unknown_name_lists_the_closest_matches():
    with pytest.raises(KvcalcError, match=r"--model: unknown model 'llama-3-7b'; closest: .*llama-3-8b"):
        load_model("llama-3-7b")


def test_a_path_loads_that_file(tmp_path):
    from pathlib import Path

    src = Path(__file__).parents[1] / "hardware_specs" / "h100-sxm.toml"
    dst = tmp_path / "my-gpu.toml"
    dst.write_text(src.read_text().replace('name = "h100-sxm"', 'name = "my-gpu"'))
    assert load_gpu(str(dst)).name == "my-gpu"


def test_the_wheel_ships_the_spec_folders(tmp_path):
    pytest.importorskip("hatchling")
    from pathlib import Path

    root = Path(__file__).parents[1]
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=root, check=True, capture_output=True,
    )
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert "kvcalc/_bundled/hardware_specs/h100-sxm.toml" in names
    assert "kvcalc/_bundled/model_specs/deepseek-v3.toml" in names
    assert "kvcalc/_bundled/hardware_specs/profiles/h100-sxm.vllm.toml" in names  # --engine reads these at run time


@pytest.mark.parametrize("kind, name", [("model", "deepseek-v3"), ("model", "gemma-2-9b"), ("gpu", "h100-sxm")])
def test_show_toml_is_a_template_that_loads_back_to_the_same_spec(tmp_path, kind, name):
    from typer.testing import CliRunner

    from kvcalc.cli import app
    from kvcalc.specs.catalog import load_spec_file, resolve

    r = CliRunner().invoke(app, ["show", kind, name, "--format", "toml"])
    assert r.exit_code == 0
    copy = tmp_path / "mine.toml"
    copy.write_text(r.stdout)
    # every field equal (model_dump: pydantic 2.5's == also compares values a spec caches on itself once used)
    assert load_spec_file(kind, copy).model_dump() == resolve(kind, name).model_dump()


def test_every_repository_path_a_spec_cites_exists():
    # A source naming a file of this repository must name one that is here (URLs and documents are not checked).
    import re
    from pathlib import Path

    from kvcalc.specs.catalog import bundled_specs

    root = Path(__file__).parents[1]
    for spec in [*bundled_specs("model"), *bundled_specs("gpu")]:
        for source in spec.sources:
            for path in re.findall(r"\b((?:[\w.-]+/)+[\w.-]+\.(?:md|toml|csv|json|py))\b", source):
                if "://" not in source.split(path)[0][-10:] and not path.startswith(("huggingface.co", "github.com")):
                    assert (root / path).exists(), f"{spec.name} cites {path}"
