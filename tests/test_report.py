"""zcjax.correlate / partial_correlations / plots and the ``zcjax correlate`` command.

Expected values are computed here directly with scipy.stats and pandas on the synthetic
arrays, never through zcjax.metrics or zcjax.report.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from conftest import shared_file

import zcjax
from zcjax import benchmarks, cli, report, store

N_BENCH, N_SCORED, N_MISSING = 60, 50, 5


@pytest.fixture(scope="module")
def synthetic():
    """A benchmark of 60 archs and results for 50 of them plus 5 archs it does not have.

    ``good``: one seed, accuracy plus noise. ``flaky``: two seeds, with a NaN on one seed of
    a03, +inf on one seed of a07, -inf on both seeds of a11, so 3 of its means are non-finite.
    """
    rng = np.random.default_rng(0)
    archs = [f"a{i:02d}" for i in range(N_BENCH)]
    accuracy = pd.Series(rng.uniform(50, 95, N_BENCH), index=archs)
    bench = benchmarks.Benchmark("toy", pd.DataFrame({"cifar10": accuracy}).rename_axis("arch"))
    scored = archs[:N_SCORED] + [f"x{i}" for i in range(N_MISSING)]
    acc = accuracy.reindex(scored).fillna(70.0).to_numpy()
    good = acc + rng.normal(0, 8, len(scored))
    flaky = np.stack([acc + rng.normal(0, 15, len(scored)) for _ in range(2)], axis=1)
    flaky[3, 1], flaky[7, 0], flaky[11] = np.nan, np.inf, -np.inf
    rows = [(a, "good", 0, v) for a, v in zip(scored, good)]
    rows += [(a, "flaky", seed, flaky[i, seed]) for seed in (0, 1) for i, a in enumerate(scored)]
    results = pd.DataFrame(rows, columns=["arch", "proxy", "seed", "value"]).assign(
        space="toy", dataset="cifar10", seconds=0.1)
    expected_scores = {"good": good[:N_SCORED], "flaky": flaky.mean(axis=1)[:N_SCORED]}
    return results, bench, expected_scores, accuracy.to_numpy()[:N_SCORED]


def _top_overlap(score, acc, k):
    # Non-finite scores rank last (the documented convention); no ties in these data.
    score = pd.Series(np.where(np.isfinite(score), score, -np.inf))
    return len(set(score.nlargest(k).index) & set(pd.Series(acc).nlargest(k).index)) / k


def _ndcg(score, acc):
    # DCG = sum_i acc of the i-th by score / log2(i + 1), non-finite scores last; an
    # architecture in a tie of places lo..hi gets the mean discount of those places.
    key = -np.where(np.isfinite(score), score, -np.inf)
    first = scipy.stats.rankdata(key, method="min").astype(int)
    last = scipy.stats.rankdata(key, method="max").astype(int)
    discount = [np.mean(1 / np.log2(np.arange(lo, hi + 1) + 1)) for lo, hi in zip(first, last)]
    ideal = np.sort(acc)[::-1] @ (1 / np.log2(np.arange(2, len(acc) + 2)))
    return float(acc @ np.array(discount) / ideal)


def _top_mean(score, acc, k):
    return pd.Series(acc)[pd.Series(np.where(np.isfinite(score), score, -np.inf))
                          .nlargest(k).index].mean()


def test_correlate_matches_scipy(synthetic):
    results, bench, scores, acc = synthetic
    table = zcjax.correlate(results, bench, "cifar10")
    assert list(table.index) == ["good", "flaky"]
    assert list(table.columns) == ["kendall_tau", "spearman_rho", "top10pct", "top50", "ndcg",
                                   "top1_acc", "top10_mean_acc", "n_archs", "n_nonfinite",
                                   "n_missing", "n_seeds"]
    for proxy, score in scores.items():
        finite = np.isfinite(score)
        row = table.loc[proxy]
        assert row["kendall_tau"] == pytest.approx(
            scipy.stats.kendalltau(score[finite], acc[finite]).statistic, abs=1e-12)
        assert row["spearman_rho"] == pytest.approx(
            scipy.stats.spearmanr(score[finite], acc[finite]).statistic, abs=1e-12)
        assert row["top10pct"] == _top_overlap(score, acc, 5)  # 10% of 50
        assert row["top50"] == 1.0  # all 50 scored archs
        assert row["ndcg"] == pytest.approx(_ndcg(score, acc), abs=1e-12)
        assert row["top1_acc"] == _top_mean(score, acc, 1)
        assert row["top10_mean_acc"] == pytest.approx(_top_mean(score, acc, 10), abs=1e-12)
        assert row["n_archs"] == N_SCORED and row["n_missing"] == N_MISSING
    assert table.loc["good", "n_nonfinite"] == 0 and table.loc["flaky", "n_nonfinite"] == 3
    assert table.loc["good", "n_seeds"] == 1 and table.loc["flaky", "n_seeds"] == 2
    assert 0.3 < table.loc["good", "kendall_tau"] < 0.9  # the data are what they claim


def test_correlate_options(synthetic):
    results, bench, scores, acc = synthetic
    table = zcjax.correlate(results, bench, "CIFAR10", proxies=["flaky"], top_fraction=0.2,
                            top_k=7)
    assert list(table.index) == ["flaky"]
    assert table.loc["flaky", "top20pct"] == _top_overlap(scores["flaky"], acc, 10)
    assert table.loc["flaky", "top7"] == _top_overlap(scores["flaky"], acc, 7)
    assert math.isnan(zcjax.correlate(results, bench, "cifar10", top_k=51).loc["good", "top51"])


def _ascending_ranks(values):
    # AZ-NAS ranks ascending (best = N); non-finite scores lowest, tied among themselves.
    return scipy.stats.rankdata(np.where(np.isfinite(values), values, -np.inf))


def test_aggregates_are_rows_correlated_like_proxies(synthetic):
    results, bench, scores, acc = synthetic
    table = zcjax.correlate(results, bench, "cifar10", proxies=["good"], aggregates={
        "az": ("az_nas", ["good", "flaky"]), "te": ("rank_average", ("flaky", "good"))})
    assert list(table.index) == ["good", "az", "te"]
    # Computed over all 55 scored archs (both proxies score all), then joined with the
    # 50 accuracies.
    means = results.groupby(["proxy", "arch"])["value"].mean().unstack(0)
    flaky_means = results[results["proxy"] == "flaky"].groupby("arch")["value"].apply(
        lambda v: v.mean() if v.notna().all() else np.nan)
    good, flaky = means["good"].to_numpy(), flaky_means.reindex(means.index).to_numpy()
    az = np.log(_ascending_ranks(good) / 55) + np.log(_ascending_ranks(flaky) / 55)
    te = -(scipy.stats.rankdata(-np.where(np.isfinite(good), good, -np.inf))
           + scipy.stats.rankdata(-np.where(np.isfinite(flaky), flaky, -np.inf))) / 2
    known = means.index.isin(bench.accuracy("cifar10").index)
    accuracy = bench.accuracy("cifar10").reindex(means.index[known]).to_numpy()
    for row, expected in (("az", az), ("te", te)):
        assert table.loc[row, "kendall_tau"] == pytest.approx(
            scipy.stats.kendalltau(expected[known], accuracy).statistic, abs=1e-12)
        assert table.loc[row, "ndcg"] == pytest.approx(_ndcg(expected[known], accuracy))
        assert table.loc[row, ["n_archs", "n_nonfinite", "n_missing", "n_seeds"]].tolist() == [
            50, 0, 5, 1]
    assert table.loc["az", "kendall_tau"] > 0.3  # both components agree with the accuracy


def test_aggregate_errors_name_the_culprit(synthetic):
    results, bench, _, _ = synthetic
    with pytest.raises(ValueError, match="unknown aggregator 'az'; known: az_nas, vkdnw_agg, rank_average"):
        zcjax.correlate(results, bench, "cifar10", aggregates={"x": ("az", ["good"])})
    with pytest.raises(ValueError, match="needs proxy 'flops'.*hold: good, flaky"):
        zcjax.correlate(results, bench, "cifar10",
                        aggregates={"x": ("az_nas", ["good", "flops"])})
    with pytest.raises(ValueError, match="aggregate 'good' has the name of a proxy"):
        zcjax.correlate(results, bench, "cifar10", aggregates={"good": ("az_nas", ["flaky"])})
    with pytest.raises(ValueError, match="non-empty list of proxy names"):
        zcjax.correlate(results, bench, "cifar10", aggregates={"x": ("az_nas", "good")})
    with pytest.raises(ValueError, match=r"give \(aggregator, \[proxy, ...\]\)"):
        zcjax.correlate(results, bench, "cifar10", aggregates={"x": "az_nas"})


def test_partial_correlations_match_the_formula(synthetic):
    results, bench, scores, acc = synthetic
    pairs = report.partial_correlations(results, bench, "cifar10")
    assert pairs[["proxy_x", "proxy_y"]].values.tolist() == [["good", "flaky"]]
    x, y = scores["good"], scores["flaky"]
    keep = np.isfinite(x) & np.isfinite(y)
    tau = {name: scipy.stats.kendalltau(u[keep], v[keep]).statistic
           for name, (u, v) in {"xy": (x, y), "xz": (x, acc), "yz": (y, acc)}.items()}
    expected = (tau["xy"] - tau["xz"] * tau["yz"]) / math.sqrt(
        (1 - tau["xz"] ** 2) * (1 - tau["yz"] ** 2))
    row = pairs.iloc[0]
    assert row["partial_tau"] == pytest.approx(expected, abs=1e-12)
    assert row["n_archs"] == N_SCORED and row["n_nonfinite"] == 3


def test_results_from_parquet_parts(synthetic, tmp_path):
    results, bench, _, _ = synthetic
    shuffled = results.sample(frac=1, random_state=0)  # row order must not matter
    for part, start in enumerate(range(0, len(shuffled), 60)):
        shuffled.iloc[start:start + 60].to_parquet(tmp_path / f"part-{part}.parquet",
                                                   index=False)
    from_disk = zcjax.correlate(tmp_path, bench, "cifar10", proxies=["good", "flaky"])
    pd.testing.assert_frame_equal(from_disk, zcjax.correlate(results, bench, "cifar10"))


def test_results_on_several_datasets(synthetic):
    results, bench, _, _ = synthetic
    other = results.assign(dataset="cifar100", value=-results["value"])
    both = pd.concat([results, other])
    single = zcjax.correlate(results, bench, "cifar10")
    pd.testing.assert_frame_equal(zcjax.correlate(both, bench, "cifar10"), single)
    flipped = zcjax.correlate(both, bench, "cifar10", results_dataset="cifar100")
    assert flipped.loc["good", "kendall_tau"] == pytest.approx(-single.loc["good", "kendall_tau"])
    with pytest.raises(ValueError, match="none on 'imagenet16-120'"):
        zcjax.correlate(both, bench, "cifar10", results_dataset="imagenet16-120")


def test_bad_input(synthetic, tmp_path):
    results, bench, _, _ = synthetic
    with pytest.raises(KeyError, match="valid datasets: cifar10"):
        zcjax.correlate(results, bench, "cifar100")
    with pytest.raises(KeyError, match="'snip'.*the results hold: good, flaky"):
        zcjax.correlate(results, bench, "cifar10", proxies=["good", "snip"])
    with pytest.raises(ValueError, match="missing column.*value"):
        zcjax.correlate(results.drop(columns="value"), bench, "cifar10")
    with pytest.raises(ValueError, match="no results"):
        zcjax.correlate(results.iloc[:0], bench, "cifar10")
    with pytest.raises(FileNotFoundError, match="results not found"):
        zcjax.correlate(tmp_path / "nothing", bench, "cifar10")
    with pytest.raises(ValueError, match="top_fraction"):
        zcjax.correlate(results, bench, "cifar10", top_fraction=0)


def test_plots_written(synthetic, tmp_path):
    results, bench, _, _ = synthetic
    zcjax.correlate(results, bench, "cifar10", plot_dir=tmp_path / "plots")
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == ["flaky_cifar10.png", "good_cifar10.png"]
    for name in written:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# (Suite-Zero proxy, [cifar10, cifar100, ImageNet16-120] Spearman) from PAPER.md section 5.
PUBLISHED_SPEARMAN = {
    "nwot": (0.79, 0.81, 0.79),
    "jacov": (0.77, 0.73, 0.73),
    "synflow": (0.74, 0.76, 0.76),
    "snip": (0.61, 0.66, 0.61),
    "grasp": (0.54, 0.55, 0.51),
}


def test_suite_zero_scores_reproduce_published_spearman():
    bench = benchmarks.load_suite_zero(
        shared_file("nb201", "naslib_zc_nasbench201_725.6639fd15.json.gz"))
    for column, dataset in enumerate(("cifar10", "cifar100", "imagenet16-120")):
        table = zcjax.correlate(bench.scores, bench, dataset, proxies=list(PUBLISHED_SPEARMAN))
        for proxy, published in PUBLISHED_SPEARMAN.items():
            # Two decimals published; cifar100 jacov is 0.7248 here against 0.73.
            assert table.loc[proxy, "spearman_rho"] == pytest.approx(published[column], abs=0.006)


# --- the command -----------------------------------------------------------------------------
@pytest.fixture
def cli_results(tmp_path):
    """40 real NB201 archs: `close` = CIFAR-10 accuracy plus noise, `noisy` with one NaN."""
    raw = pd.read_csv(shared_file("nb201", "nb201_accuracies.csv.gz"), nrows=40)
    rng = np.random.default_rng(1)
    close = raw["cifar10_test_nats"].to_numpy() + rng.normal(0, 2, 40)
    noisy = rng.normal(0, 1, 40)
    noisy[5] = np.nan
    frame = pd.concat([
        pd.DataFrame({"arch": raw["arch_str"], "proxy": name, "value": values, "seed": 0,
                      "space": "nb201", "dataset": "cifar10", "seconds": 0.5})
        for name, values in (("close", close), ("noisy", noisy))
    ])
    folder = tmp_path / "run.parquet"
    folder.mkdir()
    frame.iloc[:50].to_parquet(folder / "part-0.parquet", index=False)
    frame.iloc[50:].to_parquet(folder / "part-1.parquet", index=False)
    return folder, raw, close


def test_cli_correlate(cli_results, tmp_path, capsys):
    folder, raw, close = cli_results
    csv = shared_file("nb201", "nb201_accuracies.csv.gz")
    plots = tmp_path / "plots"
    code = cli.main(["correlate", str(folder), "--benchmark", str(csv), "--dataset", "cifar10",
                     "--plot", str(plots)])
    out = capsys.readouterr().out
    assert code == 0
    tau = scipy.stats.kendalltau(close, raw["cifar10_test_nats"]).statistic
    close_row = next(line for line in out.splitlines() if line.startswith("close"))
    assert close_row.split()[1] == f"{tau:.4f}"
    assert "partial Kendall correlation" in out and "NATS-Bench" in out
    assert sorted(p.name for p in plots.iterdir()) == ["close_cifar10.png", "noisy_cifar10.png"]

    code = cli.main(["correlate", str(folder), "--benchmark", str(csv), "--proxies", "noisy",
                     "--dataset", "cifar10-valid"])
    out = capsys.readouterr().out
    assert code == 0 and "close" not in out and "partial" not in out


def test_cli_correlate_aggregate(cli_results, capsys):
    folder, raw, close = cli_results
    csv = str(shared_file("nb201", "nb201_accuracies.csv.gz"))
    code = cli.main(["correlate", str(folder), "--benchmark", csv, "--proxies", "close",
                     "--aggregate", "az_nas=close,noisy", "--aggregate",
                     "te:rank_average=noisy,close", "--no-partial"])
    out = capsys.readouterr().out
    assert code == 0
    header = out.splitlines()[1].split()
    assert header[:7] == ["kendall_tau", "spearman_rho", "top10pct", "top50", "ndcg",
                          "top1_acc", "top10_mean_acc"]
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}
    assert list(lines)[-3:] == ["close", "az_nas", "te"]
    noisy = pd.read_parquet(folder).query("proxy == 'noisy'")["value"].to_numpy()
    az = np.log(_ascending_ranks(close) / 40) + np.log(_ascending_ranks(noisy) / 40)
    tau = scipy.stats.kendalltau(az, raw["cifar10_test_nats"]).statistic
    assert lines["az_nas"][1] == f"{tau:.4f}"
    # rank_average's row is minus the mean rank: higher is better, like the others.
    assert float(lines["te"][1]) > 0 and float(lines["az_nas"][1]) > 0
    for spec, message in (("az_nas", "takes [ROW:]AGGREGATOR=PROXY"),
                          ("bogus=close", "unknown aggregator 'bogus'"),
                          ("az_nas=close,snip", "needs proxy 'snip'")):
        assert cli.main(["correlate", str(folder), "--benchmark", csv,
                         "--aggregate", spec]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["correlate", "--help"])
    assert "[ROW:]AGGREGATOR=PROXY,PROXY,..." in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar11"], "valid datasets: cifar10, cifar100, imagenet16-120"),
    (["--benchmark", "nb2001"], "unknown benchmark 'nb2001'"),
    (["--benchmark", "/no/such/file.csv"], "benchmark file not found"),
    (["--proxies", "snip"], "no results for proxy 'snip'"),
])
def test_cli_errors(cli_results, capsys, args, message):
    folder, _, _ = cli_results
    csv = str(shared_file("nb201", "nb201_accuracies.csv.gz"))
    if "--benchmark" not in args:
        args = ["--benchmark", csv, *args]
    assert cli.main(["correlate", str(folder), *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_results(tmp_path, capsys):
    csv = str(shared_file("nb201", "nb201_accuracies.csv.gz"))
    assert cli.main(["correlate", str(tmp_path / "none"), "--benchmark", csv]) == 2
    assert "results not found" in capsys.readouterr().err


# A store written by zcjax before proxies owned their options (main at ca60768,
# tests/data/README.md): naswot on 4 archs with activation_bn "init" and on 2 of them again
# with "batch", params and synflow on all 4; every row holds all six old options.
OLD_STORE = Path(__file__).parent / "data" / "store_before_issue12"


def _toy_benchmark(archs):
    accuracy = pd.Series(np.linspace(60, 90, len(archs)), index=list(archs))
    return benchmarks.Benchmark("toy", pd.DataFrame({"cifar10": accuracy}).rename_axis("arch"))


def test_two_identities_of_one_proxy_are_refused_not_averaged():
    frame = store.read_results(OLD_STORE)
    bench = _toy_benchmark(frame["arch"].unique())
    with pytest.raises(ValueError, match=r"proxy 'naswot' has scores of 2 run identities.*"
                       r"options\.activation_bn: 'batch', 'init'.*select=\{'activation_bn'"):
        zcjax.correlate(frame, bench, "cifar10")
    # Proxies with one identity are unaffected; picking one naswot identity works.
    table = zcjax.correlate(frame, bench, "cifar10", proxies=["params", "synflow"])
    assert list(table["n_archs"]) == [4, 4] and list(table["n_seeds"]) == [1, 1]
    init = zcjax.correlate(frame, bench, "cifar10", select={"activation_bn": "init"})
    batch = zcjax.correlate(frame, bench, "cifar10", select={"activation_bn": "batch"})
    assert init.loc["naswot", "n_archs"] == 4 and batch.loc["naswot", "n_archs"] == 2
    assert init.loc["params", "n_archs"] == batch.loc["params", "n_archs"] == 4
    naswot = frame[frame["proxy"] == "naswot"]
    expected = naswot[naswot["settings"].str.contains('"activation_bn": "batch"')]
    assert len(expected) == 2
    with pytest.raises(ValueError, match="no results match.*hold activation_bn = 'batch', 'init'"):
        zcjax.correlate(frame, bench, "cifar10", select={"activation_bn": "nonsense"})
    with pytest.raises(KeyError, match="no result's settings hold 'tenas_inputs'"):
        zcjax.correlate(frame, bench, "cifar10", select={"tenas_inputs": "batch"})


def test_seeds_of_one_identity_are_averaged_other_batches_refused(synthetic):
    results, bench, expected, acc = synthetic
    results = results.assign(batch_id="b0", settings="{}")
    table = zcjax.correlate(results, bench, "cifar10", proxies=["flaky"])
    assert table.loc["flaky", "n_seeds"] == 2
    other_batch = pd.concat([results, results.assign(batch_id="b1", seed=5)])
    with pytest.raises(ValueError, match=r"'good' has scores of 2 run identities.*batch_id: "
                       r"'b0', 'b1'"):
        zcjax.correlate(other_batch, bench, "cifar10")
    picked = zcjax.correlate(other_batch, bench, "cifar10", select={"batch_id": "b0"})
    pd.testing.assert_frame_equal(picked, zcjax.correlate(results, bench, "cifar10"))
    with pytest.raises(KeyError, match="no settings column"):
        zcjax.correlate(results.drop(columns="settings"), bench, "cifar10",
                        select={"activation_bn": "init"})


def test_old_store_settings_read_in_todays_form():
    frame = store.read_results(OLD_STORE)
    params = frame.loc[frame["proxy"] == "params", "settings"].unique()
    naswot = set(frame.loc[frame["proxy"] == "naswot", "settings"])
    synflow = frame.loc[frame["proxy"] == "synflow", "settings"].unique()
    assert len(params) == 1 and json.loads(params[0])["options"] == {}
    assert [json.loads(s)["options"] for s in synflow] == [{"synflow_reduction_bn": False}]
    assert sorted(json.loads(s)["options"]["activation_bn"] for s in naswot) == ["batch", "init"]
    raw = pd.read_parquet(OLD_STORE)
    assert all(len(json.loads(s)["options"]) == 6 for s in raw["settings"])  # as written


def test_cli_select(capsys):
    csv = shared_file("nb201", "nb201_accuracies.csv.gz")
    assert cli.main(["correlate", str(OLD_STORE), "--benchmark", str(csv)]) == 2
    assert "--select activation_bn=VALUE" in capsys.readouterr().err
    assert cli.main(["correlate", str(OLD_STORE), "--benchmark", str(csv),
                     "--select", "activation_bn=batch", "--no-partial"]) == 0
    out = capsys.readouterr().out
    assert "naswot" in out and "params" in out
    assert cli.main(["correlate", str(OLD_STORE), "--benchmark", str(csv),
                     "--select", "oops"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err
