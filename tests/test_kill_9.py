"""kill -9 of score_space at random moments, some inside a part's write, with one process
and with two workers: after every kill the store reads cleanly (no row twice, every value
the uninterrupted run's), and the run that finally completes it stores exactly the rows of
the uninterrupted run."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

from conftest import TINY, same_values, stored_values
from zcjax import bulk, store
from zcjax.spaces import nb201

PROXIES = ("jacob_cov", "naswot")
ARCHS = nb201.arch_strings(nb201.sample(jax.random.key(11), 24))
CHUNK = 2
# Kills per worker count (two workers start three processes a trial); every other one
# waits for a part's write to be under way, the rest land at a random moment (with two
# workers the first lands while they start up).
TRIALS = {1: 10, 2: 6}
TESTS = Path(__file__).resolve().parent

# The run a user restarts after each kill. Its scoring is slowed so the run lasts several
# seconds, and its fsync so a part's write (temporary file, fsync, rename) lasts 0.3 s.
_RUN = """
import dataclasses, os, sys, time
sys.path.insert(0, {tests!r})
from conftest import TINY
import zcjax
from zcjax import api, bulk

make_scorer, fsync = api.make_scorer, os.fsync

def slow_make_scorer(*args, **kwargs):
    scorer = make_scorer(*args, **kwargs)
    def compiled(*inputs):
        time.sleep(0.15)
        return scorer.compiled(*inputs)
    return dataclasses.replace(scorer, compiled=compiled)

def slow_fsync(fd):
    time.sleep(0.3)
    fsync(fd)

api.make_scorer, os.fsync = slow_make_scorer, slow_fsync
images, labels = zcjax.data.sample_batch("imagenet16-120", 8)
bulk.score_space("nb201", {proxies!r}, (images, labels % 10), key=0, out={out!r},
                 dataset="imagenet16-120", archs={archs!r}, chunk={chunk}, config=TINY,
                 workers={workers}, cache_dir={cache!r}, progress=False)
"""


def temporaries(out: Path) -> list[Path]:
    return list(out.glob(".part-*.tmp")) if out.exists() else []


def children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def gone(pids, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def kill_once(script: str, out: Path, log: Path, rng: random.Random, moment: str):
    """Start the run and kill -9 it: once a part's write is under way (``"write"``), while
    its workers start up (``"startup"``: 0.3 s after the first one exists), or after a
    random delay; returns whether a temporary part was left, or None if the run finished
    first."""
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-c", script], stderr=stderr)
    deadline = time.monotonic() + (120 if moment != "random" else rng.uniform(0.5, 7.0))
    while process.poll() is None and time.monotonic() < deadline:
        if moment == "write" and temporaries(out):
            break
        if moment == "startup" and children(process.pid):
            time.sleep(0.3)
            break
        time.sleep(0.01)
    if process.poll() is not None:
        assert process.returncode == 0, log.read_text()[-2000:]
        return None
    workers = children(process.pid)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    # The workers notice their parent is gone and exit: nothing keeps computing.
    assert gone(workers), f"workers {workers} outlived the killed run"
    return bool(temporaries(out))


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_batch, module_compilation_cache) -> dict:
    """The uninterrupted run's store (which also fills the compilation cache)."""
    out = tmp_path_factory.mktemp("clean")
    bulk.score_space("nb201", PROXIES, tiny_batch, key=0, out=out, dataset="imagenet16-120",
                     archs=ARCHS, chunk=CHUNK, config=TINY, cache_dir=module_compilation_cache,
                     progress=False)
    values = stored_values(out)
    assert len(values) == len(ARCHS) * len(PROXIES)
    return values


@pytest.mark.parametrize("workers", sorted(TRIALS))
def test_kill_9_anywhere_then_resume_stores_exactly_the_clean_rows(
        workers, clean, tmp_path, module_compilation_cache):

    out = tmp_path / "killed"
    script = _RUN.format(tests=str(TESTS), proxies=PROXIES, out=str(out), archs=list(ARCHS),
                         chunk=CHUNK, workers=workers, cache=str(module_compilation_cache))
    rng = random.Random(workers)
    landed_in_a_write = 0
    for trial in range(TRIALS[workers]):
        # With workers, the first kill lands while they start (before their set-up).
        moment = ("startup" if workers > 1 and trial == 0 else
                  "write" if trial % 2 == 1 else "random")
        left_a_temporary = kill_once(script, out, tmp_path / f"run{trial}.log", rng, moment)
        if left_a_temporary is None:
            break  # the run completed before this kill
        landed_in_a_write += left_a_temporary
        if out.exists() and store.part_files(out):
            # Every part whole (a corrupt one raises), no row twice, each the clean value.
            stored = stored_values(out)
            assert same_values(stored, {key: clean[key] for key in stored})
    assert landed_in_a_write >= TRIALS[workers] // 4, "too few kills landed inside a write"

    with open(tmp_path / "last.log", "wb") as stderr:
        finished = subprocess.run([sys.executable, "-c", script], stderr=stderr)
    assert finished.returncode == 0, (tmp_path / "last.log").read_text()[-2000:]
    assert same_values(stored_values(out), clean)
    assert not temporaries(out), "the completing run left a killed write's temporary"
