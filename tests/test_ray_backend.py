"""score_space on Ray (zcjax.ray_backend): a local cluster, the same rows as the processes
backend bit for bit, an actor killed mid-task, a driver killed and rerun.

One local Ray cluster (2 CPUs) serves the module. The scorer is the tiny NB201 config
(seconds to compile); the module's compilation cache lets the actors load what this
process compiled first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import TINY, import_or_unavailable, same_values, stored_values
from zcjax import bulk, cli, store
from zcjax.spaces import nb201

ray = import_or_unavailable("ray")

PROXIES = "snip,naswot"


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for this module; its address (for a second driver)."""
    # Ray nices its workers by default; here they compete with the other test worker.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _system_config={"worker_niceness": 0})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def cache(module_compilation_cache):
    """One persistent cache for this module: the actors load what this process compiled."""
    return str(module_compilation_cache)


def score(out, batch, archs, cache, **options):
    return bulk.score_space("nb201", PROXIES, batch, key=0, out=out, dataset="tiny",
                            archs=archs, config=TINY, progress=False, cache_dir=cache,
                            **options)


@pytest.fixture(scope="module")
def archs():
    return [nb201.decode(g) for g in nb201.sample(jax.random.key(5), 24)]


@pytest.fixture(scope="module")
def processes_result(tmp_path_factory, tiny_batch, archs, cache):
    """The reference: the processes backend in this process."""
    out = tmp_path_factory.mktemp("processes")
    score(out, tiny_batch, archs, cache, chunk=4)
    return stored_values(out)


def test_ray_backend_stores_what_the_processes_backend_stores(cluster, tmp_path, tiny_batch,
                                                              archs, cache, processes_result):
    summary = score(tmp_path, tiny_batch, archs, cache, chunk=4, workers=2, backend="ray")
    assert summary.rows_written == len(archs) * 2 and summary.archs_scored == len(archs)
    assert len(summary.parts) == len(archs) // 4
    assert all(Path(part).parent == tmp_path for part in summary.parts)
    assert same_values(stored_values(tmp_path), processes_result)
    again = score(tmp_path, tiny_batch, archs, cache, chunk=4, workers=2, backend="ray")
    assert again.rows_written == 0 and again.rows_skipped == len(archs) * 2


def actor_processes(busy: bool) -> list[int]:
    """PIDs of this machine's zcjax Ray actors (``busy``: those running a task)."""
    title = "ray::_Worker.score" if busy else "ray::_Worker"
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, ValueError):
            continue
        if command.startswith(title):
            pids.append(int(entry.name))
    return pids


def test_an_actor_killed_mid_task_is_restarted_and_its_task_retried(
        cluster, tmp_path, tiny_batch, archs, cache, processes_result):
    result = {}
    run = threading.Thread(target=lambda: result.update(summary=score(
        tmp_path, tiny_batch, archs, cache, chunk=1, workers=2, backend="ray")))
    run.start()
    deadline = time.monotonic() + 240
    while not (tmp_path.exists() and store.part_files(tmp_path)):
        assert run.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    killed = None
    while killed is None and run.is_alive():
        busy = actor_processes(busy=True)
        if busy:
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
    run.join(timeout=240)
    assert killed is not None, "the run finished before an actor could be killed"
    assert not run.is_alive() and "summary" in result
    assert result["summary"].rows_written == len(archs) * 2
    assert same_values(stored_values(tmp_path), processes_result)


_DRIVER = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from conftest import TINY
from zcjax import bulk
images, labels = np.load({batch!r}).values()
bulk.score_space("nb201", {proxies!r}, (images, labels), key=0, out={out!r},
                 dataset="tiny", archs={archs!r}, config=TINY, progress=False, chunk=1,
                 workers=1, backend="ray", ray_address={address!r}, cache_dir={cache!r})
"""


def test_a_killed_driver_resumes_from_the_store(cluster, tmp_path, tiny_batch, archs, cache,
                                                processes_result):
    out, saved = tmp_path / "store", tmp_path / "batch.npz"
    np.savez(saved, images=np.asarray(tiny_batch[0]), labels=np.asarray(tiny_batch[1]))
    script = _DRIVER.format(tests=str(Path(__file__).parent), batch=str(saved),
                            proxies=PROXIES, out=str(out), archs=archs, address=cluster,
                            cache=cache)
    log = tmp_path / "driver.log"
    with open(log, "wb") as stderr:
        driver = subprocess.Popen([sys.executable, "-c", script], stderr=stderr)
    try:
        deadline = time.monotonic() + 240
        while not (out.exists() and store.part_files(out)):
            assert driver.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait()
    # The cluster reaps a dead driver's actors asynchronously: one still running a queued
    # task may write its part after the kill, so the count is read once they are gone.
    deadline = time.monotonic() + 60
    while actor_processes(busy=False):
        assert time.monotonic() < deadline, "the killed driver's actors outlived it by 60 s"
        time.sleep(0.1)
    before = len(stored_values(out))
    assert 0 < before < len(archs) * 2, "the kill landed before the first or after the last part"
    summary = score(out, tiny_batch, archs, cache, chunk=1, workers=1, backend="ray")
    assert summary.rows_skipped == before
    assert same_values(stored_values(out), processes_result)


def test_without_ray_the_backend_says_how_to_install_it(monkeypatch, tmp_path, tiny_batch,
                                                        archs, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ImportError, match=r'pip install "zcjax\[ray\]"'):
        score(tmp_path, tiny_batch, archs, False, backend="ray")
    assert not tmp_path.exists() or not store.part_files(tmp_path)
    code = cli.main(["score-space", "nb201", "--proxies", "params", "--n", "2",
                     "--out", str(tmp_path), "--backend", "ray", "--no-cache"])
    assert code == 2
    assert 'zcjax score-space: error: the Ray backend needs Ray: pip install "zcjax[ray]"' in (
        capsys.readouterr().err)


def test_backend_arguments_are_checked(tmp_path, tiny_batch, archs, capsys):
    with pytest.raises(ValueError,
                       match="unknown backend 'threads'; choose one of processes, devices, ray"):
        score(tmp_path, tiny_batch, archs, False, backend="threads")
    code = cli.main(["score-space", "nb201", "--n", "2", "--out", str(tmp_path),
                     "--address", "10.0.0.1:6379"])
    assert code == 2 and "--address and --gpus-per-worker need --backend ray" in (
        capsys.readouterr().err)
