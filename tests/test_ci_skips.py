"""No silent skips in CI: a missing ``../shared`` file or PyTorch reference FAILS under
``CI=true`` and skips otherwise (``conftest.unavailable``, the one helper that
``shared_file`` and the parity suite's imports go through)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import conftest
from conftest import import_or_unavailable, shared_file, unavailable

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("value, expected", [("true", True), ("TRUE", True), ("1", True),
                                             ("", False), ("false", False), ("0", False)])
def test_in_ci_reads_the_ci_variable(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert conftest.in_ci() is expected
    monkeypatch.delenv("CI")
    assert conftest.in_ci() is False


def test_unavailable_fails_under_ci_and_skips_locally(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="shared data file not found.*CI=true"):
        shared_file("no-such-folder", "no-such-file.npz")
    with pytest.raises(pytest.fail.Exception, match="zcjax_no_such_module not importable"):
        import_or_unavailable("zcjax_no_such_module")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="shared data file not found"):
        shared_file("no-such-folder", "no-such-file.npz")
    with pytest.raises(pytest.skip.Exception, match="zcjax_no_such_module not importable"):
        import_or_unavailable("zcjax_no_such_module")
    with pytest.raises(pytest.skip.Exception, match="why"):
        unavailable("why", module_level=True)


# A missing shared file inside a test, and the parity suite's module-level imports with
# a module made unimportable (a plugin's import hook, installed before collection, says it
# is not installed).
GENERATED = {
    "test_generated_shared.py": """
        from conftest import shared_file

        def test_reads_a_missing_shared_file():
            shared_file("no-such-folder", "no-such-file.npz")
        """,
    "test_generated_parity.py": """
        import common  # tests/parity/common.py

        def test_never_runs():
            pass
        """,
    "block_module.py": """
        import os
        import sys

        BLOCKED = os.environ["ZCJAX_TEST_BLOCK"]


        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name == BLOCKED or name.startswith(BLOCKED + "."):
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
                return None


        sys.meta_path.insert(0, Blocker())
        """,
}


def _run_pytest(folder: Path, *, ci: bool, block: str) -> str:
    for name, source in GENERATED.items():
        (folder / name).write_text(textwrap.dedent(source))
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci:
        env["CI"] = "true"
    env["ZCJAX_TEST_BLOCK"] = block
    env["PYTHONPATH"] = os.pathsep.join(
        [str(folder), str(TESTS), str(TESTS / "parity")] + env.get("PYTHONPATH", "").split(
            os.pathsep))
    # Without --continue-on-collection-errors pytest stops at the parity module's collection
    # error (exit 2, "Interrupted"): the run fails either way; with it both files report.
    command = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider",
               "-p", "block_module", "-q", "-rfEs", "--continue-on-collection-errors",
               "--rootdir", str(folder), "test_generated_shared.py", "test_generated_parity.py"]
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                            timeout=600)
    return result.returncode, result.stdout + result.stderr


def test_a_generated_suite_fails_under_ci_with_the_reasons(tmp_path):
    code, output = _run_pytest(tmp_path, ci=True, block="alethiometer")
    assert code == 1, output
    assert "1 failed" in output and "1 error" in output, output
    assert "shared data file not found" in output, output
    assert "alethiometer not importable" in output, output
    assert "CI=true: a missing test dependency fails instead of skipping" in output, output
    assert "skipped" not in output, output


def test_the_same_suite_skips_without_ci(tmp_path):
    # torch blocked this time: common.py stops at its first import (and the run is quicker).
    code, output = _run_pytest(tmp_path, ci=False, block="torch")
    assert code == 0, output
    assert "2 skipped" in output, output
    assert "shared data file not found" in output, output
    assert "torch not importable" in output, output
    assert "failed" not in output and "error" not in output, output
