"""Ctrl-C (SIGINT) and SIGTERM during score-space and search: one line, exit 130 / 143,
no traceback, no temporary file, and the rerun completes the store exactly."""

import signal
import time
from pathlib import Path

import pytest

from conftest import shared_file, start_tiny_cli as start, wait_for_a_part
from zcjax import store


def assert_stopped_cleanly(process, signum, log: Path, out: Path) -> str:
    assert process.wait(timeout=120) == 128 + signum, log.read_text()[-2000:]
    text = log.read_text()
    assert "Traceback" not in text, text[-2000:]
    last = text.strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(signum).name}" in last
    assert "rerun the same command to resume" in last
    if out.exists():
        left = [p for p in out.rglob(".*") if p.name != store.LOCK_NAME]
        assert not left, f"temporary files left behind: {left}"
    return last


# snip's gradient program compiles for ~15 s and scores in ~0.2 s per architecture, so the
# signal lands inside the compilation (1 s after the line that announces it) or inside the
# scoring (after the first of 8 parts); params and l2_norm alone now finish in about a second.
ARCHS, PROXIES = 24, "params,snip"


def score_space_argv(out, cache):
    return ["score-space", "nb201", "--proxies", PROXIES, "--n", str(ARCHS), "--chunk",
            "3", "--batch-size", "8", "--out", out, "--cache-dir", cache, "--no-progress"]


@pytest.mark.parametrize("signum,during", [
    (signal.SIGINT, "compilation"),
    (signal.SIGINT, "scoring"),
    (signal.SIGTERM, "scoring"),
], ids=["SIGINT-while-compiling", "SIGINT-while-scoring", "SIGTERM-while-scoring"])
def test_score_space_stops_with_one_line_and_resumes(tmp_path, signum, during):
    out, log = tmp_path / "store", tmp_path / "stderr.log"
    cache = tmp_path / "cache"  # fresh: the first run compiles
    process = start(score_space_argv(out, cache), log)
    if during == "compilation":
        deadline = time.monotonic() + 120
        while "after one compilation" not in log.read_text():  # said just before compiling
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "score-space said nothing in time"
            time.sleep(0.05)
        time.sleep(1)
    else:
        wait_for_a_part(process, out, log)
    process.send_signal(signum)
    assert_stopped_cleanly(process, signum, log, out)
    rows = 2 * ARCHS
    stored = len(store.read_results(out)) if out.exists() else 0
    assert stored < rows

    resumed = start(score_space_argv(out, cache), tmp_path / "resumed.log")
    assert resumed.wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()[-2000:]
    frame = store.read_results(out)
    assert len(frame) == rows and not frame.duplicated(["arch", "proxy"]).any()


def test_search_stops_with_one_line_and_keeps_its_scores(tmp_path):
    out, log = tmp_path / "search", tmp_path / "stderr.log"
    csv = shared_file("nb201", "nb201_accuracies.csv.gz")
    argv = ["search", "nb201", "--algorithm", "training_free", "--proxy", "params", "--n",
            "400", "--seeds", "1", "--data", "imagenet16-120", "--benchmark", csv,
            "--out", out, "--no-progress"]
    process = start(argv, log)
    wait_for_a_part(process, out / "scores", log)
    process.send_signal(signal.SIGTERM)
    assert_stopped_cleanly(process, signal.SIGTERM, log, out)
    assert len(store.read_results(out / "scores")) >= 100  # the finished parts are kept


def test_a_signal_python_dropped_still_ends_the_command_as_stopped(capsys):
    """A Ctrl-C raised inside a finaliser (as inside JAX's ``_xla_gc_callback``, which a
    fresh-clone CI run hit) is dropped by Python, which would print it with a traceback
    ("Exception ignored in ..."); the command still exits 130 with its one line, and
    nothing else is printed."""
    import os
    import sys

    from zcjax import cli

    class SignalsWhenCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)

    def command_that_finishes(args):
        SignalsWhenCollected()  # collected at once: its KeyboardInterrupt is dropped
        return 0

    before = signal.getsignal(signal.SIGINT), sys.unraisablehook
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "_correlate", command_that_finishes)
        assert cli.main(["correlate", "results-dir"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "zcjax correlate: stopped by SIGINT; nothing was stored"], err
    assert (signal.getsignal(signal.SIGINT), sys.unraisablehook) == before  # undone


def test_a_signal_python_dropped_still_stops_a_running_command(capsys):
    """The dropped Ctrl-C is delivered again where Python can raise it: a command still
    working (as score-space scoring on after its compilation) stops, not at its end."""
    import os
    import time

    from zcjax import cli

    class SignalsWhenCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)

    steps = []

    def command_that_works_on(args):
        SignalsWhenCollected()  # its KeyboardInterrupt is dropped
        for step in range(500):  # 5 s of work if nothing stops it
            steps.append(step)
            time.sleep(0.01)
        return 0

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "_correlate", command_that_works_on)
        assert cli.main(["correlate", "results-dir"]) == 130
    assert len(steps) < 100, f"ran {len(steps)} of 500 steps after the signal"
    assert capsys.readouterr().err.strip().splitlines() == [
        "zcjax correlate: stopped by SIGINT; nothing was stored"]


def test_an_error_python_drops_during_a_command_is_still_reported(monkeypatch):
    """Only the dropped stop is silenced: any other exception a finaliser raises still
    reaches the hook that was installed before the command."""
    from zcjax import cli

    class FailsWhenCollected:
        def __del__(self):
            raise ValueError("a finaliser's own error")

    def command_that_finishes(args):
        FailsWhenCollected()
        return 0

    monkeypatch.setattr(cli, "_correlate", command_that_finishes)
    reported = []
    monkeypatch.setattr("sys.unraisablehook", reported.append)
    assert cli.main(["correlate", "results-dir"]) == 0
    assert [str(r.exc_value) for r in reported] == ["a finaliser's own error"]
