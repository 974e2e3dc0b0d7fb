"""Summarise a pytest-benchmark JSON of bench/test_nb201_speed.py as a Markdown table.

  python bench/summarize.py bench/results.json   # the table of bench/RESULTS.md

Per proxy set: seconds per architecture (median of the rounds) for each strategy, the
compile time, and the ratios zcjax / PyTorch (below 1 = zcjax faster) and the speed-up.
"""

from __future__ import annotations

import json
import platform
import sys
from collections import defaultdict


def load(path):
    with open(path) as handle:
        data = json.load(handle)
    table = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        per_arch = bench["stats"]["median"] / info.get("archs_per_round", 1)
        table[info["proxy_set"]][info["strategy"]] = (per_arch, info)
    return data, table


def seconds(entry):
    return "-" if entry is None else f"{entry[0]:.3f}"


def main(path) -> int:
    data, table = load(path)
    machine = data.get("machine_info", {})
    print("# zcjax vs the PyTorch reference: seconds per NB201 architecture\n")
    print(f"Machine: {machine.get('cpu', {}).get('brand_raw', platform.processor())}, "
          f"{machine.get('cpu', {}).get('count', '?')} cores, Python "
          f"{machine.get('python_version', '?')}; {data.get('datetime', '')}.\n")
    print("| proxy set | zcjax compiled once | compile (s) | one jit per arch | vmap | "
          "PyTorch | zcjax / PyTorch | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for proxy_set, strategies in table.items():
        once, torch = strategies.get("compiled_once"), strategies.get("pytorch")
        compile_s = once[1].get("compile_and_first_run_s") if once else None
        ratio = once[0] / torch[0] if once and torch else None
        print(f"| {proxy_set} | {seconds(once)} | "
              f"{'-' if compile_s is None else f'{compile_s:.1f}'} | "
              f"{seconds(strategies.get('per_arch_jit'))} | {seconds(strategies.get('vmap'))} "
              f"| {seconds(torch)} | {'-' if ratio is None else f'{ratio:.2f}'} | "
              f"{'-' if ratio is None else f'{1 / ratio:.1f}x'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
