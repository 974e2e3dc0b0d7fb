"""Scale-out on one machine: the Ray backend (1 and 2 actors) next to the processes
backend (this process, 2 worker processes), the same architectures in one run.

Scores ``--n`` seeded NB201 architectures (full size, C=16, N=5, batch 64 of the bundled
CIFAR-10 images) with ``--proxies`` into a fresh store per setting. A first call fills a
fresh persistent compilation cache, so every timed setting loads the compiled scorer
instead of compiling it (each worker still loads it once: that is in the wall time). Also
measures Ray's own cost: the round trip of an empty actor call, and the local cluster's
start. Checks that every setting stored the same values bit for bit. Writes a JSON record
and the marked table section of ``--markdown``; not part of the test suite.

  python bench/scaleout.py --n 32 --chunk 4 --json bench/cpu/scaleout.json \\
      --markdown bench/SCALEOUT.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from zcjax import bulk, data, store
from zcjax.spaces import nb201

SETTINGS = (("processes", 1), ("processes", 2), ("ray", 1), ("ray", 2))
TABLE_START, TABLE_END = "<!-- scaleout.py table -->", "<!-- end of table -->"


def stored_values(out) -> dict:
    frame = store.read_results(out)
    return dict(zip(zip(frame["arch"], frame["proxy"]), frame["value"]))


def same_values(a: dict, b: dict) -> bool:
    """Equal keys and values, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)


def empty_call_round_trip(ray, calls: int = 200) -> float:
    """Median seconds of ``ray.get(actor.method.remote())`` for a method doing nothing."""
    @ray.remote(num_cpus=1)
    class Echo:
        def echo(self, value):
            return value

    actor = Echo.remote()
    ray.get(actor.echo.remote(0))
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        ray.get(actor.echo.remote(0))
        seconds.append(time.perf_counter() - started)
    ray.kill(actor)
    return statistics.median(seconds)


def run(args) -> dict:
    import ray

    key = jax.random.key(0)
    batch = data.sample_batch("cifar10", 64, key=key)
    archs = [nb201.decode(g) for g in nb201.sample(jax.random.key(args.seed), args.n)]
    cache = Path(tempfile.mkdtemp(prefix="zcjax-scaleout-cache-"))
    work = Path(tempfile.mkdtemp(prefix="zcjax-scaleout-"))

    def score(out, backend, workers, chosen):
        return bulk.score_space("nb201", args.proxies, batch, key=0, out=out,
                                dataset="cifar10", archs=chosen, chunk=args.chunk,
                                workers=workers, backend=backend, cache_dir=cache,
                                progress=False)

    warm = score(work / "warm", "processes", 1, archs[:1])
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             _system_config={"worker_niceness": 0})
    cluster_start = time.perf_counter() - started
    record = {"machine": f"{platform.processor() or platform.machine()}, "
                         f"{os.cpu_count()} cores", "jax": jax.__version__,
              "ray": ray.__version__, "n": args.n, "chunk": args.chunk,
              "proxies": args.proxies, "cold_compile_s": warm.compile_seconds,
              "ray_cluster_start_s": cluster_start,
              "ray_empty_call_ms": 1e3 * empty_call_round_trip(ray), "settings": []}
    reference = None
    for backend, workers in SETTINGS:
        out = work / f"{backend}-{workers}"
        summary = score(out, backend, workers, archs)
        values = stored_values(out)
        reference = values if reference is None else reference
        record["settings"].append({
            "backend": backend, "workers": workers, "wall_s": summary.seconds,
            "first_call_s": summary.compile_seconds,
            "archs_per_s": args.n / summary.seconds,
            "archs_per_s_after_first_call":
                args.n / max(summary.seconds - summary.compile_seconds, 1e-9),
            "rows": summary.rows_written,
            "same_values_as_first": same_values(values, reference)})
    ray.shutdown()
    tasks = args.n / args.chunk
    by = {(s["backend"], s["workers"]): s for s in record["settings"]}
    record["ray_overhead_per_task_ms"] = 1e3 * (by["ray", 1]["wall_s"]
                                                - by["processes", 1]["wall_s"]) / tasks
    return record


def table(record: dict) -> str:
    lines = [TABLE_START, "",
             f"{record['n']} NB201 architectures (C=16, N=5, batch 64), proxies "
             f"`{record['proxies']}`, chunks of {record['chunk']}, on {record['machine']} "
             f"(jax {record['jax']}, ray {record['ray']}); the scorer loaded from a warm "
             f"compilation cache (cold compile: {record['cold_compile_s']:.1f} s).", "",
             "| backend | workers | wall (s) | archs/s | archs/s after each worker's first "
             "call | same values |", "|---|---|---|---|---|---|"]
    for s in record["settings"]:
        lines.append(f"| {s['backend']} | {s['workers']} | {s['wall_s']:.1f} | "
                     f"{s['archs_per_s']:.2f} | {s['archs_per_s_after_first_call']:.2f} | "
                     f"{'yes' if s['same_values_as_first'] else 'NO'} |")
    lines += ["", f"Ray: local cluster start {record['ray_cluster_start_s']:.1f} s; empty "
              f"actor call {record['ray_empty_call_ms']:.2f} ms (median of 200); overhead per "
              f"task, (ray x1 wall - processes x1 wall) / tasks: "
              f"{record['ray_overhead_per_task_ms']:.0f} ms (this includes the actor's own "
              "start and scorer load).", "", TABLE_END]
    return "\n".join(lines)


def write_table(path: Path, text: str) -> None:
    body = path.read_text() if path.exists() else f"{TABLE_START}\n{TABLE_END}\n"
    head, rest = body.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    path.write_text(head + text + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32, help="architectures (default 32)")
    parser.add_argument("--chunk", type=int, default=4, help="architectures per task")
    parser.add_argument("--proxies", default="snip,naswot")
    parser.add_argument("--seed", type=int, default=1, help="sample seed (default 1)")
    parser.add_argument("--json", type=Path, help="write the record here")
    parser.add_argument("--markdown", type=Path, help="rewrite this file's table section")
    args = parser.parse_args()
    record = run(args)
    print(json.dumps(record, indent=1))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    if args.markdown:
        write_table(args.markdown, table(record))


if __name__ == "__main__":
    main()
