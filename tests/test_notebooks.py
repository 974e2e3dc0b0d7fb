"""The notebooks run end to end at small sizes, and are committed without outputs.

Each notebook is executed in a fresh Jupyter kernel (nbclient) with the CI sizes below and,
when the shared data folder is there, ``$ZCJAX_BENCHMARK_DIR`` pointing at it (so the
notebooks find the NB201 accuracy table); nothing is written back.
"""

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import zcjax
from conftest import SHARED_DATA
from zcjax import bulk
from zcjax.spaces import nb201

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("quickstart.ipynb", "paper_comparison.ipynb")
NB201_CSV = SHARED_DATA / "nb201" / "nb201_accuracies.csv.gz"
# Real NB201 networks, few architectures, a small batch: a few minutes on 2 CPU cores.
CI_SIZES = {"ZCJAX_NOTEBOOK_N": "12", "ZCJAX_NOTEBOOK_BATCH": "8"}
ENVIRONMENT = ("ZCJAX_NOTEBOOK_N", "ZCJAX_NOTEBOOK_BATCH", "ZCJAX_NOTEBOOK_PROXIES",
               "ZCJAX_RESULTS_DIR", "ZCJAX_BENCHMARK_DIR", "ZCJAX_NB201_CSV")
NO_TABLE = "No NB201 accuracy table"
PROBE = "ZCJAX-PROBE "
# The NB201 table's column of each dataset's test accuracy (../shared/data/README.md).
ACCURACY_COLUMN = {"cifar10": "cifar10_test_nats", "cifar100": "cifar100_test_nats",
                   "imagenet16-120": "imagenet16_120_test_nats"}


def probe_table(table: str, store: str) -> str:
    """A last cell printing the correlation table the expression ``table`` evaluates to, at
    full precision, and the results folder ``store`` names; :func:`probed` reads them."""
    return ("import json\n"
            f"print({PROBE!r} + json.dumps({{'store': str({store}), 'table': {{str(proxy): "
            f"{{k: float(v) for k, v in row.items()}} for proxy, row in ({table}).iterrows()}}}}))")


def probed(text: str) -> tuple[Path, dict]:
    """The results folder and the table {proxy: {column: value}} the probe cell printed."""
    lines = [line for line in text.splitlines() if line.startswith(PROBE)]
    assert len(lines) == 1, "the probe cell printed nothing"
    found = json.loads(lines[0][len(PROBE):])
    return Path(found["store"]), found["table"]


def correlations_from_the_store(store_dir: Path, dataset: str) -> dict:
    """Kendall tau-b and Spearman rho of every proxy in a store against the NB201 table's
    test accuracy, computed here from the part files and the CSV (seeds averaged,
    non-finite scores dropped as zcjax.report documents), not by zcjax."""
    rows = pd.concat(pd.read_parquet(part) for part in sorted(store_dir.glob("part-*.parquet")))
    rows = rows[(rows["space"] == "nb201") & (rows["dataset"] == dataset)]
    scores = rows.groupby(["proxy", "arch"])["value"].mean()
    accuracy = pd.read_csv(NB201_CSV).set_index("arch_str")[ACCURACY_COLUMN[dataset]]
    out = {}
    for proxy, score in scores.groupby(level="proxy"):
        score = score.droplevel("proxy")
        joined = pd.DataFrame({"score": score, "accuracy": accuracy.reindex(score.index)})
        joined = joined[np.isfinite(joined["score"]) & np.isfinite(joined["accuracy"])]
        out[proxy] = {"kendall_tau": stats.kendalltau(joined["score"], joined["accuracy"])[0],
                      "spearman_rho": stats.spearmanr(joined["score"], joined["accuracy"])[0],
                      "n_archs": len(joined)}
    return out


def assert_same_correlations(table: dict, expected: dict, proxies) -> None:
    for proxy in proxies:
        for column in ("kendall_tau", "spearman_rho"):
            assert table[proxy][column] == pytest.approx(expected[proxy][column], abs=1e-12, nan_ok=True), (
                proxy, column)


