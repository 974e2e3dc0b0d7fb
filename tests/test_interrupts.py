"""Ctrl-C (SIGINT) and SIGTERM during score-space and search: one line, exit 130 / 143,
no traceback, no temporary file, and the rerun completes the store exactly."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import shared_file
from zcjax import store

TESTS = Path(__file__).parent

# The CLI in a subprocess, on the tiny NB201 config (seconds to compile) and slowed to
# 0.3 s per architecture, so that a signal lands while a chunk is being scored.
_CLI = """
import dataclasses, sys, time
sys.path.insert(0, {tests!r})
from conftest import TINY
from zcjax import api, cli

make_scorer = api.make_scorer

def tiny_slow_scorer(space, proxies, **options):
    config = options["config"]
    options["config"] = dataclasses.replace(TINY, num_classes=config.num_classes,
                                            image_size=config.image_size)
    scorer = make_scorer(space, proxies, **options)
    def compiled(*inputs):
        time.sleep(0.3)
        return scorer.compiled(*inputs)
    return dataclasses.replace(scorer, compiled=compiled)

api.make_scorer = tiny_slow_scorer
sys.argv = ["zcjax", *{argv!r}]
cli.entry_point()
"""


def start(argv, log: Path) -> subprocess.Popen:
    script = _CLI.format(tests=str(TESTS), argv=[str(a) for a in argv])
    with open(log, "wb") as stderr:
        return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                                stderr=stderr)


def wait_for_a_part(process, out: Path, log: Path) -> None:
    deadline = time.monotonic() + 240
    while not (out.exists() and store.part_files(out)):
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "no part file written in time"
        time.sleep(0.05)


def assert_stopped_cleanly(process, signum, log: Path, out: Path) -> str:
    assert process.wait(timeout=120) == 128 + signum, log.read_text()[-2000:]
    text = log.read_text()
    assert "Traceback" not in text, text[-2000:]
    last = text.strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(signum).name}" in last
    assert "rerun the same command to resume" in last
    if out.exists():
        assert not [p for p in out.rglob(".*")], "a temporary file was left behind"
    return last


def score_space_argv(out, cache):
    return ["score-space", "nb201", "--proxies", "params,l2_norm", "--n", "12", "--chunk",
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
        time.sleep(6)  # imports done, the scorer compiling; nothing stored yet
        assert process.poll() is None, log.read_text()[-2000:]
    else:
        wait_for_a_part(process, out, log)
    process.send_signal(signum)
    assert_stopped_cleanly(process, signum, log, out)
    stored = len(store.read_results(out)) if out.exists() else 0
    assert stored < 24

    resumed = start(score_space_argv(out, cache), tmp_path / "resumed.log")
    assert resumed.wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()[-2000:]
    rows = store.read_results(out)
    assert len(rows) == 24 and not rows.duplicated(["arch", "proxy"]).any()


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
