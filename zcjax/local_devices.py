"""Scoring chunks on every local accelerator at once: one scorer per device, a thread each.

:func:`zcjax.bulk.score_space` with ``backend="devices"`` hands its chunks here. Each of
``jax.local_devices()`` gets its own scorer, whose batch and key are committed to that
device, so its calls run there; one thread per device takes chunks from a shared queue
(JAX releases the GIL while a device computes), and this thread writes every part, as the
processes backend's parent does. One process holds all the devices, so nothing is
duplicated in host memory and each device compiles the scorer once (the persistent
compilation cache serves the others where the program is the same).

On a CPU-only machine there is one CPU device unless XLA is told to split the host
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``, set before JAX starts): those
"devices" share one thread pool, which makes this backend a correctness check there, not
a speed-up (use ``workers`` processes on a CPU).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import jax


class _Stopped(Exception):
    """A device thread stops between architectures (an error or interrupt elsewhere)."""


def run_on_devices(make_scorer: Callable[[jax.Device], Any], tasks: Sequence,
                   finish: Callable, bar, devices: Sequence[jax.Device] | None = None
                   ) -> float:
    """Score ``tasks`` with one scorer per device; ``finish(task, values, seconds)`` here.

    ``make_scorer(device)`` builds a :class:`zcjax.bulk.ChunkScorer` for a device.
    Returns the slowest device's first call (compilation included), in seconds.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    todo: queue.Queue = queue.Queue()
    for task in tasks:
        todo.put(task)
    done: queue.Queue = queue.Queue()
    stop = threading.Event()

    def check_stop():
        if stop.is_set():
            raise _Stopped

    def work(device):
        try:
            scorer = make_scorer(device)
            while not stop.is_set():
                try:
                    task = todo.get_nowait()
                except queue.Empty:
                    break
                values, seconds = scorer(task.genotypes, on_each=check_stop)
                done.put((task, values, seconds, scorer.compile_seconds))
        except _Stopped:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the writing thread
            done.put(error)

    threads = [threading.Thread(target=work, args=(device,), daemon=True,
                                name=f"zcjax-{device}") for device in devices]
    for thread in threads:
        thread.start()
    compile_seconds = 0.0
    try:
        for _ in range(len(tasks)):
            item = done.get()
            if isinstance(item, BaseException):
                raise item
            task, values, seconds, compiled = item
            finish(task, values, seconds)
            compile_seconds = max(compile_seconds, compiled)
            bar.update(len(task.archs))
    finally:
        # An error or an interrupt: each thread stops after its current architecture
        # (chunks not finished are not stored; a rerun scores them).
        stop.set()
        for thread in threads:
            thread.join()
    return compile_seconds
