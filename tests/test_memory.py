"""Resident memory stays flat while one process scores 2000 NB201 architectures.

NASLib runs out of memory after ~6000 NB201 graphs; zcjax keeps nothing per architecture
but its row of results until the part is written. A fresh process scores 2000 seeded
architectures of the full-size NB201 network with ``score_space`` while a thread samples
its resident set (``/proc/self/statm``) and the store's part count; the resident set
when the first 100 architectures are stored and when all 2000 are must agree within
MAX_GROWTH_MIB. Marked slow (about 15 minutes on a 2-core CPU); the closing note of issue
13 reports the measured numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ARCHS, FIRST, CHUNK = 2000, 100, 50
MAX_GROWTH_MIB = 64

SCRIPT = r"""
import json, os, sys, threading, time
import jax
import zcjax
from zcjax import bulk, store
from zcjax.spaces import nb201

out, archs, first, chunk = sys.argv[1], *map(int, sys.argv[2:5])
page = os.sysconf("SC_PAGE_SIZE")
samples, done = [], threading.Event()

def resident_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * page / 2**20

def sample():
    while not done.wait(0.5):
        parts = len(store.part_files(out)) if os.path.isdir(out) else 0
        samples.append((parts * chunk, resident_mib()))

threading.Thread(target=sample, daemon=True).start()
batch = zcjax.data.sample_batch("cifar10", 16, key=jax.random.key(0))
genotypes = nb201.sample(jax.random.key(1), archs)
started = time.perf_counter()
bulk.score_space("nb201", "naswot,snip", batch, key=0, out=out, dataset="cifar10",
                 archs=genotypes, chunk=chunk, progress=False)
done.set()
stored = len(store.read_results(out))
at_first = next(mib for count, mib in samples if count >= first)
print(json.dumps({"at_first": at_first, "at_end": resident_mib(), "rows": stored,
                  "peak_sampled": max(mib for _, mib in samples),
                  "seconds": time.perf_counter() - started}))
"""


@pytest.mark.slow
def test_resident_memory_is_flat_over_2000_architectures(tmp_path, capsys):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "store"), str(ARCHS),
                             str(FIRST), str(CHUNK)], capture_output=True, text=True,
                            timeout=3 * 3600)
    assert result.returncode == 0, result.stderr[-4000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    with capsys.disabled():
        print(f"\nresident memory: {measured['at_first']:.0f} MiB after {FIRST} architectures, "
              f"{measured['at_end']:.0f} MiB after {ARCHS} (sampled peak "
              f"{measured['peak_sampled']:.0f} MiB), {measured['seconds']:.0f} s")
    assert measured["rows"] == 2 * ARCHS
    assert measured["at_end"] - measured["at_first"] <= MAX_GROWTH_MIB, measured
