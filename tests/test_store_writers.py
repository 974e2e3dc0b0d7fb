"""Two zcjax score-space processes on one store at once: exactly the union, once each."""

import jax
import pyarrow.parquet as pq

from conftest import start_tiny_cli
from zcjax import store
from zcjax.spaces import nb201


def argv(out, proxies, cache):
    return ["score-space", "nb201", "--proxies", proxies, "--n", "10", "--chunk", "2",
            "--batch-size", "8", "--out", out, "--cache-dir", cache, "--no-progress"]


def run_together(tmp_path, *proxy_sets):
    out, cache = tmp_path / "store", tmp_path / "cache"
    processes = [start_tiny_cli(argv(out, proxies, cache), tmp_path / f"{i}.log", seconds=0.1)
                 for i, proxies in enumerate(proxy_sets)]
    for i, process in enumerate(processes):
        assert process.wait(timeout=300) == 0, (tmp_path / f"{i}.log").read_text()[-2000:]
    for part in store.part_files(out):
        pq.read_table(part)  # every part whole
    return store.read_results(out)


SAMPLED = set(nb201.arch_strings(nb201.sample(jax.random.key(0), 10)))  # --n 10 --seed 0


def test_two_writers_of_the_same_run_store_every_row_once(tmp_path):
    rows = run_together(tmp_path, "params,l2_norm", "params,l2_norm")
    assert not rows.duplicated(["arch", "proxy"]).any()
    assert set(rows.arch) == SAMPLED and len(rows) == 20


def test_two_overlapping_runs_store_the_union_once(tmp_path):
    rows = run_together(tmp_path, "params,l2_norm", "l2_norm,flops")
    assert not rows.duplicated(["arch", "proxy"]).any()
    assert set(rows.arch) == SAMPLED
    assert sorted(rows.groupby("proxy").size().items()) == [("flops", 10), ("l2_norm", 10),
                                                           ("params", 10)]
