"""`zcjax score-space SPACE --archs-from FILE` and `zcjax correlate` on NAS-Bench-Suite-Zero's
labelled subsets of NB101, NB301 (DARTS) and TransNAS-Bench-101 micro.

The fast tests use params and flops, which need no compiled network; the ones that run a
network (snip) are marked slow: NB101 and DARTS compile for minutes on a loaded CPU.
"""

import numpy as np
import pytest
from conftest import shared_file

from zcjax import benchmarks, cli, store
from zcjax.spaces import darts, tnb101_micro

NB101 = ("nb101", "naslib_zc_nasbench101_500.22280f71.json.gz")
NB301 = ("nb301", "naslib_zc_nasbench301_725.6639fd15.json.gz")
TNB_MICRO = ("tnb101", "naslib_zc_transbench101_micro.e5a821c2.json.gz")


def score_space(capsys, space, parts, out, *extra):
    argv = ["score-space", space, "--archs-from", str(shared_file(*parts)), "--out", str(out),
            "--batch-size", "2", "--no-progress", *extra]
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def correlate(capsys, results, parts, dataset):
    code = cli.main(["correlate", str(results), "--benchmark", str(shared_file(*parts)),
                     "--dataset", dataset, "--no-partial"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def by_proxy(frame, proxy):
    return frame[frame.proxy == proxy].set_index("arch").value


def test_nb101_subset_of_the_file_scored_counted_and_correlated(tmp_path, capsys):
    out = score_space(capsys, "nb101", NB101, tmp_path, "--n", "3", "--seed", "5",
                      "--proxies", "params,flops")
    assert "6 rows written (0 non-finite) for 3 of 3 architectures" in out
    frame = store.read_results(tmp_path)
    bench = benchmarks.load_benchmark(shared_file(*NB101))
    # Exactly the seeded subset of the file's architectures.
    assert set(frame.arch) == set(benchmarks.sample_archs(bench, 3, seed=5))
    assert set(frame.arch) <= set(bench.accuracies.index)
    assert (frame.dataset == "cifar10").all() and (frame.seed == 5).all()
    # The benchmark's own network: params and FLOPs (millions) are NASLib's.
    naslib = bench.scores.query("proxy in ('params', 'flops')").set_index(["proxy", "arch"])
    for proxy in ("params", "flops"):
        for arch, value in by_proxy(frame, proxy).items():
            assert value == pytest.approx(naslib.loc[(proxy, arch), "value"], rel=1e-6)
    table = correlate(capsys, tmp_path, NB101, "cifar10")
    assert "naslib_zc_nasbench101_500" in table
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert rows["params"][-4:] == ["3", "0", "0", "1"]  # n_archs, n_nonfinite, missing, seeds
    # Resumes: nothing left to do.
    again = score_space(capsys, "nb101", NB101, tmp_path, "--n", "3", "--seed", "5",
                        "--proxies", "params,flops")
    assert "0 rows written (0 non-finite) for 0 of 3 architectures, 6 skipped" in again


def test_darts_archs_from_the_nb301_file(tmp_path, capsys):
    score_space(capsys, "darts", NB301, tmp_path, "--n", "2", "--proxies", "params,flops")
    frame = store.read_results(tmp_path)
    bench = benchmarks.load_benchmark(shared_file(*NB301))
    assert set(frame.arch) == set(benchmarks.sample_archs(bench, 2, seed=0))
    for arch, value in by_proxy(frame, "params").items():  # DARTS' evaluation graph, 10 classes
        assert value == pytest.approx(darts.param_count(arch) / 1e6, rel=1e-6)
    assert "params" in correlate(capsys, tmp_path, NB301, "cifar10")


def test_tnb101_micro_head_and_resized_inputs(tmp_path, capsys):
    score_space(capsys, "tnb101_micro", TNB_MICRO, tmp_path, "--n", "3", "--num-classes", "63",
                "--image-size", "48", "--proxies", "params,flops")
    frame = store.read_results(tmp_path)
    assert frame.arch.nunique() == 3 and frame.batch_id.str.endswith("-resized48").all()
    # A 63-class head is class_scene's: the params are NASLib's class_scene params exactly.
    bench = benchmarks.load_benchmark(shared_file(*TNB_MICRO))
    naslib = bench.scores.query("proxy == 'params' and dataset == 'class_scene'")
    naslib = naslib.set_index("arch").value
    config = tnb101_micro.Config(num_classes=63, image_size=48)
    for arch, value in by_proxy(frame, "params").items():
        assert round(value * 1e6) == round(naslib[arch] * 1e6)
    for arch, value in by_proxy(frame, "flops").items():
        assert value == pytest.approx(tnb101_micro.flops(arch, config) / 1e6, rel=1e-6)
    table = correlate(capsys, tmp_path, TNB_MICRO, "class_scene")
    assert "class_scene" in table and "params" in table


def test_the_whole_file_without_n(tmp_path, capsys):
    out = score_space(capsys, "tnb101_micro", TNB_MICRO, tmp_path, "--proxies", "params",
                      "--chunk", "400")
    assert "711 rows written" in out and "2 part files" in out


FILES = {"NB101": NB101, "TNB_MICRO": TNB_MICRO}


@pytest.mark.parametrize("argv,message", [
    (["nb101", "--archs-from", "NB101", "--n", "501"], "--n: n must be in 1..500"),
    (["darts", "--archs-from", "NB101"], "not an architecture of this space"),
    (["tnb101_micro", "--archs-from", "TNB_MICRO", "--num-classes", "0"],
     "--num-classes must be >= 1"),
    (["tnb101_micro", "--archs-from", "TNB_MICRO", "--num-classes", "5"], "label"),
    (["nb101", "--archs-from", "missing.json"], "not found"),
])
def test_errors(tmp_path, capsys, argv, message):
    argv = [str(shared_file(*FILES[a])) if a in FILES else a for a in argv]
    assert cli.main(["score-space", *argv, "--proxies", "params", "--out",
                     str(tmp_path / "x"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_correlate_space_option(tmp_path, capsys):
    # A renamed Suite-Zero file: the space cannot come from its name.
    renamed = tmp_path / "scores.json.gz"
    renamed.write_bytes(shared_file(*TNB_MICRO).read_bytes())
    score_space(capsys, "tnb101_micro", TNB_MICRO, tmp_path / "run", "--n", "2",
                "--proxies", "params")
    assert cli.main(["correlate", str(tmp_path / "run"), "--benchmark", str(renamed),
                     "--dataset", "class_object"]) == 2
    assert "give the search space" in capsys.readouterr().err
    assert cli.main(["correlate", str(tmp_path / "run"), "--benchmark", str(renamed),
                     "--space", "tnb101_micro", "--dataset", "class_object"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("space,parts,extra", [
    ("nb101", NB101, ()),
    ("darts", NB301, ()),
    ("tnb101_micro", TNB_MICRO, ("--num-classes", "100")),
], ids=["nb101", "darts", "tnb101_micro"])
def test_full_networks_score_finite_snip(tmp_path, capsys, space, parts, extra):
    score_space(capsys, space, parts, tmp_path, "--n", "2", "--proxies", "snip,naswot", *extra)
    frame = store.read_results(tmp_path)
    assert len(frame) == 4 and np.isfinite(frame.value).all()
    # Two different architectures score differently.
    assert by_proxy(frame, "snip").nunique() == 2
