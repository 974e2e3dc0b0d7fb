"""zcjax.bulk / zcjax.store / `zcjax score-space`: chunked scoring into a resumable store."""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import ARCHS, TINY
from zcjax import api, bulk, cli, store
from zcjax.spaces import nb201

PROXIES = ("jacob_cov", "naswot")  # jacob_cov is NaN on architectures with a constant output
TESTS = Path(__file__).resolve().parent
MORE_ARCHS = nb201.arch_strings(nb201.sample(jax.random.key(7), 5))
_SCORERS = {}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(module_compilation_cache):
    """One persistent cache for this module: subprocesses and workers load, not compile."""
    return module_compilation_cache


@pytest.fixture
def scored(monkeypatch):
    """make_scorer compiled once per setting in this module; records scored genotypes."""
    seen = []
    make_scorer = api.make_scorer

    def cached(space, proxies, **options):
        key = (space, tuple(proxies), tuple(sorted(options.items())))
        if key not in _SCORERS:
            _SCORERS[key] = make_scorer(space, proxies, **options)
        scorer = _SCORERS[key]

        def compiled(genotype, *args):
            seen.append(nb201.decode(np.asarray(genotype)))
            return scorer.compiled(genotype, *args)

        return dataclasses.replace(scorer, compiled=compiled)

    monkeypatch.setattr(api, "make_scorer", cached)
    return seen


def run(out, batch, archs, **kwargs):
    kwargs = {"key": 0, "dataset": "imagenet16-120", "chunk": 3, "config": TINY,
              "progress": False, **kwargs}
    return bulk.score_space("nb201", PROXIES, batch, out=out, archs=archs, **kwargs)


def base5(arch):
    """The genotype_index NB201 rows must carry: edge ops as base-5 digits, first edge first."""
    ops = re.findall(r"\|([^|~]+)~", arch)
    return sum(nb201.OPS.index(op) * 5 ** (5 - edge) for edge, op in enumerate(ops))


def test_chunks_rows_and_resume(tmp_path, tiny_batch, scored):
    out = tmp_path / "store"
    summary = run(out, tiny_batch, list(ARCHS))
    parts = store.part_files(out)
    assert len(parts) == 3 == len(summary.parts)  # 7 archs in chunks of 3
    assert [len(pq.read_table(p)) for p in parts] == [6, 6, 2]
    frame = store.read_results(out)
    assert len(frame) == len(ARCHS) * len(PROXIES) == summary.rows_written
    assert not frame.duplicated(["arch", "proxy"]).any()
    assert set(frame.arch) == set(ARCHS) and set(frame.proxy) == set(PROXIES)
    assert (frame.genotype_index == frame.arch.map(base5)).all()
    assert (frame.space == "nb201").all() and (frame.dataset == "imagenet16-120").all()
    assert (frame.seed == 0).all() and frame.batch_id.nunique() == 1
    assert (frame.seconds > 0).all()
    assert frame.value.dtype == np.float64

    scored.clear()
    again = run(out, tiny_batch, list(ARCHS))
    assert scored == [] and again.rows_written == 0 and again.rows_skipped == 14
    assert store.part_files(out) == parts

    # More architectures (and a duplicate): only the new ones are scored.
    grown = run(out, tiny_batch, list(ARCHS) + MORE_ARCHS[:2] + [ARCHS[0]])
    assert set(scored) == set(MORE_ARCHS[:2])
    counts = (grown.archs, grown.archs_scored, grown.rows_written, grown.rows_skipped)
    assert counts == (9, 2, 4, 14)
    frame = store.read_results(out)
    assert len(frame) == 18 and not frame.duplicated(["arch", "proxy"]).any()


