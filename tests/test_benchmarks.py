"""Benchmark loaders: NB201 CSV, Suite-Zero JSON (NASLib encoding), NATS-Bench API, by name."""

import gzip
import itertools
import json
import math
import sys
import types

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

import zcjax
from zcjax import benchmarks
from zcjax.spaces import darts, nb101, nb201, tnb101_micro

CSV = ("nb201", "nb201_accuracies.csv.gz")
SUITE_ZERO = ("nb201", "naslib_zc_nasbench201_725.6639fd15.json.gz")
ROW0 = ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
        "skip_connect~2|")


@pytest.fixture(scope="module")
def nb201_csv():
    return benchmarks.load_nb201_csv(shared_file(*CSV))


@pytest.fixture(scope="module")
def suite_zero():
    return benchmarks.load_suite_zero(shared_file(*SUITE_ZERO))


# --- NASLib's NB201 encoding ---------------------------------------------------------------
def test_naslib_key_forms_worked_by_hand():
    # NASLib (1,2)=avg_pool, (1,3)=conv1x1, (1,4)=conv1x1, (2,3)=(2,4)=(3,4)=skip.
    for key in ("(4, 3, 3, 0, 0, 0)", "433000", (4, 3, 3, 0, 0, 0)):
        assert benchmarks.naslib_nb201_arch(key) == ROW0
    # Edge (1,4) is NASLib position 2 but arch-string position 3.
    assert benchmarks.naslib_nb201_arch("(1, 1, 2, 1, 1, 1)") == (
        "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")


def test_naslib_mapping_is_a_bijection_onto_valid_arch_strings():
    archs = {benchmarks.naslib_nb201_arch(ops) for ops in itertools.product(range(5), repeat=6)}
    assert len(archs) == nb201.NUM_ARCHS
    assert all(nb201.decode(nb201.encode(arch)) == arch for arch in archs)


@pytest.mark.parametrize("key", ["(0, 1, 2)", "(0, 1, 2, 3, 4, 5)", "4330001", "abc", "(a, b)",
                                 (0, 1, 2, 3, 4, -1)])
def test_naslib_bad_keys(key):
    with pytest.raises(ValueError, match="NASLib NB201"):
        benchmarks.naslib_nb201_arch(key)


def test_naslib_mapping_agrees_with_csv_on_every_row():
    raw = pd.read_csv(shared_file(*CSV), dtype={"naslib_op_indices": str})
    mapped = raw["naslib_op_indices"].map(benchmarks.naslib_nb201_arch)
    assert len(raw) == 15625
    assert (mapped == raw["arch_str"]).all()


def test_suite_zero_725_archs_are_the_csv_archs_with_the_same_params(suite_zero):
    # The parameter count is independent of the encoding: a wrong edge permutation would pair
    # NASLib's count with another architecture's.
    raw = pd.read_csv(shared_file(*CSV)).set_index("arch_str")
    exact = pd.read_csv(shared_file("nb201", "params_mb_suspect_rows.csv")).set_index("arch_str")
    params_mb = raw["params_mb"].copy()
    params_mb[exact.index] = exact["params_m_exact_by_reference_model"]
    naslib = suite_zero.scores.query("dataset == 'cifar10' and proxy == 'params'")
    assert len(naslib) == 725
    assert naslib["arch"].isin(raw.index).all()
    np.testing.assert_allclose(naslib["value"], params_mb[naslib["arch"]], rtol=0, atol=1e-6)


# --- NB201 CSV -----------------------------------------------------------------------------
def test_nb201_csv_columns_and_values(nb201_csv):
    assert nb201_csv.datasets == ("cifar10", "cifar100", "imagenet16-120", "cifar10-nb201v1",
                                  "cifar10-valid", "cifar10-valid-test")
    assert nb201_csv.accuracies.shape == (15625, 6)
    assert nb201_csv.accuracies.index.name == "arch"
    # Row 0 of the file, read by eye.
    assert nb201_csv.accuracies.loc[ROW0].tolist() == [85.8633, 52.9133, 26.6333, 85.8633,
                                                        81.9827, 81.52]
    assert nb201_csv.info.loc[ROW0, "arch_index"] == 0
    assert nb201_csv.info.loc[ROW0, "naslib_op_indices"] == "433000"
    assert nb201_csv.info["naswot_v1_score"].isna().sum() == 341
    assert set(nb201_csv.descriptions) == set(nb201_csv.datasets)


