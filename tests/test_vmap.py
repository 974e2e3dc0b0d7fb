"""vmap over whole genotypes on XLA:CPU: completes at batch 64 and equals sequential calls.

Per-layer log-determinants once ran as separate LAPACK calls that XLA:CPU executes
concurrently; under vmap at batch 64 such a program never completed (every thread idle).
It runs in a subprocess with a timeout, so a hang fails this test instead of the suite.
"""

import subprocess
import sys

SCRIPT = """
import jax, jax.numpy as jnp, numpy as np, zcjax
from zcjax.spaces import nb201
config = nb201.Config(channels=(4, 8, 16), cells_per_stage=1)
scorer = zcjax.make_scorer("nb201", ("tcet_snip",), config=config)
batch = zcjax.data.sample_batch("cifar10", 64)
key = jax.random.key(0)
genotypes = nb201.sample(jax.random.key(7), 2)
batched = jax.jit(jax.vmap(scorer.compiled, in_axes=(0, None, None, None)))
with jax.enable_x64(True):
    together = jax.device_get(batched(jnp.asarray(genotypes), *batch, key))["tcet_snip"]
alone = [scorer(g, batch, key)["tcet_snip"] for g in genotypes]
np.testing.assert_allclose(together, alone, rtol=1e-4)
print("ok")
"""


def test_vmap_over_genotypes_completes_at_batch_64():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