def test_stored_values_are_the_scorer_values_non_finite_kept(tmp_path, tiny_batch, scored):
    summary = run(tmp_path, tiny_batch, list(ARCHS), key=jax.random.key(3), seed=3)
    frame = store.read_results(tmp_path).set_index(["arch", "proxy"])
    scorer = _SCORERS[("nb201", PROXIES, (("config", TINY), ("init_draw", "one")))]
    expected = {(arch, name): float(value) for arch in ARCHS for name, value in
                scorer(nb201.encode(arch), tiny_batch, jax.random.key(3)).items()}
    stored = {index: frame.value[index] for index in expected}
    np.testing.assert_array_equal(list(stored.values()), list(expected.values()))  # NaN == NaN
    non_finite = sum(not np.isfinite(v) for v in expected.values())
    assert non_finite > 0 and summary.non_finite == non_finite
    assert (frame.seed == 3).all()

    # Another seed is another run: stored beside the first, nothing skipped.
    other = run(tmp_path, tiny_batch, list(ARCHS), key=4)
    assert other.rows_skipped == 0 and other.rows_written == 14
    assert sorted(store.read_results(tmp_path).seed.unique()) == [3, 4]


class _StubScorer:
    """A scorer without a network: value = f(genotype), one proxy infinite."""

    def __init__(self, proxies):
        self.proxies = tuple(proxies)
        self.calls = []

    def __call__(self, genotype, batch, key):
        self.calls.append(tuple(int(g) for g in genotype))
        first_op = nb201.OPS[int(genotype[0])]
        values = {"snip": float(np.sum(genotype)),
                  "synflow": -np.inf if first_op == "nor_conv_3x3" else np.inf}
        return {name: np.float64(values[name]) for name in self.proxies}


def test_adding_a_proxy_scores_only_that_proxy(tmp_path, tiny_batch, monkeypatch):
    stubs = []

    def make_stub(space, proxies, **options):
        stubs.append(_StubScorer(proxies))
        return stubs[-1]

    monkeypatch.setattr(api, "make_scorer", make_stub)
    options = {"key": 0, "dataset": "d", "config": TINY, "progress": False}
    bulk.score_space("nb201", "snip", tiny_batch, out=tmp_path, archs=ARCHS[:3], **options)
    summary = bulk.score_space("nb201", "snip,synflow", tiny_batch, out=tmp_path,
                               archs=ARCHS[:4], **options)
    assert stubs[1].proxies == ("snip", "synflow")  # ARCHS[3] lacks snip too
    assert (summary.rows_written, summary.rows_skipped, summary.non_finite) == (5, 3, 4)
    frame = store.read_results(tmp_path)
    assert len(frame) == 8 and not frame.duplicated(["arch", "proxy"]).any()
    values = frame.set_index(["arch", "proxy"]).value
    assert values[ARCHS[0], "synflow"] == -np.inf and values[ARCHS[1], "synflow"] == np.inf
    assert values[ARCHS[3], "snip"] == 6.0  # six skip_connect edges, op index 1

    summary = bulk.score_space("nb201", "synflow", tiny_batch, out=tmp_path,
                               archs=ARCHS[:4], **options)
    assert len(stubs) == 2 and summary.rows_skipped == 4  # nothing to do: nothing built