def _environment(monkeypatch, tmp_path, *, benchmark: bool, **variables: str) -> None:
    """The kernel's environment: only the variables given (and the table if wanted)."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    if benchmark:
        monkeypatch.setenv("ZCJAX_BENCHMARK_DIR", str(SHARED_DATA))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary folders


def _execute(name: str, tmp_path: Path, probe: str | None = None):
    """Run a notebook in a fresh kernel, then the ``probe`` cell if given; returns (text of
    all outputs, their MIME types)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    if probe is not None:
        notebook.cells.append(nbformat.v4.new_code_cell(probe))
    # A kernel of another Python would test another installation; say so plainly.
    notebook.cells.insert(0, nbformat.v4.new_code_cell(
        f"import sys\nassert sys.prefix == {sys.prefix!r}, "
        f"f'the python3 kernel runs {{sys.executable}}, not {sys.executable}'"))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", ())]
    text = "\n".join(output.get("text", "") + output.get("data", {}).get("text/plain", "")
                     for output in outputs)
    return text, {kind for output in outputs for kind in output.get("data", {})}


# Every notebook of the folder, not only those executed below.
@pytest.mark.parametrize("name", sorted({*NAMES, *(p.name for p in NOTEBOOKS.glob("*.ipynb"))}))
def test_committed_notebook_has_no_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    for number, cell in enumerate(code):
        assert cell.outputs == [], f"{name}: code cell {number} has outputs; clear them"
        assert cell.execution_count is None, f"{name}: code cell {number} has a count"


@pytest.mark.parametrize("name, words, kinds, table, store", [
    ("quickstart.ipynb", ("kendall_tau", "tcet_snip"), {"image/png"}, "table", "results_dir"),
    ("paper_comparison.ipynb", ("difference", "synflow_snr", "tcet_synflow", "grasp"),
     {"image/png"}, "comparison", "out / 'results'"),
])
def test_notebook_runs_at_ci_size(name, words, kinds, table, store, monkeypatch, tmp_path):
    benchmark = NB201_CSV.exists()
    _environment(monkeypatch, tmp_path, benchmark=benchmark, **CI_SIZES)
    text, produced = _execute(name, tmp_path, probe_table(table, store) if benchmark else None)
    if not benchmark:
        assert NO_TABLE in text
        return
    assert NO_TABLE not in text
    for word in words:
        assert word in text, f"{name}: no {word!r} in the outputs"
    assert kinds <= produced, f"{name}: no plot"
    # The table the notebook shows is the correlation of the scores it stored.
    store_dir, shown = probed(text)
    expected = correlations_from_the_store(store_dir, "cifar10")
    assert set(shown) == set(expected)
    assert_same_correlations(shown, expected, expected)
    assert {proxy: row["n_archs"] - row["n_nonfinite"] for proxy, row in shown.items()} == {
        proxy: row["n_archs"] for proxy, row in expected.items()}


def test_paper_comparison_correlates_a_given_store(monkeypatch, tmp_path):
    # A store as score_space writes it (a narrow network: only the reading is under test).
    config = nb201.Config(channels=(2, 4, 8), cells_per_stage=1)
    out = tmp_path / "store"
    bulk.score_space("nb201", ("snip", "params"), zcjax.data.sample_batch("cifar10", 8), key=0,
                     out=out, dataset="cifar10", archs=nb201.sample(jax.random.key(3), 12),
                     config=config, progress=False)
    benchmark = NB201_CSV.exists()
    _environment(monkeypatch, tmp_path, benchmark=benchmark, ZCJAX_RESULTS_DIR=str(out),
                 ZCJAX_NOTEBOOK_N="100000")  # more than the space: scoring would raise
    text, _ = _execute("paper_comparison.ipynb", tmp_path,
                       probe_table("comparison", "RESULTS_DIR") if benchmark else None)
    assert "nothing is scored" in text
    assert "scored 12" not in text
    if benchmark:
        table = text[text.index("difference"):]
        assert "snip" in table and "params" in table
        assert "synflow" not in table  # only the store's proxies
        store_dir, shown = probed(text)
        assert store_dir == out
        assert_same_correlations(shown, correlations_from_the_store(out, "cifar10"),
                                 ("snip", "params"))
    else:
        assert NO_TABLE in text


