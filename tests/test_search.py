"""zcjax.search: query counting, reproducibility, warm-up and move, resume, bad input."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import zcjax
from conftest import TINY, shared_file, wait_for_a_part
from zcjax import benchmarks, bulk, cli, search, store
from zcjax.search import algorithms
from zcjax.spaces import nb201

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def table():
    return benchmarks.load_nb201_csv(shared_file("nb201", "nb201_accuracies.csv.gz"))


@pytest.fixture(scope="module")
def oracle(table):
    return search.make_oracle(table, "nb201", "cifar10-valid", report="cifar10-valid-test")


@pytest.fixture(scope="module")
def naswot_v1(table):
    """The NASWOT authors' own scores of every NB201 network: a free score source."""
    return search.TableScores(table.info["naswot_v1_score"].rename("naswot_v1"))


@pytest.fixture
def counted(monkeypatch):
    """Every lookup of a paid accuracy, as the oracle's table sees it."""
    lookups = []
    accuracy = search.Oracle.accuracy

    def spy(self, arch):
        lookups.append(arch)
        return accuracy(self, arch)

    monkeypatch.setattr(search.Oracle, "accuracy", spy)
    return lookups


class CountingScores:
    """A score source that records every architecture it is asked about."""

    def __init__(self, source):
        self.source, self.proxies, self.asked = source, source.proxies, []

    def __call__(self, archs):
        self.asked.extend(archs)
        return self.source(archs)


def test_the_oracle_is_the_table(table, oracle):
    assert len(oracle.archs) == 15625 and oracle.dataset == "cifar10-valid"
    arch = oracle.archs[123]
    assert oracle.accuracy(arch) == table.accuracies.loc[arch, "cifar10-valid"]
    assert oracle.reported(arch) == table.accuracies.loc[arch, "cifar10-valid-test"]
    assert oracle.optimum == table.accuracies["cifar10-valid-test"].max()
    assert search.make_oracle(table, "nb201", "cifar100").optimum == pytest.approx(73.5133)


@pytest.mark.parametrize("algorithm,kwargs", [
    ("random", {}),
    ("random", {"warmup": 300}),
    ("evolution", {}),
    ("evolution", {"warmup": 200, "move": 8}),
])
def test_the_query_counter_is_exact(oracle, naswot_v1, counted, algorithm, kwargs):
    run = search.random_search if algorithm == "random" else search.evolution
    scores = naswot_v1 if kwargs else None
    history = run("nb201", oracle, key=3, queries=40, scores=scores, **kwargs)
    # Every paid lookup is one query in the history, none repeated, the budget spent.
    assert counted == list(history.queried)
    assert history.queries == 40 == len(set(history.queried))
    assert history.accuracies == tuple(oracle.accuracy(a) for a in history.queried)
    assert history.pick == max(history.queried, key=oracle.accuracy)
    best = history.best_so_far()
    assert len(best) == 40 and best[-1] == history.pick_reported
    assert np.all(np.diff([max(history.accuracies[:q + 1]) for q in range(40)]) >= 0)


def test_training_free_search_queries_nothing(oracle, naswot_v1, counted):
    scores = CountingScores(naswot_v1)
    history = search.training_free("nb201", scores, key=0, n=100, top_k=5, oracle=oracle)
    assert counted == [] and history.queries == 0 and history.queried == ()
    assert len(scores.asked) == 100 == len(set(scores.asked)) == history.scored
    values = naswot_v1(scores.asked)[:, 0]
    assert history.pick == scores.asked[int(np.nanargmax(values))]
    assert history.top[0] == history.pick and len(history.top) == 5
    assert history.pick_reported == oracle.reported(history.pick)
    # Non-finite scores are counted and ranked last.
    assert history.non_finite == int(np.sum(~np.isfinite(values)))


def test_a_warm_up_is_free_and_starts_from_the_best_scored(oracle, naswot_v1, counted):
    scores = CountingScores(naswot_v1)
    history = search.random_search("nb201", oracle, key=5, queries=10, scores=scores,
                                   warmup=500)
    assert len(counted) == 10  # 500 scored, only the 10 queried are paid
    assert len(scores.asked) == 500 == history.scored
    values = pd.Series(naswot_v1(scores.asked)[:, 0], index=scores.asked)
    best_ten = list(values.fillna(-np.inf).sort_values(ascending=False, kind="stable").index[:10])
    assert set(history.queried) == set(best_ten)

    evolved = search.evolution("nb201", oracle, key=5, queries=10, population=10,
                               scores=CountingScores(naswot_v1), warmup=500)
    assert set(evolved.queried) == set(best_ten)  # the same pool (same key): its top 10


