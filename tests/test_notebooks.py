"""The notebooks run end to end at small sizes, and are committed without outputs.

Each notebook is executed in a fresh Jupyter kernel (nbclient) with the CI sizes below and,
when the shared data folder is there, ``$ZCJAX_BENCHMARK_DIR`` pointing at it (so the
notebooks find the NB201 accuracy table); nothing is written back.
"""

import sys
from pathlib import Path

import jax
import pytest

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


def _environment(monkeypatch, tmp_path, *, benchmark: bool, **variables: str) -> None:
    """The kernel's environment: only the variables given (and the table if wanted)."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    if benchmark:
        monkeypatch.setenv("ZCJAX_BENCHMARK_DIR", str(SHARED_DATA))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary folders


def _execute(name: str, tmp_path: Path):
    """Run a notebook in a fresh kernel; returns (text of all outputs, their MIME types)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
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


@pytest.mark.parametrize("name, words, kinds", [
    ("quickstart.ipynb", ("kendall_tau", "tcet_snip"), {"image/png"}),
    ("paper_comparison.ipynb", ("difference", "synflow_snr", "tcet_synflow", "grasp"),
     {"image/png"}),
])
def test_notebook_runs_at_ci_size(name, words, kinds, monkeypatch, tmp_path):
    benchmark = NB201_CSV.exists()
    _environment(monkeypatch, tmp_path, benchmark=benchmark, **CI_SIZES)
    text, produced = _execute(name, tmp_path)
    if not benchmark:
        assert NO_TABLE in text
        return
    assert NO_TABLE not in text
    for word in words:
        assert word in text, f"{name}: no {word!r} in the outputs"
    assert kinds <= produced, f"{name}: no plot"


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
    text, _ = _execute("paper_comparison.ipynb", tmp_path)
    assert "nothing is scored" in text
    assert "scored 12" not in text
    if benchmark:
        table = text[text.index("difference"):]
        assert "snip" in table and "params" in table
        assert "synflow" not in table  # only the store's proxies
    else:
        assert NO_TABLE in text


def test_sota_notebook_reads_the_committed_store(monkeypatch, tmp_path):
    committed = Path(__file__).resolve().parents[1] / "bench" / "sota"
    benchmark = NB201_CSV.exists()
    _environment(monkeypatch, tmp_path, benchmark=benchmark, ZCJAX_RESULTS_DIR=str(committed))
    text, produced = _execute("sota.ipynb", tmp_path)
    assert "nothing is scored" in text and "scored " not in text
    if not benchmark:
        assert NO_TABLE in text
        return
    for word in ("vkdnw_agg", "az_nas", "meco", "swap_reg", "published_tau", "ndcg"):
        assert word in text, f"sota.ipynb: no {word!r} in the outputs"
    assert "image/png" in produced, "sota.ipynb: no plot"
