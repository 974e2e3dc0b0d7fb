"""Where one NB201 forward+backward spends its time: zcjax's supernet, the per-architecture
reference module and PyTorch, op by op, on the same architectures (issue 16 item 1).

The two JAX programs are traced with ``jax.profiler`` (XLA:CPU records one event per
executed thunk, named after its HLO instruction: ``convolution.3``,
``transpose_copy_fusion.1``, ``conditional.2``, ``while.1``, ...); an event's self time is
its duration less the events nested in it on the same thread, so a ``conditional`` or a
``while`` counts only its own dispatch, not the ops it runs. PyTorch's side is
``torch.profiler``'s self CPU time per aten op. Both are summed into the same categories
(convolutions, transposes and copies, reductions, elementwise fusions, conditionals, the
scan loop, the rest), per forward+backward, then written as a Markdown section of
``bench/RESULTS.md`` (``--results``, between its profile markers).

  python bench/profile_nb201.py --results bench/RESULTS.md

Run it on a quiet machine: the wall-clock column is the median of the profiled calls.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import zcjax
from zcjax.proxies.base import cross_entropy
from zcjax.spaces import nb201

from sota_nb201 import write_section  # bench/

ARCHS = 3
CALLS_PER_ARCH = 3
BATCH_SIZE = 64
START, END = "<!-- profile_nb201.py -->", "<!-- end of profile -->"
CATEGORIES = ("convolution", "transpose / copy", "scan slicing and stacking",
              "reduction (BN statistics, pooling)", "matmul", "elementwise",
              "conditional (dispatch)", "scan loop (dispatch)", "executor dispatch", "other")
# First match wins: an HLO instruction's name says its opcode or its fusion's kind;
# dynamic-slice / dynamic-update-slice fusions are the scan reading a cell's parameters
# from the stacked array and writing its gradients back.
JAX_RULES = (("convolution", r"conv"),
             ("scan slicing and stacking", r"dynamic-slice|dynamic-update-slice"),
             ("transpose / copy", r"transpose|copy"),
             ("reduction (BN statistics, pooling)", r"reduce"), ("matmul", r"^dot|gemm"),
             ("conditional (dispatch)", r"^cond|^conditional"),
             ("scan loop (dispatch)", r"^while"),
             ("executor dispatch", r"^ThunkExecutor::Execute$"),
             ("elementwise", r"fusion|broadcast|add|multiply|maximum|select|compare|negate|"
                             r"exp|log|divide|subtract"))
TORCH_RULES = (("executor dispatch", r"autograd::engine"),  # before "conv": it names nodes
               ("convolution", r"conv"),
               ("transpose / copy", r"copy|contiguous|clone|permute|transpose|to_dense"),
               ("reduction (BN statistics, pooling)", r"batch_?norm|sum|mean|var|pool"),
               ("matmul", r"addmm|\bmm\b|linear"),
               ("elementwise", r"add|mul|relu|clamp|threshold|div|sub|log_softmax|nll|fill|zero|"
                               r"empty|view|reshape|expand|detach|fill"))
# Wrappers around a whole call and the profiler's own events are not ops; "end: x", the
# tail of an asynchronous thunk, counts with x.
JAX_SKIP = re.compile(r"\(wait for completion\)|PjRt|Pjit|^\$|Allocate|Handle|Parse|Python|"
                      r"Wait|ThreadpoolListener")


COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) \(.*\{$")
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (?:\([^=]*?\)|\S+) ([a-z][\w\-]*)\(")
CALLS = re.compile(r"\bcalls=%?([\w.\-]+)")
# A fusion is named by the costliest kind of op it holds (XLA:CPU's "ynn_fusion" may hold
# a convolution, a reduction or elementwise ops).
FUSED_PRIORITY = (("convolution", {"convolution"}), ("matmul", {"dot"}),
                  ("reduction (BN statistics, pooling)", {"reduce", "reduce-window"}),
                  ("scan slicing and stacking", {"dynamic-slice", "dynamic-update-slice"}),
                  ("transpose / copy", {"transpose", "copy"}))


def hlo_categories(hlo_text: str) -> dict[str, str]:
    """Each instruction of a compiled program's HLO by category: a fusion by the ops of
    the computation it calls, any other instruction by its opcode."""
    ops, calls, current = collections.defaultdict(set), {}, None
    for line in hlo_text.splitlines():
        if (match := COMPUTATION.match(line)) and " = " not in line:
            current = match.group(1)
        elif current and (match := INSTRUCTION.match(line)):
            name, opcode = match.groups()
            ops[current].add(opcode)
            calls[name] = (opcode, CALLS.findall(line))

    categories = {}
    for name, (opcode, callees) in calls.items():
        held = {opcode} if opcode != "fusion" else set().union(*(ops[c] for c in callees))
        category = next((c for c, kinds in FUSED_PRIORITY if held & kinds), None)
        categories[name] = category or categorise(opcode, JAX_RULES)
    return categories


def categorise(name: str, rules) -> str:
    name = name.removeprefix("end: ")
    for category, pattern in rules:
        if re.search(pattern, name, re.IGNORECASE):
            return category
    return "other"


def summarise(timed, calls: int) -> dict[str, float]:
    """Milliseconds per call by category, from (name, category, microseconds) triples;
    what falls in "other" is printed, so that the rules can be checked."""
    per_category, others = collections.Counter(), collections.Counter()
    for name, category, micros in timed:
        per_category[category] += micros / 1e3 / calls
        if category == "other":
            others[name] += micros / 1e3 / calls
    print("other: " + ", ".join(f"{n} {t:.1f} ms" for n, t in others.most_common(8)),
          file=sys.stderr)
    return per_category


def self_times(events) -> dict[str, float]:
    """Microseconds of self time per event name: duration minus nested events (same
    thread), over complete ('X') events."""
    by_thread = collections.defaultdict(list)
    for event in events:
        if event.get("ph") == "X" and "dur" in event:
            by_thread[(event.get("pid"), event.get("tid"))].append(event)
    totals = collections.Counter()
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [event, time of its children]
        for event in thread_events:
            while stack and event["ts"] >= stack[-1][0]["ts"] + stack[-1][0]["dur"]:
                done, children = stack.pop()
                totals[done["name"]] += done["dur"] - children
            if stack:
                stack[-1][1] += event["dur"]
            stack.append([event, 0.0])
        for done, children in stack:
            totals[done["name"]] += done["dur"] - children
    return totals


def profile_jax(programs) -> tuple[dict[str, float], float]:
    """({category: ms per call}, median wall ms) of ``programs``, each a compiled program
    and its arguments, called ``CALLS_PER_ARCH`` times after one warm-up."""
    timed, walls = [], []
    for compiled, arguments in programs:
        jax.block_until_ready(compiled(*arguments))
        categories = hlo_categories(compiled.as_text())
        with tempfile.TemporaryDirectory() as log_dir:
            with jax.profiler.trace(log_dir, create_perfetto_trace=True):
                for _ in range(CALLS_PER_ARCH):
                    started = time.perf_counter()
                    jax.block_until_ready(compiled(*arguments))
                    walls.append(time.perf_counter() - started)
            (trace,) = Path(log_dir).rglob("*.trace.json.gz")
            document = json.load(gzip.open(trace))
        events = document["traceEvents"] if isinstance(document, dict) else document
        # A thunk is categorised by its HLO instruction (names are per program); the
        # executors' own events, not in the HLO, by their names.
        timed += [(name, categories.get(name.removeprefix("end: "))
                   or categorise(name, JAX_RULES), micros)
                  for name, micros in self_times(events).items() if not JAX_SKIP.search(name)]
    return summarise(timed, len(walls)), 1e3 * float(np.median(walls))


def zcjax_programs(config, batch, genotypes):
    """Loss and gradients of each architecture, compiled ahead of time: the supernet
    (genotype traced: one program for all) and the reference module (genotype static:
    one program each)."""
    images, labels = batch
    supernet, reference = nb201.network(config), nb201.reference_network(config)
    params = jax.jit(supernet.init)(jax.random.key(0), images[:1])["params"]

    def loss_and_grad(network, params, genotype):
        def loss(params):
            return cross_entropy(network.apply({"params": params}, genotype, images), labels)
        return jax.value_and_grad(loss)(params)

    traced = jax.jit(lambda p, g: loss_and_grad(supernet, p, g))
    static = jax.jit(lambda p, g: loss_and_grad(reference, p, np.asarray(g, np.int32)),
                     static_argnums=1)
    one = traced.lower(params, jnp.asarray(genotypes[0])).compile()
    supernet_programs = [(one, (params, jnp.asarray(g))) for g in genotypes]
    reference_programs = [(static.lower(params, tuple(int(v) for v in g)).compile(), (params,))
                          for g in genotypes]
    return supernet_programs, reference_programs


def profile_torch(config, batch, genotypes) -> tuple[dict[str, float], float]:
    import torch
    import torch_reference  # bench/

    torch.set_num_threads(os.cpu_count() or 1)
    images, labels = batch
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    models = [torch_reference.model_for(arch, config) for arch in nb201.arch_strings(genotypes)]

    def step(model):
        model.zero_grad()
        _, logits = model(x)
        torch.nn.functional.cross_entropy(logits, y).backward()

    for model in models:
        step(model)
    walls = []
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for model in models * CALLS_PER_ARCH:
            started = time.perf_counter()
            step(model)
            walls.append(time.perf_counter() - started)
    timed = [(a.key, categorise(a.key, TORCH_RULES), a.self_cpu_time_total)
             for a in prof.key_averages()]
    return summarise(timed, len(walls)), 1e3 * float(np.median(walls))


def table(columns: dict[str, tuple[dict[str, float], float]]) -> str:
    names = list(columns)
    lines = ["| ms per forward+backward | " + " | ".join(names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for category in CATEGORIES:
        cells = [f"{columns[n][0].get(category, 0.0):.1f}" for n in names]
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    sums = [f"{sum(columns[n][0].values()):.1f}" for n in names]
    lines.append("| sum of op self times (both threads) | " + " | ".join(sums) + " |")
    lines.append("| wall clock, median | " + " | ".join(f"{columns[n][1]:.1f}" for n in names)
                 + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="write the table into this Markdown file")
    args = parser.parse_args(argv)
    config = nb201.Config()
    batch = zcjax.data.sample_batch("cifar10", BATCH_SIZE)
    genotypes = nb201.sample(jax.random.key(0), ARCHS)
    supernet, reference = zcjax_programs(config, batch, genotypes)
    columns = {"zcjax supernet": profile_jax(supernet),
               "zcjax per-architecture module": profile_jax(reference),
               "PyTorch": profile_torch(config, batch, genotypes)}
    text = table(columns)
    print(text)
    if args.results:
        machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"jax {jax.__version__}")
        archs = ", ".join(nb201.arch_strings(genotypes))
        write_section(args.results, f"{text}\n\n{ARCHS} architectures ({archs}), "
                                    f"{CALLS_PER_ARCH} profiled calls each after a warm-up, "
                                    f"batch {BATCH_SIZE}, full size; {machine}; "
                                    f"{time.strftime('%Y-%m-%d')}", START, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