def test_a_move_proposal_queries_only_the_best_scored_child(oracle, naswot_v1, counted):
    scores = CountingScores(naswot_v1)
    history = search.evolution("nb201", oracle, key=1, queries=30, scores=scores, move=6)
    assert len(counted) == 30
    # Each of the 20 steps after the initial population scored up to 6 children.
    assert 20 < history.scored <= 20 * 6
    for child in history.queried[10:]:
        assert child in scores.asked


@pytest.mark.parametrize("run", [
    lambda o, s, key: search.training_free("nb201", s, key=key, n=200, oracle=o),
    lambda o, s, key: search.random_search("nb201", o, key=key, queries=25, scores=s, warmup=60),
    lambda o, s, key: search.evolution("nb201", o, key=key, queries=25, scores=s, warmup=40,
                                       move=4),
])
def test_a_seeded_search_is_reproducible_bit_for_bit(oracle, naswot_v1, run):
    first, again = run(oracle, naswot_v1, 11), run(oracle, naswot_v1, 11)
    assert first == again and first.to_json() == again.to_json()
    assert search.History.from_json(first.to_json()) == first
    assert run(oracle, naswot_v1, 12) != first
    assert run(oracle, naswot_v1, jax.random.key(11)) == run(oracle, naswot_v1,
                                                             jax.random.key(11))


def test_zero_cost_assistance_finds_better_networks_than_plain_evolution(oracle, naswot_v1):
    """Not a fixed number: the ordering the literature reports, on 30 seeds of real data."""
    plain = [search.evolution("nb201", oracle, key=s, queries=30).pick_reported
             for s in range(30)]
    assisted = [search.evolution("nb201", oracle, key=s, queries=30, scores=naswot_v1,
                                 warmup=500, move=10).pick_reported for s in range(30)]
    assert np.mean(assisted) > np.mean(plain)


def test_a_set_level_ranking_plugs_in(oracle, table):
    scores = search.TableScores(table.info[["naswot_v1_score", "params_mb"]])
    calls = []

    def most_parameters(values):  # ranks: the lowest wins
        calls.append(values.shape)
        return -values[:, 1]

    history = search.training_free("nb201", scores, key=0, n=50, oracle=oracle,
                                   combine=most_parameters)
    assert calls == [(50, 2)]
    picked = table.info.loc[history.pick, "params_mb"]
    assert picked == table.info.loc[list(history.top), "params_mb"].max()
    mean_rank = search.training_free("nb201", scores, key=0, n=50, oracle=oracle)
    assert mean_rank.settings["proxies"] == ["naswot_v1_score", "params_mb"]


def test_mutation_stays_inside_the_oracles_universe(table):
    """A benchmark that covers part of a space: children outside it are drawn again."""
    part = benchmarks.Benchmark("part", table.accuracies.iloc[::5])
    oracle = search.make_oracle(part, "nb201", "cifar10")
    history = search.evolution("nb201", oracle, key=0, queries=40)
    assert set(history.queried) <= set(oracle.archs)
    sparse = benchmarks.Benchmark("sparse", table.accuracies.iloc[::1500])
    with pytest.raises(ValueError, match="found no architecture that benchmark 'sparse'"):
        search.evolution("nb201", search.make_oracle(sparse, "nb201", "cifar10"), key=0,
                         queries=11, population=10)


def test_every_built_in_space_can_be_searched():
    for name in zcjax.space_names():
        assert zcjax.get_space(name).offers("mutate"), name


