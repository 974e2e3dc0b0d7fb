"""All of NB201 with T-CET(SNIP) on one GPU: which strategy, and how long in all.

Made for a GPU lent for minutes. Each strategy runs in its own worker process (so each
can have its own ``XLA_FLAGS``), one at a time, alone on the GPU: it compiles, then times
a few hundred architectures. The fastest then scores the whole space (15625
architectures) in a fresh process, so the reported total includes its compilation, and
writes the scores in zcjax's results-store format.

Strategies (``NAME: kind``):
  seq: the compiled-once scorer, one architecture per call (asynchronous dispatch);
  vmap64: vmap over 64 whole genotypes (every edge's switch becomes a select);
  groupedK: :func:`zcjax.grouped.grouped_vmap` with the first K edges shared
    (``5 ** (6 - K)`` architectures per call);
  NAME_cmdbuf: the same with CUDA-graph command buffers that include conditionals and
    while loops, so a switch or scan step needs no device-to-host sync.

  python bench/gpu_fullspace.py --out $OUT --budget 480        # on the GPU machine
  python bench/gpu_fullspace.py --out /tmp/fs --budget 300 --smoke   # CPU check
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = {"seq": ("seq", 0), "vmap64": ("vmap", 64), "grouped5": ("grouped", 5),
              "grouped4": ("grouped", 4), "grouped3": ("grouped", 3),
              "grouped2": ("grouped", 2)}
COMMAND_BUFFER = ("--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUDNN,CUSTOM_CALL,"
                  "{conditional},WHILE --xla_gpu_graph_min_graph_size=1")
TIMED_ARCHS = 250


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------
# Worker: one strategy
# ---------------------------------------------------------------------------
def _scoring_function(kind, size, scorer, batch, key):
    """``run(genotypes) -> {proxy: array}`` for the strategy (blocks until done)."""
    import gpu_check

    from zcjax import grouped

    if kind == "grouped":
        return lambda genotypes: grouped.score_grouped(scorer, genotypes, batch, key, size)

    def run(genotypes):  # sequential calls (width 0) or vmap over ``size`` genotypes
        values, _ = gpu_check.score_archs(scorer, genotypes, batch, key, deadline=math.inf,
                                          width=size, chunk=len(genotypes))
        return {name: values[:, column] for column, name in enumerate(scorer.proxies)}

    return run


def worker(args) -> int:
    sys.path.insert(0, str(REPO / "bench"))
    import gpu_check  # first: it makes zcjax.spaces importable from a bare checkout
    import jax
    import numpy as np

    import zcjax
    from zcjax import bulk
    from zcjax.spaces import nb201

    kind, size = STRATEGIES[args.strategy]
    result = {"name": args.name, "strategy": args.strategy,
              "xla_flags": os.environ.get("XLA_FLAGS", ""), "devices": str(jax.devices())}
    path = args.out / f"{args.phase}-{args.name}.json"

    def save():
        path.write_text(json.dumps(result, indent=2))

    config = nb201.Config(channels=(4, 8, 16), cells_per_stage=1) if args.smoke \
        else nb201.Config()
    batch = zcjax.data.sample_batch("cifar10", 64, key=jax.random.key(0))
    key = jax.random.key(0)
    scorer = zcjax.make_scorer("nb201", ("tcet_snip",), config=config)
    run = _scoring_function(kind, size, scorer, batch, key)
    everything = nb201.all_genotypes()
    timed = everything[np.random.default_rng(0).permutation(len(everything))[:TIMED_ARCHS]]
    if kind == "grouped":  # whole groups of the base-5 order, as a full sweep sees them
        width = 5 ** (nb201.NUM_EDGES - size)
        groups = np.random.default_rng(0).permutation(len(everything) // width)
        count = max(1, TIMED_ARCHS // width)
        timed = np.concatenate([everything[g * width:(g + 1) * width] for g in groups[:count]])
    first = timed[:5 ** (nb201.NUM_EDGES - size)] if kind == "grouped" else timed[:size or 1]
    if args.phase == "time":
        started = time.perf_counter()
        run(first)
        result["compile_s"] = time.perf_counter() - started
        save()
        run(first)  # warm
        started = time.perf_counter()
        run(timed)
        result["per_arch_s"] = (time.perf_counter() - started) / len(timed)
        result["timed_archs"] = len(timed)
        save()
        return 0
    # The whole space, compilation included (this process has compiled nothing yet).
    space = everything[:500] if args.smoke else everything
    step = 5 ** (nb201.NUM_EDGES - size) * 25 if kind == "grouped" else 1600
    scores, done = {p: [] for p in scorer.proxies}, 0
    started = time.perf_counter()
    for start in range(0, len(space), step):
        if time.time() > args.deadline:
            break
        part = run(space[start:start + step])
        for name in scorer.proxies:
            scores[name].append(part[name])
        done += len(space[start:start + step])
        elapsed = time.perf_counter() - started
        result["full_space"] = {"archs": done, "seconds_with_compile": elapsed}
        save()
    values = np.stack([np.concatenate(scores[p]) for p in scorer.proxies], 1)
    result["full_space"]["non_finite"] = int(np.sum(~np.isfinite(values)))
    save()
    seconds = result["full_space"]["seconds_with_compile"] / done
    gpu_check.write_scores(args.out, f"full-{args.name}", "cifar10", scorer.proxies,
                           space[:done], values, [seconds] * done,
                           bulk.batch_fingerprint(*batch), config=config)
    return 0


# ---------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------
def _probe_command_buffer_flags(smoke: bool) -> str | None:
    """The command-buffer flag spelling this XLA accepts (its enum name varies)."""
    if smoke:
        return None
    for conditional in ("CONDITIONAL", "CONDITIONALS"):
        flags = COMMAND_BUFFER.format(conditional=conditional)
        probe = subprocess.run(
            [sys.executable, "-c", "import jax.numpy as j; print(j.ones(3).sum())"],
            env={**os.environ, "XLA_FLAGS": flags}, capture_output=True, text=True, timeout=120)
        log(f"probe {conditional}: rc {probe.returncode} {probe.stderr.strip()[-200:]}")
        if probe.returncode == 0:
            return flags
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--budget", type=float, default=480.0)
    parser.add_argument("--variants", default="seq,seq_cmdbuf,vmap64,grouped3,grouped4,"
                        "grouped3_cmdbuf", help="comma-separated NAME or NAME_cmdbuf")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--worker", dest="name", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", choices=STRATEGIES, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("time", "full"), help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.name:
        return worker(args)
    begin = time.time()
    flags = _probe_command_buffer_flags(args.smoke)
    summary = {"budget_s": args.budget, "command_buffer_flags": flags, "variants": {}}

    def run_worker(name, phase, timeout, deadline=0.0):
        strategy = name.removesuffix("_cmdbuf")
        env = {**os.environ, "XLA_FLAGS": flags if name.endswith("_cmdbuf") else ""}
        command = [sys.executable, __file__, "--out", str(args.out), "--worker", name,
                   "--strategy", strategy, "--phase", phase, "--deadline", str(deadline)]
        with open(args.out / f"worker-{phase}-{name}.log", "w") as logfile:
            try:
                code = subprocess.run(command + (["--smoke"] if args.smoke else []), env=env,
                                      stdout=logfile, stderr=subprocess.STDOUT,
                                      timeout=max(1.0, timeout)).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        path = args.out / f"{phase}-{name}.json"
        result = json.loads(path.read_text()) if path.exists() else {}
        if code != 0:
            result["error"] = f"exit {code}"
        return result

    time_until = begin + 0.5 * args.budget
    for name in args.variants.split(","):
        if name.endswith("_cmdbuf") and not flags:
            continue
        if time.time() > time_until:
            summary["variants"][name] = {"error": "not run: out of time"}
            continue
        result = run_worker(name, "time", time_until + 60 - time.time())
        summary["variants"][name] = result
        log(f"{name}: {result.get('per_arch_s', float('nan')) * 1e3:.2f} ms/arch, compile "
            f"{result.get('compile_s', float('nan')):.1f} s {result.get('error', '')}")
    timed = {n: v["per_arch_s"] for n, v in summary["variants"].items() if "per_arch_s" in v}
    chosen = min(timed, key=timed.get) if timed else None
    summary["chosen"] = chosen
    log(f"chosen for the full space: {chosen}")
    if chosen:
        deadline = begin + args.budget - 20
        summary["full_space"] = run_worker(chosen, "full", deadline + 15 - time.time(),
                                           deadline)
        log(f"full space: {summary['full_space'].get('full_space')}")
    summary["wall_s"] = time.time() - begin
    (args.out / "fullspace.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
