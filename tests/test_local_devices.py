"""score_space(backend="devices") (zcjax.local_devices): one scorer per local device.

The machine has one CPU device; a subprocess splits it in two
(``--xla_force_host_platform_device_count=2``), scores on both and reports which device
scored each chunk. Its store must equal the processes backend's in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import TINY, same_values, stored_values
from zcjax import bulk
from zcjax.spaces import nb201

PROXIES = "snip"

_TWO_DEVICES = """
import json, sys, threading
sys.path.insert(0, {tests!r})
import jax
import numpy as np
from conftest import TINY
from zcjax import bulk

used = []
scorer_class = bulk.ChunkScorer
# Each device's thread takes its first chunk before either scores: both devices score.
both_started = threading.Barrier(2, timeout=300)

class Recording(scorer_class):
    def __init__(self, spec, device=None):
        super().__init__(spec, device)
        self.device = device

    def __call__(self, genotypes, on_each=None):
        if not used.count(str(self.device)):
            both_started.wait()
        used.append(str(self.device))
        values = super().__call__(genotypes, on_each)
        assert self.batch[0].devices() == {{self.device}}
        return values

bulk.ChunkScorer = Recording
images, labels = np.load({batch!r}).values()
bulk.score_space("nb201", {proxies!r}, (images, labels), key=0, out={out!r},
                 dataset="tiny", archs={archs!r}, config=TINY, progress=False, chunk=2,
                 backend="devices")
print(json.dumps({{"devices": [str(d) for d in jax.local_devices()], "used": used}}))
"""


def test_two_devices_store_what_one_process_stores(tmp_path, tiny_batch):
    archs = [nb201.decode(g) for g in nb201.sample(jax.random.key(6), 12)]
    reference = tmp_path / "processes"
    bulk.score_space("nb201", PROXIES, tiny_batch, key=0, out=reference, dataset="tiny",
                     archs=archs, config=TINY, progress=False, chunk=2)
    saved, out = tmp_path / "batch.npz", tmp_path / "devices"
    np.savez(saved, images=np.asarray(tiny_batch[0]), labels=np.asarray(tiny_batch[1]))
    script = _TWO_DEVICES.format(tests=str(Path(__file__).parent), batch=str(saved),
                                 proxies=PROXIES, out=str(out), archs=archs)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["devices"]) == 2
    assert set(report["used"]) == set(report["devices"]), "a device scored nothing"
    assert len(report["used"]) == len(archs) // 2
    assert same_values(stored_values(out), stored_values(reference))


def test_devices_backend_takes_no_workers(tmp_path, tiny_batch):
    with pytest.raises(ValueError, match="one scorer per local device .* leave workers at 1"):
        bulk.score_space("nb201", PROXIES, tiny_batch, key=0, out=tmp_path, dataset="tiny",
                         archs=["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"],
                         config=TINY, workers=2, backend="devices")