def test_settings_hold_only_what_each_proxy_reads(tmp_path, tiny_batch, monkeypatch):
    monkeypatch.setattr(api, "make_scorer", lambda space, proxies, **o: _StubScorer(proxies))
    options = {"key": 0, "dataset": "d", "progress": False, "archs": ARCHS[:2], "config": TINY}
    monkeypatch.setattr(_StubScorer, "__call__", lambda self, genotype, batch, key: {
        name: np.float64(len(name)) for name in self.proxies})
    bulk.score_space("nb201", "snip,naswot", tiny_batch, out=tmp_path, **options)
    again = bulk.score_space("nb201", "snip,naswot", tiny_batch, out=tmp_path,
                             activation_bn="init", **options)  # the default, spelt out
    assert again.rows_written == 0
    changed = bulk.score_space("nb201", "snip,naswot", tiny_batch, out=tmp_path,
                               activation_bn="batch", **options)
    assert (changed.rows_written, changed.rows_skipped) == (2, 2)  # naswot only
    frame = store.read_results(tmp_path)
    settings = {proxy: [json.loads(s) for s in rows.settings.unique()]
                for proxy, rows in frame.groupby("proxy")}
    assert [s["options"] for s in settings["snip"]] == [{}]
    assert sorted(s["options"]["activation_bn"] for s in settings["naswot"]) == ["batch", "init"]
    assert all(s["config"]["channels"] == list(TINY.channels) for s in settings["naswot"])
    with pytest.raises(TypeError, match="activation_bn"):  # snip reads no such option
        bulk.score_space("nb201", "snip", tiny_batch, out=tmp_path, activation_bn="batch",
                         **options)


# Written by main at ca60768, before proxies owned their options (tests/data/README.md).
OLD_STORE = TESTS / "data" / "store_before_issue12"
OLD_STORE_ARCHS = (ARCHS[0], ARCHS[1], ARCHS[2], ARCHS[5])


def test_a_store_written_before_proxies_owned_options_resumes(tmp_path, tiny_batch,
                                                              monkeypatch):
    out = tmp_path / "old"
    shutil.copytree(OLD_STORE, out)
    built = []
    monkeypatch.setattr(api, "make_scorer",
                        lambda space, proxies, **o: built.append(proxies) or _StubScorer(proxies))
    # The stored batch's id: its images were normalised with the constants of that time
    # (before NAS-Bench-201's own), so today's fingerprint of the same images differs.
    batch_id = pd.read_parquet(OLD_STORE)["batch_id"].unique()
    assert len(batch_id) == 1
    options = {"key": 0, "dataset": "imagenet16-120", "chunk": 2, "config": TINY,
               "progress": False, "batch_id": str(batch_id[0])}
    # Its weights were drawn per array (zcjax.settings): today's one draw is another run.
    summary = bulk.score_space("nb201", "synflow", tiny_batch, out=out,
                               archs=OLD_STORE_ARCHS, **options)
    assert (summary.rows_written, summary.rows_skipped) == (4, 0)
    built.clear()
    options["init_draw"] = "per_array"
    summary = bulk.score_space("nb201", "params,naswot,synflow", tiny_batch, out=out,
                               archs=OLD_STORE_ARCHS, **options)
    assert (summary.rows_written, summary.rows_skipped, built) == (0, 12, [])
    summary = bulk.score_space("nb201", "naswot", tiny_batch, out=out, activation_bn="batch",
                               archs=OLD_STORE_ARCHS[:2], **options)
    assert (summary.rows_written, summary.rows_skipped, built) == (0, 2, [])
    # A changed option that params does not read leaves params resumable.
    summary = bulk.score_space("nb201", "params,synflow", tiny_batch, out=out,
                               synflow_reduction_bn=True, archs=OLD_STORE_ARCHS, **options)
    assert (summary.rows_written, summary.rows_skipped) == (4, 4)
    assert built == [("synflow",)]