def test_sota_notebook_reads_the_committed_store(monkeypatch, tmp_path):
    committed = Path(__file__).resolve().parents[1] / "bench" / "sota"
    benchmark = NB201_CSV.exists()
    _environment(monkeypatch, tmp_path, benchmark=benchmark, ZCJAX_RESULTS_DIR=str(committed))
    probe = "\n".join([
        "import json",
        f"print({PROBE!r} + json.dumps({{dataset: {{str(proxy): {{k: float(row[k]) for k in "
        "('kendall_tau', 'spearman_rho')} for proxy, row in table.iterrows()} "
        "for dataset, table in tables.items()}))",
        f"print({PROBE!r} + json.dumps({{dataset: float(table.loc['zcjax_composition', "
        "'kendall_tau']) for dataset, table in heldout_tables.items()}))"])
    text, produced = _execute("sota.ipynb", tmp_path, probe if benchmark else None)
    assert "nothing is scored" in text and "scored " not in text
    if not benchmark:
        assert NO_TABLE in text
        return
    for word in ("vkdnw_agg", "az_nas", "meco", "swap_reg", "published_tau", "ndcg"):
        assert word in text, f"sota.ipynb: no {word!r} in the outputs"
    assert "image/png" in produced, "sota.ipynb: no plot"
    # Every single proxy's row of every dataset's table, recomputed from the part files.
    lines = [line for line in text.splitlines() if line.startswith(PROBE)]
    shown, heldout = (json.loads(line[len(PROBE):]) for line in lines[-2:])
    assert shown, "the committed store holds no dataset the notebook correlates"
    for dataset, table in shown.items():
        expected = correlations_from_the_store(committed, dataset)
        assert set(expected) < set(table)  # the aggregates' rows besides
        assert_same_correlations(table, expected, expected)
    assert heldout, "the committed store holds no held-out architectures"
    for dataset, tau in heldout.items():
        assert tau == pytest.approx(composition_tau_on_heldout(committed, dataset), abs=1e-12)


def composition_tau_on_heldout(store_dir: Path, dataset: str) -> float:
    """Kendall tau of the frozen composition (bench/composition.json) on the store's
    architectures outside the selection sample, computed here: the sum over components of
    log(rank / N), ranks ascending with ties averaged and non-finite scores lowest."""
    components = json.loads((store_dir.parent / "composition.json").read_text())["components"]
    selection = set(nb201.arch_strings(nb201.sample(jax.random.key(0), 1000)))
    rows = pd.concat(pd.read_parquet(part) for part in sorted(store_dir.glob("part-*.parquet")))
    rows = rows[(rows["space"] == "nb201") & (rows["dataset"] == dataset)
                & ~rows["arch"].isin(selection) & rows["proxy"].isin(components)]
    grouped = rows.groupby(["arch", "proxy"])["value"]
    # Archs with a row for every component; a NaN score is a score and ranks lowest.
    present = grouped.size().unstack().reindex(columns=components).notna().all(axis=1)
    wide = grouped.mean().unstack().reindex(columns=components)[present]
    ranks = [stats.rankdata(np.where(np.isfinite(wide[c]), wide[c], -np.inf))
             for c in components]
    composition = np.sum(np.log(np.asarray(ranks) / len(wide)), axis=0)
    accuracy = pd.read_csv(NB201_CSV).set_index("arch_str")[ACCURACY_COLUMN[dataset]]
    accuracy = accuracy.reindex(wide.index).to_numpy(float)
    keep = np.isfinite(accuracy)
    return stats.kendalltau(composition[keep], accuracy[keep])[0]