def test_dataset_lookup(nb201_csv):
    assert nb201_csv.column("ImageNet16-120") == "imagenet16-120"
    accuracy = nb201_csv.accuracy("cifar100")
    assert accuracy.name == "cifar100" and len(accuracy) == 15625
    assert accuracy[ROW0] == 52.9133
    with pytest.raises(KeyError, match="valid datasets: cifar10, cifar100, imagenet16-120"):
        nb201_csv.accuracy("cifar1000")


def test_csv_without_required_columns(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"arch_str": [ROW0], "cifar10_test_nats": [90.0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="missing column.*cifar100_test_nats"):
        benchmarks.load_nb201_csv(path)


# --- Suite-Zero JSON -------------------------------------------------------------------------
def test_suite_zero_nb201(suite_zero):
    assert suite_zero.datasets == ("cifar10", "cifar100", "imagenet16-120")
    assert suite_zero.accuracies.notna().sum().tolist() == [725, 725, 724]
    assert len(suite_zero.accuracy("imagenet16-120")) == 724
    scores = suite_zero.scores
    assert list(scores.columns) == ["arch", "dataset", "proxy", "value", "seconds"]
    counts = scores.groupby(["dataset", "proxy"]).size()
    assert counts["cifar10", "synflow"] == 724  # one record in the file lacks synflow
    assert counts["cifar100", "synflow"] == 725 and counts["imagenet16-120", "snip"] == 724
    assert set(scores["proxy"]) == {"flops", "params", "synflow", "grasp", "fisher", "grad_norm",
                                    "l2_norm", "plain", "nwot", "epe_nas", "jacov", "snip"}
    # The file's one -inf nwot per dataset is kept, not replaced.
    nwot = scores[scores["proxy"] == "nwot"]
    assert (nwot.groupby("dataset")["value"].apply(lambda v: np.isneginf(v).sum()) == 1).all()
    # First record of the file: cifar10 key (0, 2, 3, 2, 3, 1).
    arch = benchmarks.naslib_nb201_arch("(0, 2, 3, 2, 3, 1)")
    assert suite_zero.accuracies.loc[arch, "cifar10"] == 86.06
    snip = scores.query("dataset == 'cifar10' and proxy == 'snip' and arch == @arch")
    assert snip["value"].item() == 46.002235412597656


def _write_json(path, data):
    with gzip.open(path, "wt") as file:
        json.dump(data, file)


def test_suite_zero_is_space_agnostic(tmp_path):
    path = tmp_path / "zc_toy.json.gz"
    _write_json(path, {"TaskA": {"k1": {"val_accuracy": 0.5, "snip": {"score": 1.0, "time": 2.0},
                                        "idx": "7"},
                                 "k2": {"val_accuracy": 0.7, "snip": {"score": None, "time": 1}}}})
    loaded = benchmarks.load_suite_zero(path, lambda key: f"arch-{key}", name="toy")
    assert loaded.name == "toy"
    assert loaded.accuracy("taska").to_dict() == {"arch-k1": 0.5, "arch-k2": 0.7}
    assert loaded.scores["arch"].tolist() == ["arch-k1", "arch-k2"]
    assert loaded.scores["value"].iloc[0] == 1.0 and math.isnan(loaded.scores["value"].iloc[1])

    with pytest.raises(ValueError, match="two keys for arch"):
        benchmarks.load_suite_zero(path, lambda key: "same")


# --- by name or path -----------------------------------------------------------------------
def test_load_benchmark_by_name(monkeypatch):
    path = shared_file(*CSV)
    monkeypatch.delenv("ZCJAX_NB201_CSV", raising=False)
    monkeypatch.delenv("ZCJAX_BENCHMARK_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="ZCJAX_NB201_CSV"):
        benchmarks.load_benchmark("nb201")
    monkeypatch.setenv("ZCJAX_BENCHMARK_DIR", str(path.parents[1]))  # the shared data folder
    assert benchmarks.load_benchmark("nb201").accuracies.shape == (15625, 6)
    assert len(benchmarks.load_benchmark("nb201-suite-zero").accuracies) == 725
    monkeypatch.setenv("ZCJAX_NB201_CSV", str(path.parent / "no_such.csv"))
    with pytest.raises(FileNotFoundError, match="no_such.csv"):
        benchmarks.load_benchmark("nb201")


def test_load_benchmark_by_path(tmp_path):
    assert benchmarks.load_benchmark(shared_file(*CSV)).name == "nb201"
    assert benchmarks.load_benchmark(str(shared_file(*SUITE_ZERO))).datasets == (
        "cifar10", "cifar100", "imagenet16-120")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        benchmarks.load_benchmark(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="unknown benchmark 'nb2001'.*nb201, nb201-suite-zero"):
        benchmarks.load_benchmark("nb2001")
    toy = tmp_path / "zc_other.json"
    toy.write_text("{}")
    with pytest.raises(ValueError, match="search space"):
        benchmarks.load_benchmark(toy)
    other = tmp_path / "table.parquet"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match="unknown benchmark format"):
        benchmarks.load_benchmark(other)


# --- NATS-Bench API --------------------------------------------------------------------------
def test_nats_bench_missing_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install nats_bench"):
        benchmarks.load_nats_bench(tmp_path)


def test_nats_bench_api_calls(monkeypatch, tmp_path):
    calls = []

    class FakeAPI:
        def __len__(self):
            return 2

        def arch(self, index):
            return [ROW0, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"][index]

        def get_more_info(self, index, dataset, iepoch=None, hp="12", is_random=True):
            calls.append((index, dataset, hp, is_random))
            return {"test-accuracy": 10.0 * index + len(dataset)}

    def create(path, search_space, fast_mode=False, verbose=True):
        assert (path, search_space, fast_mode, verbose) == (str(tmp_path), "tss", True, False)
        return FakeAPI()

    monkeypatch.setitem(sys.modules, "nats_bench", types.SimpleNamespace(create=create))
    loaded = benchmarks.load_nats_bench(tmp_path, datasets=("cifar10", "ImageNet16-120"))
    assert loaded.datasets == ("cifar10", "imagenet16-120")
    assert loaded.accuracies["imagenet16-120"].tolist() == [14.0, 24.0]
    assert loaded.accuracies.index[0] == ROW0
    # Mean over seeds (is_random=False), the 200-epoch schedule.
    assert {(hp, is_random) for _, _, hp, is_random in calls} == {("200", False)}


# --- Suite-Zero files of the other spaces ------------------------------------------------------
NB101_FILE = ("nb101", "naslib_zc_nasbench101_500.22280f71.json.gz")
NB301_FILES = (("nb301", "naslib_zc_nasbench301_725.6639fd15.json.gz"),
               ("nb301", "naslib_zc_nasbench301_500.22280f71.json.gz"))
TNB_MICRO_FILE = ("tnb101", "naslib_zc_transbench101_micro.e5a821c2.json.gz")
# (space, file, datasets, archs per dataset); the older files hold one outer {space: ...} level.
SUITE_ZERO_FILES = [
    ("nb101", NB101_FILE, ("cifar10",), 500),
    ("darts", NB301_FILES[0], ("cifar10",), 725),
    ("darts", NB301_FILES[1], ("cifar10",), 500),
    ("tnb101_micro", TNB_MICRO_FILE, ("class_scene", "class_object", "autoencoder", "normal",
                                      "jigsaw", "room_layout", "segmentsemantic"), 711),
]


def _raw_records(parts):
    """{dataset: {key: record}} read straight from the file, outer space level removed."""
    with gzip.open(shared_file(*parts), "rt") as file:
        data = json.load(file)
    (outer,) = [key for key in ("nasbench101", "nasbench301") if key in data] or [None]
    return data[outer] if outer else data


def _naslib_key(space, arch):
    """Our arch string back to NASLib's key, through the space's to_naslib (not the mapper)."""
    space = zcjax.get_space(space)
    return space.to_naslib(space.check_arch(arch))


@pytest.mark.parametrize("space,parts,datasets,count", SUITE_ZERO_FILES,
                         ids=["nb101", "nb301-725", "nb301-500", "tnb101-micro"])
def test_every_suite_zero_key_maps_and_round_trips(space, parts, datasets, count):
    module = zcjax.get_space(space)
    mapper = benchmarks.SUITE_ZERO_ARCH_KEYS[space]
    raw = _raw_records(parts)
    assert tuple(raw) == datasets
    for records in raw.values():
        archs = [mapper(key) for key in records]
        assert len(set(archs)) == len(records) == count  # distinct keys -> distinct archs
        for key, arch in zip(records, archs):
            assert module.decode(module.encode(arch)) == arch  # canonical
            assert _naslib_key(space, arch) == key  # and back to the very key
    loaded = benchmarks.load_benchmark(shared_file(*parts))  # space from the file name
    assert loaded.datasets == tuple(d.lower() for d in datasets)
    assert loaded.accuracies.notna().sum().tolist() == [count] * len(datasets)
    first_key, first = next(iter(raw[datasets[0]].items()))
    assert loaded.accuracies.loc[mapper(first_key), datasets[0]] == first["val_accuracy"]


def _params(loaded, dataset):
    rows = loaded.scores.query("dataset == @dataset and proxy == 'params'")
    return dict(zip(rows["arch"], rows["value"]))


def test_nb101_params_equal_param_count_for_all_500():
    params = _params(benchmarks.load_benchmark(shared_file(*NB101_FILE)), "cifar10")
    assert len(params) == 500
    for arch, millions in params.items():
        assert nb101.param_count(arch) == round(millions * 1e6), arch


@pytest.mark.parametrize("parts", NB301_FILES, ids=["725", "500"])
def test_nb301_params_equal_naslib_zero_cost_param_count(parts):
    loaded = benchmarks.load_benchmark(shared_file(*parts))
    params = _params(loaded, "cifar10")
    assert len(params) == len(loaded.accuracies)
    for arch, millions in params.items():
        assert darts.param_count(arch, darts.NASLIB_ZERO_COST) == round(millions * 1e6), arch
    # DARTS' own evaluation graph (affine BatchNorms in the ops) differs: the config matters.
    arch = next(iter(params))
    assert darts.param_count(arch) != round(params[arch] * 1e6)


@pytest.mark.parametrize("task", ["class_scene", "class_object"])
def test_tnb101_micro_params_equal_param_count_for_all_711(task):
    params = _params(benchmarks.load_benchmark(shared_file(*TNB_MICRO_FILE)), task)
    config = tnb101_micro.Config(num_classes=tnb101_micro.TASK_CLASSES[task])
    assert len(params) == 711
    for arch, millions in params.items():
        assert tnb101_micro.param_count(arch, config) == round(millions * 1e6), arch


def test_older_suite_zero_layout_bare_numbers(tmp_path):
    path = tmp_path / "zc_nasbench101.json.gz"
    key = nb101.decode(nb101.from_spec([[0, 1, 0], [0, 0, 1], [0, 0, 0]],
                                       ["input", "conv3x3-bn-relu", "output"]))
    _write_json(path, {"nasbench101": {"cifar10": {key: {
        "val_accuracy": 90.5, "snip": 3.0, "params": None, "idx": 7, "flag": True,
        "fisher": {"score": 2.0, "time": 0.5}}}}})
    loaded = benchmarks.load_benchmark(path)
    arch = nb101.decode(nb101.encode(key))
    assert loaded.accuracies.loc[arch, "cifar10"] == 90.5
    scores = loaded.scores.set_index("proxy")
    assert sorted(scores.index) == ["fisher", "params", "snip"]  # idx and booleans are no scores
    assert scores.loc["snip", "value"] == 3.0 and math.isnan(scores.loc["snip", "seconds"])
    assert math.isnan(scores.loc["params", "value"])
    assert tuple(scores.loc["fisher", ["value", "seconds"]]) == (2.0, 0.5)


def test_suite_zero_key_of_another_space_is_named(tmp_path):
    path = tmp_path / "zc_nasbench101.json"
    _write_json(path, {"cifar10": {"(1, 0, 0, 2, 1, 0)": {"val_accuracy": 1.0}}})
    path.write_bytes(gzip.decompress(path.read_bytes()))
    with pytest.raises(ValueError, match=r"cifar10 key '\(1, 0, 0, 2, 1, 0\)' is not an arch"):
        benchmarks.load_benchmark(path)
    # The same key is a TNB101-micro cell.
    assert len(benchmarks.load_benchmark(path, space="tnb101_micro").accuracies) == 1


@pytest.mark.parametrize("data", [{"cifar10": {"k": 1.0}}, {"cifar10": {}}, {}, [],
                                  {"nasbench101": {"cifar10": {"k": 2}}}])
def test_suite_zero_bad_layout(tmp_path, data):
    path = tmp_path / "zc_nasbench101.json.gz"
    _write_json(path, data)
    with pytest.raises(ValueError, match="not a Suite-Zero file"):
        benchmarks.load_benchmark(path)


@pytest.mark.parametrize("name,space", [
    ("zc_nasbench101.json", "nb101"), ("naslib_zc_nasbench201_725.6639fd15.json.gz", "nb201"),
    ("ZC_NASBENCH301.json", "darts"), ("zc_transbench101_micro.json", "tnb101_micro"),
    ("scores.json", None)])
def test_suite_zero_space_from_file_name(name, space):
    assert benchmarks.suite_zero_space(name) == space


def test_tnb101_macro_has_no_space():
    with pytest.raises(ValueError, match="no search space for NASLib's 'transbench101_macro'"):
        benchmarks.load_benchmark(
            shared_file("tnb101", "naslib_zc_transbench101_macro.e5a821c2.json.gz"))


def test_new_names_resolve_through_the_benchmark_dir(monkeypatch):
    folder = shared_file(*NB101_FILE).parents[1]
    for variable in ("ZCJAX_NB101_SUITE_ZERO", "ZCJAX_NB301_SUITE_ZERO",
                     "ZCJAX_TNB101_MICRO_SUITE_ZERO"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("ZCJAX_BENCHMARK_DIR", str(folder))
    assert len(benchmarks.load_benchmark("nb101-suite-zero").accuracies) == 500
    assert len(benchmarks.load_benchmark("nb301-suite-zero").accuracies) == 725  # not the 500
    assert benchmarks.load_benchmark("tnb101-micro-suite-zero").accuracies.shape == (711, 7)
    monkeypatch.setenv("ZCJAX_NB301_SUITE_ZERO", str(shared_file(*NB301_FILES[1])))
    assert len(benchmarks.load_benchmark("nb301-suite-zero").accuracies) == 500


def test_sample_archs():
    loaded = benchmarks.load_benchmark(shared_file(*NB101_FILE))
    everything = list(loaded.accuracies.index)
    assert benchmarks.sample_archs(loaded) == everything
    subset = benchmarks.sample_archs(loaded, 40, seed=3)
    assert subset == benchmarks.sample_archs(loaded, 40, seed=3)
    assert subset != benchmarks.sample_archs(loaded, 40, seed=4)
    positions = [everything.index(arch) for arch in subset]
    assert len(set(subset)) == 40 and positions == sorted(positions)  # the file's order
    assert benchmarks.sample_archs(loaded, np.int64(500)) == everything
    for n in (0, 501, 2.5):
        with pytest.raises(ValueError, match=r"n must be in 1\.\.500"):
            benchmarks.sample_archs(loaded, n)