def test_bad_searches_are_one_clear_error_each(table, oracle, naswot_v1):
    with pytest.raises(ValueError, match="cannot fill the initial population of 10"):
        search.evolution("nb201", oracle, key=0, queries=5)
    with pytest.raises(ValueError, match="warm-up pool of 4 cannot supply"):
        search.evolution("nb201", oracle, key=0, queries=20, warmup=4, scores=naswot_v1)
    with pytest.raises(ValueError, match="needs zero-cost scores"):
        search.random_search("nb201", oracle, key=0, queries=5, warmup=10)
    with pytest.raises(ValueError, match="queries must be an int >= 1"):
        search.random_search("nb201", oracle, key=0, queries=0)
    with pytest.raises(ValueError, match="sample_size=11 exceeds population=10"):
        search.evolution("nb201", oracle, key=0, queries=20, sample_size=11)
    with pytest.raises(TypeError, match="key must be an int seed"):
        search.random_search("nb201", oracle, key="0", queries=5)
    with pytest.raises(ValueError, match="top_k=5 exceeds n=3"):
        search.training_free("nb201", naswot_v1, key=0, n=3, top_k=5)
    with pytest.raises(KeyError, match="no dataset 'cifar11'"):
        search.make_oracle(table, "nb201", "cifar11")
    with pytest.raises(ValueError, match="does not cover space 'tnb101_micro'"):
        search.make_oracle(table, "tnb101_micro", "cifar10")
    user = zcjax.SearchSpace(**{**vars(nb201.SPACE), "name": "nb201_fixed", "mutate": None})
    with pytest.raises(ValueError, match="does not offer mutate"):
        search.evolution(user, oracle, key=0, queries=20)


def test_histories_are_stored_per_seed_and_read_back(tmp_path, oracle):
    calls = []

    def run(seed):
        calls.append(seed)
        return search.random_search("nb201", oracle, key=seed, queries=5)

    first = search.run_seeds(run, range(3), folder=tmp_path / "h")
    assert calls == [0, 1, 2] and len(list((tmp_path / "h").glob("seed-*.json"))) == 3
    again = search.run_seeds(run, range(4), folder=tmp_path / "h")
    assert calls == [0, 1, 2, 3] and again[:3] == first
    assert not list((tmp_path / "h").glob(".*"))  # no temporary file left


# ------------------------------------------------------------ scores from the store
def stored_scorer(out, tiny_batch, **kwargs):
    return bulk.StoredScorer("nb201", ("naswot", "params"), tiny_batch, key=0, out=out,
                             dataset="imagenet16-120", config=TINY, chunk=4, **kwargs)


def test_the_stored_scorer_scores_each_architecture_once(tmp_path, tiny_batch):
    archs = nb201.arch_strings(nb201.sample(jax.random.key(0), 10))
    with stored_scorer(tmp_path, tiny_batch) as scorer:
        values = scorer(archs[:6])
        assert scorer.scored == 6
        np.testing.assert_array_equal(scorer(archs[:6]), values)
        assert scorer.scored == 6
        more = scorer(archs)
        assert scorer.scored == 10
    rows = store.read_results(tmp_path)
    assert len(rows) == 20 and not rows.duplicated(["arch", "proxy"]).any()
    reference = zcjax.score(archs[7], tiny_batch, proxies=("naswot", "params"),
                            key=jax.random.key(0), config=TINY)
    assert more[7, 0] == float(reference["naswot"])
    with stored_scorer(tmp_path, tiny_batch) as again:
        np.testing.assert_array_equal(again(archs), more)
        assert again.scored == 0  # all from the store: nothing compiled
    with pytest.raises(ValueError, match=r"archs\[1\]: malformed"):
        again([archs[0], "|nor_conv~0|"])


_KILLED_SEARCH = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import TINY
import zcjax
from zcjax import bulk, search, benchmarks

images, labels = zcjax.data.sample_batch("imagenet16-120", 8)
table = benchmarks.load_nb201_csv({table!r})
oracle = search.make_oracle(table, "nb201", "cifar10")
scorer = bulk.StoredScorer("nb201", ("naswot",), (images, labels % 10), key=0, out={out!r},
                           dataset="imagenet16-120", config=TINY, chunk=3,
                           cache_dir={cache!r})
