"""Scoring chunks on a Ray cluster: one actor per worker, each writing its own parts.

:func:`zcjax.bulk.score_space` with ``backend="ray"`` hands its chunks here. Each of the
``workers`` actors builds and compiles the scorer once (with the persistent compilation
cache, a worker on a machine that compiled it before loads it), then scores the chunks
the driver gives it and writes each as an atomic part file of the results store through
its own :class:`zcjax.store.StoreWriter`, which stores no row twice. So the store must be
a path every worker can write: one machine, or a filesystem shared by the cluster's
machines (NFS and the like; :class:`~zcjax.store.StoreWriter`'s lock needs ``flock``
there). Object storage is not supported: the store's lock and atomic rename need a
filesystem. The driver only receives what each part holds (a path and two counts).

Faults. An actor killed mid-task (SIGKILL of its process, a lost node) is
restarted and its unfinished tasks are retried, up to :data:`MAX_RETRIES` times each; a
task that had written its part before the kill writes nothing the second time (the
writer finds its rows stored) and reports that part, so the summary counts its rows. A
killed driver takes its actors with it; rerunning the same call resumes from the store,
as with the other backends. (An actor's constructor
arguments, the batch among them, live in the driver's object store, so a restart needs the
driver, which is alive while it waits for the chunks; Ray warns about this, issue 53727.)

Ray is optional (``pip install "zcjax[ray]"``). ``address`` is passed to ``ray.init``:
None connects to the cluster named by ``$RAY_ADDRESS`` or, without one, starts a local
cluster for this call (and stops it afterwards); a Ray already initialised in this
process is used as it is.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# bulk imports this module too; each uses the other's names only when called.
from zcjax import bulk, store

# Restarts of a killed actor, and retries of each task it had not finished.
MAX_RETRIES = 4
# Chunks queued on each actor beyond the one it is scoring, so it never waits for the
# driver between chunks.
QUEUED_PER_WORKER = 1
INSTALL_HINT = 'the Ray backend needs Ray: pip install "zcjax[ray]"'


@dataclasses.dataclass(frozen=True)
class ChunkResult:
    """What one chunk added to the store."""

    part: str | None
    rows_written: int
    non_finite: int
    compile_seconds: float


def import_ray():
    """The ``ray`` module, or one ImportError that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return ray


class _Worker:
    """A Ray actor's state: one compiled scorer and a writer of the store."""

    def __init__(self, spec, out: str, runs: Mapping[str, store.RunIdentity]):
        bulk.prepare_worker_process(spec)
        self.scorer = bulk.ChunkScorer(spec)
        self.writer = store.StoreWriter(out)
        self.runs = runs
        self.proxies = spec.proxies

    def score(self, task: bulk.ChunkTask) -> ChunkResult:
        values, seconds = self.scorer(task.genotypes)
        part, rows, non_finite = bulk.write_chunk(self.writer, self.runs, self.proxies, task,
                                                  values, seconds)
        return ChunkResult(None if part is None else str(part), rows, non_finite,
                           self.scorer.compile_seconds)


def run_on_ray(spec, out: str, runs: Mapping[str, store.RunIdentity],
               tasks: Sequence[bulk.ChunkTask], *, workers: int, address: str | None,
               actor_options: Mapping[str, Any] | None,
               on_done: Callable[[bulk.ChunkTask, ChunkResult], Any]) -> float:
    """Score ``tasks`` on ``workers`` Ray actors; ``on_done`` sees each finished chunk.

    Returns the slowest actor's first call (compilation included), in seconds.
    """
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        # Ray nices its workers (15) to keep a shared node responsive; on a cluster
        # started for this call the workers are the job, so they run at normal priority
        # (as the processes backend's do) instead of yielding to every other process.
        new_cluster = address in (None, "local") and not os.environ.get("RAY_ADDRESS")
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False,
                 **({"_system_config": {"worker_niceness": 0}} if new_cluster else {}))
    options = {"num_cpus": 1, **dict(actor_options or {})}
    actor_class = ray.remote(max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES,
                             **options)(_Worker)
    actors = [actor_class.remote(spec, out, runs) for _ in range(min(workers, len(tasks)))]
    pending: dict[Any, tuple[bulk.ChunkTask, Any]] = {}
    queue = list(reversed(tasks))
    compile_seconds = 0.0

    def give(actor) -> None:
        task = queue.pop()
        pending[actor.score.remote(task)] = (task, actor)

    try:
        for _ in range(1 + QUEUED_PER_WORKER):
            for actor in actors:
                if queue:
                    give(actor)
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            task, actor = pending.pop(done)
            result = ray.get(done)
            compile_seconds = max(compile_seconds, result.compile_seconds)
            on_done(task, result)
            if queue:
                give(actor)
    finally:
        # An error or an interrupt: queued chunks are dropped (a rerun scores them).
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if started_here:
            ray.shutdown()
    return compile_seconds
