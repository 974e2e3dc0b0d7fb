"""All of NB201 with T-CET(SNIP) on one GPU: which strategy, and how long in all.

Made for a GPU lent for minutes. Each strategy runs in its own worker process (so each
can have its own ``XLA_FLAGS``); the workers compile concurrently (compilation is mostly
CPU work), then take turns on the GPU under a file lock to time a few hundred
architectures. The fastest then scores the whole space (15625 architectures) and writes
the scores in zcjax's results-store format, while the others exit.

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
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = {"seq": ("seq", 0), "vmap64": ("vmap", 64), "grouped5": ("grouped", 5),
              "grouped4": ("grouped", 4), "grouped3": ("grouped", 3)}
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
    import jax
    import jax.numpy as jnp
    import numpy as np

    from zcjax import grouped

    images, labels = batch
    if kind == "seq":
        def run(genotypes):
            with jax.enable_x64(True):
                outputs = jax.device_get([scorer.compiled(jnp.asarray(g), images, labels, key)
                                          for g in genotypes])
            return {p: np.asarray([o[p] for o in outputs], np.float64) for p in scorer.proxies}
    elif kind == "vmap":
        batched = jax.jit(jax.vmap(scorer.compiled, in_axes=(0, None, None, None)))

        def run(genotypes):
            pad = (-len(genotypes)) % size
            padded = np.concatenate([genotypes, np.repeat(genotypes[-1:], pad, 0)])
            with jax.enable_x64(True):
                outputs = jax.device_get([
                    batched(jnp.asarray(padded[i:i + size]), images, labels, key)
                    for i in range(0, len(padded), size)])
            return {p: np.concatenate([np.asarray(o[p], np.float64) for o in outputs])
                    [:len(genotypes)] for p in scorer.proxies}
    else:
        def run(genotypes):
            return grouped.score_grouped(scorer, genotypes, batch, key, size)
    return run


def worker(args) -> int:
    sys.path.insert(0, str(REPO / "bench"))
    import gpu_check  # noqa: F401 - makes zcjax.spaces importable from a bare checkout
    import jax
    import numpy as np

    import zcjax
    from zcjax import bulk
    from zcjax.spaces import nb201

    kind, size = STRATEGIES[args.strategy]
    result = {"name": args.name, "strategy": args.strategy,
              "xla_flags": os.environ.get("XLA_FLAGS", ""), "devices": str(jax.devices())}
    path = args.out / f"variant-{args.name}.json"

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
    started = time.perf_counter()
    run(first)
    result["compile_s"] = time.perf_counter() - started  # concurrent with the others
    save()
    with open(args.out / "gpu.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run(first)  # warm
        started = time.perf_counter()
        run(timed)
        result["per_arch_s"] = (time.perf_counter() - started) / len(timed)
        result["timed_archs"] = len(timed)
        fcntl.flock(lock, fcntl.LOCK_UN)
    save()
    decision = args.out / "decision.json"
    while not decision.exists():
        time.sleep(0.5)
    if json.loads(decision.read_text())["chosen"] != args.name:
        return 0
    space = everything[:500] if args.smoke else everything
    deadline = json.loads(decision.read_text())["deadline"]
    step = 5 ** (nb201.NUM_EDGES - size) * 25 if kind == "grouped" else 1600
    scores, done = {p: [] for p in scorer.proxies}, 0
    started = time.perf_counter()
    for start in range(0, len(space), step):
        if time.time() > deadline:
            break
        part = run(space[start:start + step])
        for name in scorer.proxies:
            scores[name].append(part[name])
        done += len(space[start:start + step])
        result["full_space"] = {"archs": done, "seconds": time.perf_counter() - started}
        save()
    values = np.stack([np.concatenate(scores[p]) for p in scorer.proxies], 1)
    result["full_space"]["non_finite"] = int(np.sum(~np.isfinite(values)))
    save()
    settings = bulk.run_settings(nb201, {"config": config})[2]
    gpu_check.write_scores(args.out, f"full-{args.name}", "cifar10", scorer.proxies,
                           space[:done], values, [result["full_space"]["seconds"] / done] * done,
                           settings, bulk.batch_fingerprint(*batch))
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
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--worker", dest="name", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", choices=STRATEGIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.name:
        return worker(args)
    begin = time.time()
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    variants = {name: (name, "") for name in STRATEGIES}
    if args.smoke:
        variants = {name: (name, "") for name in ("seq", "grouped4")}
    processes = {}

    def launch(name, strategy, flags):
        command = [sys.executable, __file__, "--out", str(args.out), "--worker", name,
                   "--strategy", strategy] + (["--smoke"] if args.smoke else [])
        logfile = open(args.out / f"worker-{name}.log", "w")
        processes[name] = subprocess.Popen(command, env={**env, "XLA_FLAGS": flags},
                                           stdout=logfile, stderr=subprocess.STDOUT)

    for name, (strategy, flags) in variants.items():
        launch(name, strategy, flags)
    flags = _probe_command_buffer_flags(args.smoke)
    if flags:
        for strategy in ("seq", "grouped4", "grouped5"):
            launch(f"{strategy}_cmdbuf", strategy, flags)
    summary = {"budget_s": args.budget, "command_buffer_flags": flags, "variants": {}}
    choose_by = begin + 0.55 * args.budget
    while time.time() < choose_by:
        finished = [n for n in processes
                    if (args.out / f"variant-{n}.json").exists()
                    and "per_arch_s" in json.loads((args.out / f"variant-{n}.json").read_text())]
        failed = [n for n, p in processes.items() if p.poll() not in (None, 0)]
        if len(finished) + len(failed) == len(processes):
            break
        time.sleep(1)
    for name in processes:
        path = args.out / f"variant-{name}.json"
        summary["variants"][name] = json.loads(path.read_text()) if path.exists() else {
            "error": f"no result (exit {processes[name].poll()})"}
    timed = {n: v["per_arch_s"] for n, v in summary["variants"].items() if "per_arch_s" in v}
    for name, value in sorted(timed.items(), key=lambda item: item[1]):
        log(f"{name}: {value * 1e3:.2f} ms/arch, compile "
            f"{summary['variants'][name].get('compile_s', float('nan')):.1f} s (concurrent)")
    chosen = min(timed, key=timed.get) if timed else None
    deadline = begin + args.budget - 25
    (args.out / "decision.json").write_text(json.dumps({"chosen": chosen, "deadline": deadline}))
    summary["chosen"] = chosen
    log(f"chosen for the full space: {chosen}")
    if chosen:
        try:
            processes[chosen].wait(timeout=max(1.0, deadline + 20 - time.time()))
        except subprocess.TimeoutExpired:
            log("full space: out of time")
        path = args.out / f"variant-{chosen}.json"
        summary["variants"][chosen] = json.loads(path.read_text())
        log(f"full space: {summary['variants'][chosen].get('full_space')}")
    for process in processes.values():
        if process.poll() is None:
            process.kill()
    summary["wall_s"] = time.time() - begin
    (args.out / "fullspace.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
