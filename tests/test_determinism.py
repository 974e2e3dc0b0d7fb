"""Same key, same inputs, same scores, bit for bit: across fresh processes, workers and resumes.

Each case scores a space's fixture architectures (tests/test_space_conformance.py: a small
config, one chunk per architecture) into results stores, in separate Python processes:

* ``first``: one process, ``workers=1``;
* ``again``: a second fresh process, the same call; then, in that process, a copy of its
  store without its last part is resumed (the resumed run scores only what is missing);
* ``workers``: a third process with ``workers=2`` (two spawned worker processes).

Every (architecture, proxy) value of every store must equal ``first``'s exactly (NaN
equal to NaN). The processes share one persistent compilation cache, so ``first``
compiles and the others load what it compiled: the check covers the cached executable
as well as a fresh one. XLA:CPU is deterministic here (the same thread pool on the same
machine); were it not, this test would show the largest difference.

CI checks two kinds of pass (a gradient, the activation codes) on every space; ``-m
slow`` checks every proxy on every space (compiling all 39 takes from ~3 minutes on NB201
to over half an hour on DARTS on a 2-core CPU).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import zcjax
from zcjax import store

TESTS = Path(__file__).resolve().parent
# A gradient pass (snip) and the activation codes (naswot).
KINDS = "snip,naswot"
EVERY = ",".join(zcjax.proxies.names())

# Run in a fresh interpreter: score FIXTURES[space]'s archs into each store named.
SCRIPT = r"""
import dataclasses, shutil, sys
sys.path.insert(0, sys.argv[1])
import jax
import zcjax
from zcjax import bulk, store
from test_space_conformance import FIXTURES

space, proxies, cache, mode, out = sys.argv[2:7]
fixture = FIXTURES[space]
definition = zcjax.get_space(space)
config = dataclasses.replace(definition.Config(**fixture.config), **fixture.scoring)
images, labels = zcjax.data.sample_batch("imagenet16-120", 8)
images = jax.image.resize(images, (8, config.image_size, config.image_size, 3), "bilinear")
kwargs = dict(key=0, dataset="imagenet16-120", archs=list(fixture.archs[:3]), chunk=1,
              cache_dir=cache, progress=False, config=config)
batch = images, labels % config.num_classes
if mode == "workers":
    bulk.score_space(space, proxies, batch, out=out, workers=2, **kwargs)
else:
    bulk.score_space(space, proxies, batch, out=out, **kwargs)
if mode == "again":  # resume a copy of this store that lacks its last part
    resumed = out + "-resumed"
    shutil.copytree(out, resumed)
    store.part_files(resumed)[-1].unlink()
    summary = bulk.score_space(space, proxies, batch, out=resumed, **kwargs)
    assert summary.archs_scored == 1, summary
"""


def run(space, proxies, cache, mode, out):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(TESTS), space, proxies,
                             str(cache), mode, str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=1800):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]


def values(out) -> pd.Series:
    frame = store.read_results(out)
    assert not frame.duplicated(["arch", "proxy"]).any()
    return frame.set_index(["arch", "proxy"]).value.sort_index()


CASES = [pytest.param(space, KINDS, id=f"{space}-{len(KINDS.split(','))}-kinds")
         for space in zcjax.space_names()]
CASES += [pytest.param(space, EVERY, id=f"{space}-every-proxy", marks=pytest.mark.slow)
          for space in zcjax.space_names()]


@pytest.mark.parametrize("space,proxies", CASES)
def test_scores_are_bit_identical_across_processes_workers_and_resumes(space, proxies,
                                                                       tmp_path):
    cache = tmp_path / "jax-cache"
    finish(run(space, proxies, cache, "first", tmp_path / "first"))
    again = run(space, proxies, cache, "again", tmp_path / "again")
    workers = run(space, proxies, cache, "workers", tmp_path / "workers")
    finish(again)
    finish(workers)

    first = values(tmp_path / "first")
    assert len(first) == 3 * len(proxies.split(","))  # three architectures, every proxy
    differences = {}
    for name in ("again", "again-resumed", "workers"):
        other = values(tmp_path / name)
        pd.testing.assert_index_equal(other.index, first.index)
        same = (other.to_numpy() == first.to_numpy()) | (np.isnan(other.to_numpy())
                                                        & np.isnan(first.to_numpy()))
        if not same.all():
            relative = (np.abs(other - first) / np.maximum(np.abs(first), 1e-300))[~same]
            differences[name] = {f"{arch} {proxy}": value
                                 for (arch, proxy), value in relative.items()}
    assert not differences, differences