slow = lambda archs: (time.sleep(0.3 * len(archs)), scorer(archs))[1]
slow.proxies = scorer.proxies
search.evolution("nb201", oracle, key=4, queries=14, scores=slow, warmup=12, move=3)
"""


def test_kill_9_then_resume_gives_the_same_history(tmp_path, tiny_batch, table,
                                                   module_compilation_cache):
    csv = str(shared_file("nb201", "nb201_accuracies.csv.gz"))
    cache = module_compilation_cache
    oracle = search.make_oracle(table, "nb201", "cifar10")

    def evolve(out):
        with bulk.StoredScorer("nb201", ("naswot",), tiny_batch, key=0, out=out,
                               dataset="imagenet16-120", config=TINY, chunk=3,
                               cache_dir=cache) as scorer:
            return search.evolution("nb201", oracle, key=4, queries=14, scores=scorer,
                                    warmup=12, move=3), scorer.scored

    clean, scored = evolve(tmp_path / "clean")  # also fills the compilation cache
    out = tmp_path / "killed"
    script = _KILLED_SEARCH.format(tests=str(TESTS), table=csv, out=str(out),
                                   cache=str(cache))
    log = tmp_path / "killed.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-c", script], stderr=stderr)
    wait_for_a_part(process, out, log)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    kept = store.read_results(out).arch.nunique()
    assert 0 < kept < scored

    resumed, rescored = evolve(out)
    assert resumed == clean
    assert rescored == scored - kept  # what the store had was not scored again
    assert not store.read_results(out).duplicated(["arch", "proxy"]).any()


# ---------------------------------------------------------------------------- CLI
def test_cli_search_prints_the_table_writes_the_curves_and_resumes(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("ZCJAX_NB201_CSV", str(shared_file("nb201", "nb201_accuracies.csv.gz")))
    argv = ["search", "nb201", "--algorithm", "random,evolution", "--queries", "20",
            "--seeds", "3", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "optimum 94.37" in printed and "q=10" in printed and "q=20" in printed
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    histories = sorted(tmp_path.glob("histories/*/*/seed-*.json"))
    assert len(histories) == 6
    stored = [json.loads(p.read_text()) for p in histories]
    assert all(len(h["queried"]) == 20 for h in stored)
    assert cli.main(argv) == 0  # resumed: the same table from the stored seeds
    assert capsys.readouterr().out == printed


@pytest.mark.parametrize("argv,message", [
    (["--algorithm", "bayesopt"], "unknown --algorithm bayesopt"),
    (["--proxy", "snipp"], "unknown proxy 'snipp'"),
    (["--queries", "5"], "--queries 5 cannot fill evolution's initial --population 10"),
    (["--warmup", "3"], "--warmup 3 is smaller than evolution's initial --population 10"),
    (["--algorithm", "random", "--move", "3"], "--move applies to evolution only"),
    (["--dataset", "cifar11"], "names no bundled images"),
    (["--dataset", "cifar100x", "--data", "cifar100"], "no dataset 'cifar100x'"),
])
def test_cli_search_errors_before_any_compilation(tmp_path, capsys, monkeypatch, argv,
                                                  message):
    monkeypatch.setenv("ZCJAX_NB201_CSV", str(shared_file("nb201", "nb201_accuracies.csv.gz")))
    monkeypatch.setattr(bulk, "ChunkScorer", None)  # a compilation would fail loudly
    code = cli.main(["search", "nb201", "--out", str(tmp_path), *argv])
    assert code == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not list(tmp_path.rglob("*.parquet"))


def test_non_finite_scores_rank_last_and_an_all_non_finite_pick_warns(oracle):
    archs = list(oracle.archs[:50])
    values = pd.Series(np.linspace(0, 1, 50), index=archs)
    values.iloc[::3] = np.resize([np.nan, np.inf, -np.inf], len(values.iloc[::3]))
    scores = search.TableScores(values.rename("p"))
    small = search.make_oracle(benchmarks.Benchmark("fifty", oracle_table(oracle, archs)),
                               "nb201", "cifar10")
    history = search.training_free("nb201", scores, key=0, oracle=small, top_k=3)
    finite = values[np.isfinite(values)]
    assert history.pick == finite.idxmax()  # +inf is an overflow, not the best network
    assert history.non_finite == int((~np.isfinite(values)).sum())
    nothing = search.TableScores(pd.Series(np.nan, index=archs, name="p"))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        search.training_free("nb201", nothing, key=0, oracle=small)


def oracle_table(oracle, archs):
    return pd.DataFrame({"cifar10": [oracle.accuracy(a) for a in archs]},
                        index=pd.Index(archs, name="arch"))


def test_histories_of_other_scores_are_kept_apart():
    """The history folder of a score-using search names its scores' run identities: another
    batch, seed or init draw is another experiment, never a finished seed read back."""
    from zcjax.search import experiment

    def identities(**changes):
        fields = dict(space="nb201", dataset="cifar10", batch_id="cifar10-batch64-seed0",
                      seed=0, settings='{"config": {}, "init_draw": "one", "options": {}}')
        return {"naswot": store.RunIdentity(**{**fields, **changes})}

    tag = experiment.identity_tag(identities())
    assert tag == experiment.identity_tag(identities()) and len(tag) == 8
    others = [identities(batch_id="cifar10-batch16-seed0"), identities(seed=1),
              identities(settings='{"config": {}, "init_draw": "per_array", "options": {}}')]
    assert len({tag, *(experiment.identity_tag(other) for other in others)}) == 4
