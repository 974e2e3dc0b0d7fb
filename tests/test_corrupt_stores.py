"""Corrupted or foreign files in a results store: one clear error naming the file, or
(another run's rows) kept apart; never a pyarrow traceback, never silently mixed rows."""

import numpy as np
import pandas as pd
import pytest

import zcjax
from zcjax import benchmarks, cli, store

ARCHS = [f"a{i}" for i in range(8)]
SETTINGS = '{"config": {}, "options": {}}'


def rows(archs, *, space="toy", dataset="cifar10", proxy="params", values=None):
    values = np.arange(len(archs), dtype=float) if values is None else values
    return {"space": [space] * len(archs), "dataset": [dataset] * len(archs),
            "batch_id": ["b"] * len(archs), "seed": [0] * len(archs),
            "settings": [SETTINGS] * len(archs), "arch": list(archs),
            "genotype_index": [None] * len(archs), "proxy": [proxy] * len(archs),
            "value": np.asarray(values, float), "seconds": [0.1] * len(archs)}


@pytest.fixture
def good_store(tmp_path):
    out = tmp_path / "store"
    store.write_part(out, "part-a-000000.parquet", rows(ARCHS[:4]))
    store.write_part(out, "part-a-000001.parquet", rows(ARCHS[4:], values=np.arange(4, 8.0)))
    return out


@pytest.fixture
def bench():
    accuracy = pd.DataFrame({"cifar10": np.linspace(60, 90, len(ARCHS))},
                            index=pd.Index(ARCHS, name="arch"))
    return benchmarks.Benchmark("toy", accuracy)


def truncate(out):
    part = store.part_files(out)[1]
    part.write_bytes(part.read_bytes()[:100])
    return part


def not_parquet(out):
    part = out / "part-z-000000.parquet"
    part.write_text("these are not the results you are looking for")
    return part


def other_schema(out):
    part = out / "part-z-000001.parquet"
    pd.DataFrame({"arch": ["a1"], "score": [1.0]}).to_parquet(part)
    return part


RUNS = {"params": store.RunIdentity("toy", "cifar10", "b", 0, SETTINGS)}


def test_appending_a_written_part_again_reports_it_and_writes_nothing(tmp_path):
    # A retried task whose first attempt was killed after writing its part (Ray). The
    # settings name their init_draw, as every row zcjax writes does.
    def current(archs, **options):
        written = rows(archs, **options)
        written["settings"] = ['{"config": {}, "init_draw": "one", "options": {}}'] * len(archs)
        return written

    store.write_part(tmp_path, "part-a-000000.parquet", current(ARCHS[:4]))
    first = store.StoreWriter(tmp_path).append("part-a-000001.parquet", current(ARCHS[3:]))
    assert first == (tmp_path / "part-a-000001.parquet", [1, 2, 3, 4])
    written = (tmp_path / "part-a-000001.parquet").stat().st_mtime_ns
    again = store.StoreWriter(tmp_path).append("part-a-000001.parquet", current(ARCHS[3:]))
    assert again == first
    assert (tmp_path / "part-a-000001.parquet").stat().st_mtime_ns == written
    assert len(store.part_files(tmp_path)) == 2
    assert store.StoreWriter(tmp_path).append("part-b-000000.parquet",
                                              current(ARCHS[4:])) == (None, [])


def test_rows_given_in_an_older_settings_form_are_their_stored_twins(good_store):
    # good_store's rows are in the form before init_draw existed; read back, their
    # settings say "per_array". Appended again in either form, they are stored already.
    def drawn(archs, init_draw):
        written = rows(archs)
        written["settings"] = [f'{{"config": {{}}, "init_draw": "{init_draw}", '
                               f'"options": {{}}}}'] * len(archs)
        return written

    writer = store.StoreWriter(good_store)
    assert writer.append("part-b-000000.parquet", rows(ARCHS[:3])) == (None, [])
    assert writer.append("part-b-000001.parquet", drawn(ARCHS[2:5], "per_array")) == (None, [])
    # Weights drawn otherwise are another run: stored beside, not instead.
    path, kept = writer.append("part-b-000002.parquet", drawn(ARCHS[:2], "one"))
    assert path == good_store / "part-b-000002.parquet" and kept == [0, 1]
    assert len(store.read_results(good_store)) == len(ARCHS) + 2


@pytest.mark.parametrize("damage", [truncate, not_parquet, other_schema])
def test_a_damaged_part_stops_reading_with_its_name(good_store, bench, damage):
    part = damage(good_store)
    for read in (lambda: store.read_results(good_store),
                 lambda: store.stored_pairs(good_store, RUNS),  # what a resume reads
                 lambda: store.StoreWriter(good_store).append(
                     "part-b-000000.parquet", rows(["new"])),
                 lambda: zcjax.correlate(good_store, bench, "cifar10")):
        with pytest.raises(ValueError) as raised:
            read()
        assert str(part) in str(raised.value)
    assert not (good_store / "part-b-000000.parquet").exists()


@pytest.mark.parametrize("damage", [truncate, not_parquet, other_schema])
def test_the_cli_says_one_line_naming_the_damaged_file(good_store, bench, capsys,
                                                        monkeypatch, damage):
    part = damage(good_store)
    monkeypatch.setattr(benchmarks, "load_benchmark", lambda *a, **k: bench)
    assert cli.main(["correlate", str(good_store), "--benchmark", "toy"]) == 2
    error = capsys.readouterr().err
    assert str(part) in error and error.count("\n") == 1 and "Traceback" not in error


def test_rows_of_another_space_or_run_in_the_folder_are_kept_apart(good_store, bench):
    store.write_part(good_store, "part-c-000000.parquet",
                     rows(ARCHS, space="other", values=np.zeros(len(ARCHS))))
    store.write_part(good_store, "part-c-000001.parquet",
                     rows(ARCHS, dataset="cifar100", values=np.ones(len(ARCHS))))
    # A resume of the toy run sees only its own rows.
    assert store.stored_pairs(good_store, RUNS) == {(arch, "params") for arch in ARCHS}
    values = store.stored_values(good_store, RUNS).set_index("arch").value
    np.testing.assert_array_equal(values[ARCHS], np.arange(len(ARCHS)))
    # correlate refuses to average the two spaces' rows, naming what differs ...
    with pytest.raises(ValueError, match=r"2 run identities.*space: 'other', 'toy'"):
        zcjax.correlate(good_store, bench, "cifar10")
    # ... and scores one of them when asked to.
    table = zcjax.correlate(good_store, bench, "cifar10", select={"space": "toy"})
    assert table.loc["params", "n_archs"] == len(ARCHS)
    assert table.loc["params", "kendall_tau"] == pytest.approx(1.0)