def test_part_files_are_atomic(tmp_path, monkeypatch):
    rows = {name: [] for name in store.SCHEMA.names}

    def broken(table, sink):
        sink.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(store.pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        store.write_part(tmp_path, "part-x-000000.parquet", rows)
    assert list(tmp_path.iterdir()) == []


def test_readers_ignore_leftover_temporary_files(tmp_path, tiny_batch, monkeypatch):
    monkeypatch.setattr(api, "make_scorer", lambda space, proxies, **o: _StubScorer(proxies))
    bulk.score_space("nb201", "snip,synflow", tiny_batch, out=tmp_path, archs=ARCHS, key=0,
                     dataset="d", chunk=2, config=TINY, progress=False)
    # What a run killed while writing leaves behind.
    (tmp_path / ".part-20260101-000000-deadbeef-000009.parquet.0123abcd.tmp").write_bytes(b"PAR1")
    expected = store.read_results(tmp_path)
    assert len(expected) == 14
    by_pandas = pd.read_parquet(tmp_path)
    pd.testing.assert_frame_equal(
        by_pandas.sort_values(["arch", "proxy"]).reset_index(drop=True),
        expected.sort_values(["arch", "proxy"]).reset_index(drop=True), check_dtype=False)
    duckdb = pytest.importorskip("duckdb")
    count, infinite = duckdb.sql(
        f"select count(*), sum(isinf(value)::int) from read_parquet('{tmp_path}/*.parquet')"
    ).fetchall()[0]
    assert (count, infinite) == (14, 7)


@pytest.mark.parametrize("change,error,message", [
    ({"space": "nb202"}, ValueError, "unknown search space"),
    ({"proxies": "snipp"}, KeyError, "unknown proxy"),
    ({"chunk": 0}, ValueError, "chunk must be a positive int"),
    ({"workers": 1.5}, ValueError, "workers must be a positive int"),
    ({"archs": []}, ValueError, "archs is empty"),
    ({"archs": ARCHS[0]}, ValueError, "not one string"),
    ({"archs": [ARCHS[0], "|bad~0|+|none~0|none~1|+|none~0|none~1|none~2|"]}, ValueError,
     r"archs\[1\]: .*unknown op 'bad'"),
    ({"archs": [np.array([0, 1, 2, 9, 1, 1])]}, ValueError, "op indices"),
    ({"key": jax.random.key(1)}, ValueError, "give seed="),
    ({"key": 1, "seed": 2}, ValueError, "disagree"),
    ({"key": "0"}, ValueError, "key must be an int seed"),
    ({"dataset": ""}, ValueError, "dataset must be"),
    ({"batch_id": 3}, ValueError, "batch_id must be"),
    ({"per_layer": True}, ValueError, "per_layer"),
    ({"ssnr_mode": "log"}, TypeError, "read by none of the requested proxies"),
    ({"image_size": 32}, ValueError, "images must be 32x32"),
])
def test_bad_inputs_fail_before_any_work(tmp_path, tiny_batch, monkeypatch, change, error,
                                         message):
    monkeypatch.setattr(api, "make_scorer", lambda *a, **k: pytest.fail("scorer built"))
    arguments = {"space": "nb201", "proxies": "snip", "batch": tiny_batch, "key": 0,
                 "out": tmp_path / "store", "dataset": "d", "archs": ARCHS[:2], "config": TINY,
                 "progress": False, **change}
    with pytest.raises(error, match=message):
        bulk.score_space(**arguments)
    assert not (tmp_path / "store").exists()


def test_store_must_be_a_directory_of_zcjax_parts(tmp_path, tiny_batch):
    (tmp_path / "file").write_text("x")
    options = {"key": 0, "dataset": "d", "archs": ARCHS[:1], "config": TINY, "progress": False}
    with pytest.raises(ValueError, match="is a file"):
        bulk.score_space("nb201", "snip", tiny_batch, out=tmp_path / "file", **options)
    pd.DataFrame({"arch": ["a"], "score": [1.0]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="not a zcjax results part: column 'space'"):
        bulk.score_space("nb201", "snip", tiny_batch, out=tmp_path, **options)
    with pytest.raises(ValueError, match="no results store"):
        store.read_results(tmp_path / "missing")


def test_workers_match_in_process(tmp_path, tiny_batch, scored, compilation_cache):
    archs = list(ARCHS[:4])
    run(tmp_path / "one", tiny_batch, archs)
    summary = run(tmp_path / "two", tiny_batch, archs, chunk=2, workers=2,
                  cache_dir=compilation_cache)
    assert summary.rows_written == 8 and len(summary.parts) == 2
    one = store.read_results(tmp_path / "one").sort_values(["arch", "proxy"])
    two = store.read_results(tmp_path / "two").sort_values(["arch", "proxy"])
    np.testing.assert_array_equal(two.value, one.value)


def test_cli_score_space_samples_writes_and_resumes(tmp_path, capsys):
    argv = ["score-space", "nb201", "--proxies", "params,flops", "--data", "cifar10", "--n", "3",
            "--seed", "1", "--batch-size", "4", "--chunk", "2", "--out", str(tmp_path),
            "--no-progress"]
    assert cli.main(argv) == 0
    assert "6 rows written (0 non-finite)" in capsys.readouterr().out
    frame = store.read_results(tmp_path)
    assert frame.arch.nunique() == 3 and len(frame) == 6 and len(store.part_files(tmp_path)) == 2
    assert (frame.dataset == "cifar10").all() and (frame.seed == 1).all()
    params = frame[frame.proxy == "params"].set_index("arch").value
    for arch in params.index:  # params is in millions, computed in float32
        assert params[arch] == pytest.approx(nb201.param_count(arch) / 1e6, rel=1e-6)
    assert cli.main(argv) == 0
    assert "0 rows written (0 non-finite) for 0 of 3 architectures, 6 skipped" in (
        capsys.readouterr().out)
    assert len(store.part_files(tmp_path)) == 2


@pytest.mark.parametrize("argv,message", [
    (["nb202"], "unknown search space 'nb202'"),
    (["nb201", "--proxies", "snipp"], "unknown proxy 'snipp'"),
    (["nb201", "--n", "15626"], "--n must be in 1..15625"),
])
def test_cli_score_space_errors(tmp_path, capsys, argv, message):
    assert cli.main(["score-space", *argv, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_score_space_rejects_unknown_dataset(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["score-space", "nb201", "--data", "cifar11", "--out", str(tmp_path)])
    assert "invalid choice: 'cifar11'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_score_space_full_network(tmp_path, capsys):
    argv = ["score-space", "nb201", "--proxies", "snip,naswot", "--n", "3", "--batch-size", "8",
            "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    frame = store.read_results(tmp_path)
    assert len(frame) == 6 and np.isfinite(frame.value).all()


def test_user_proxies_reach_worker_processes(tmp_path, tiny_batch, compilation_cache):
    from zcjax.proxies import gradient, registry

    # A user proxy in an importable module travels to spawned workers by reference.
    mine = registry.Proxy("snip_mine", gradient.snip, ("loss_gradients",), "snip, again")
    registry.register(mine)
    try:
        options = {"key": 0, "dataset": "d", "config": TINY, "progress": False,
                   "archs": ARCHS[:2], "chunk": 1, "cache_dir": compilation_cache}
        two = bulk.score_space("nb201", "snip_mine", tiny_batch, out=tmp_path / "two",
                               workers=2, **options)
        one = bulk.score_space("nb201", "snip", tiny_batch, out=tmp_path / "one", **options)
        assert two.rows_written == one.rows_written == 2
        values = [store.read_results(tmp_path / name).sort_values("arch").value.to_numpy()
                  for name in ("one", "two")]
        np.testing.assert_array_equal(*values)

        # One defined in __main__ (a notebook) cannot: refused before any work.
        def notebook_snip(inputs, passes):
            return gradient.snip(inputs, passes)

        notebook_snip.__module__ = "__main__"
        registry.register(registry.Proxy("snip_notebook", notebook_snip, ("loss_gradients",),
                                         "defined in a notebook"))
        with pytest.raises(ValueError, match="snip_notebook.*workers=1"):
            bulk.score_space("nb201", "snip_notebook", tiny_batch, out=tmp_path / "nb",
                             workers=2, **options)
        assert not (tmp_path / "nb").exists()
    finally:
        for name in ("snip_mine", "snip_notebook"):
            registry._REGISTRY.pop(name, None)
