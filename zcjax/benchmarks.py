"""Benchmark accuracy tables: what the proxy rankings are measured against.

A :class:`Benchmark` holds trained accuracies keyed by architecture string (the same strings the
search spaces and the results store use), one column per dataset or metric, plus, where the
source has them, reference proxy scores computed by someone else (NAS-Bench-Suite-Zero) to
compare ours with. Loaders:

* :func:`load_nb201_csv`: the merged NAS-Bench-201 / NATS-Bench topology table (all 15625
  architectures; NATS-Bench test accuracies and the NAS-Bench-201 v1.0 columns).
* :func:`load_suite_zero`: NAS-Bench-Suite-Zero's precomputed-proxy JSON (NASLib's
  ``zc_<space>.json``), any space, given a function from its key to an arch string
  (:data:`SUITE_ZERO_ARCH_KEYS`: NB201, NB101, NB301/DARTS, TransNAS-Bench-101 micro).
* :func:`load_nats_bench`: the official NATS-Bench API files (optional ``nats_bench`` package).
* :func:`load_benchmark`: any of these by name (``"nb201"``, resolved through environment
  variables) or by path. The package ships no benchmark data.

References:
  Dong & Yang, "NAS-Bench-201", ICLR 2020. Dong et al., "NATS-Bench", TPAMI 2021.
  Krishnakumar et al., "NAS-Bench-Suite-Zero", NeurIPS 2022 Datasets and Benchmarks.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from zcjax.space import get_space, space_names

__all__ = [
    "BENCHMARKS",
    "BENCHMARK_DIR_VARIABLE",
    "Benchmark",
    "NATS_DATASETS",
    "NB201_CSV_COLUMNS",
    "SUITE_ZERO_ARCH_KEYS",
    "SUITE_ZERO_FILE_SPACES",
    "load_benchmark",
    "load_nats_bench",
    "load_nb201_csv",
    "load_suite_zero",
    "naslib_arch",
    "naslib_darts_arch",
    "naslib_nb101_arch",
    "naslib_nb201_arch",
    "naslib_tnb101_micro_arch",
    "sample_archs",
    "suite_zero_space",
]


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """Accuracies of a benchmark's architectures, keyed by arch string.

    Attributes:
      name: short name of the source (e.g. ``"nb201"``).
      accuracies: float64 frame, index ``arch`` (unique arch strings), one column per dataset
        or metric; NaN where the source has no value for an architecture.
      descriptions: column -> what it holds (split, epochs, seeds, source).
      scores: reference proxy scores from the source, long format with columns ``arch``,
        ``dataset``, ``proxy``, ``value`` (float64, non-finite kept) and ``seconds``; None when
        the source has none.
      info: per-architecture extras that are neither accuracies nor proxies (benchmark index,
        isomorphism class, ...), index ``arch``; None when there are none.
    """

    name: str
    accuracies: pd.DataFrame
    descriptions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    scores: pd.DataFrame | None = None
    info: pd.DataFrame | None = None

    @property
    def datasets(self) -> tuple[str, ...]:
        """The accuracy columns, in order."""
        return tuple(self.accuracies.columns)

    def column(self, dataset: str) -> str:
        """The accuracy column for ``dataset``: exact name, else a case-insensitive match.

        Raises:
          KeyError: no such column; the message lists the valid ones.
        """
        if dataset in self.accuracies.columns:
            return dataset
        folded = [c for c in self.accuracies.columns if c.lower() == str(dataset).lower()]
        if len(folded) == 1:
            return folded[0]
        raise KeyError(
            f"benchmark {self.name!r} has no dataset {dataset!r}; valid datasets: "
            f"{', '.join(self.datasets)}"
        )

    def accuracy(self, dataset: str) -> pd.Series:
        """Accuracies on one dataset, indexed by arch, architectures without a value left out.

        Raises:
          KeyError: no such dataset; the message lists the valid ones.
        """
        column = self.column(dataset)
        return self.accuracies[column].dropna().rename(column)


def sample_archs(benchmark: Benchmark, n: int | None = None, *, seed: int = 0) -> list[str]:
    """The benchmark's architectures, or ``n`` of them drawn without replacement.

    The draw is NumPy's ``default_rng(seed).choice(total, n, replace=False)``, returned in
    the benchmark's own order, so a seed names the same subset everywhere (``zcjax
    score-space --archs-from FILE --n N --seed S``, bench/compare_suite_zero.py).

    Args:
      benchmark: its ``accuracies`` index lists the architectures.
      n: how many; None for all of them.
      seed: the draw's seed.

    Raises:
      ValueError: ``n`` not in 1..number of architectures.
    """
    archs = list(benchmark.accuracies.index)
    if n is None:
        return archs
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(archs):
        raise ValueError(f"n must be in 1..{len(archs)} (the architectures of benchmark "
                         f"{benchmark.name!r}), got {n!r}")
    chosen = np.sort(np.random.default_rng(seed).choice(len(archs), int(n), replace=False))
    return [archs[i] for i in chosen]


def _accuracy_frame(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    frame = frame.astype("float64")
    frame.index = frame.index.astype(str).rename("arch")
    duplicated = frame.index[frame.index.duplicated()]
    if len(duplicated):
        raise ValueError(f"{source}: architecture {duplicated[0]!r} appears more than once")
    return frame


def expanded(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` / ``~user`` expanded.

    Raises:
      ValueError: ``~user`` names no user (instead of RuntimeError).
    """
    try:
        return Path(path).expanduser()
    except RuntimeError as error:
        raise ValueError(f"cannot expand the path {os.fspath(path)!r}: {error}") from None


def _existing(path: str | os.PathLike) -> Path:
    path = expanded(path)
    if not path.exists():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    return path


# ---------------------------------------------------------------------------
# NAS-Bench-201 / NATS-Bench topology CSV
# ---------------------------------------------------------------------------
# CSV column -> (our dataset column, description).
NB201_CSV_COLUMNS = MappingProxyType(
    {
        "cifar10_test_nats": (
            "cifar10", "CIFAR-10 test accuracy, NATS-Bench tss, 200 epochs, mean over seeds"),
        "cifar100_test_nats": (
            "cifar100", "CIFAR-100 test accuracy, NATS-Bench tss, 200 epochs, mean over seeds"),
        "imagenet16_120_test_nats": (
            "imagenet16-120",
            "ImageNet16-120 test accuracy, NATS-Bench tss, 200 epochs, mean over seeds"),
        "cifar10_test_nb201v1": (
            "cifar10-nb201v1",
            "CIFAR-10 test accuracy (trained on train+valid), NAS-Bench-201 v1.0, mean over seeds"),
        "cifar10valid_valid_nb201v1": (
            "cifar10-valid",
            "CIFAR-10 validation accuracy (the 'cifar10-valid' setting: trained on the train "
            "split), NAS-Bench-201 v1.0, mean over seeds"),
        "cifar10valid_test_nb201v1": (
            "cifar10-valid-test",
            "CIFAR-10 test accuracy in the 'cifar10-valid' setting (trained on the train split), "
            "NAS-Bench-201 v1.0, mean over seeds"),
    }
)
_NB201_CSV_INFO = ("arch_index", "naslib_op_indices", "isomorph_str", "params_mb",
                   "naswot_v1_score")


def load_nb201_csv(path: str | os.PathLike) -> Benchmark:
    """The merged NAS-Bench-201 / NATS-Bench topology accuracy table (plain or gzipped CSV).

    Columns of the result (see :data:`NB201_CSV_COLUMNS`): ``cifar10``, ``cifar100``,
    ``imagenet16-120`` (NATS-Bench tss test accuracies, 200 epochs, mean over seeds: the
    numbers PAPER.md's Kendall taus are measured against), ``cifar10-nb201v1``,
    ``cifar10-valid`` and ``cifar10-valid-test`` (NAS-Bench-201 v1.0). ``info`` keeps
    ``arch_index``, ``naslib_op_indices``, ``isomorph_str``, ``params_mb`` (wrong in 204 rows
    of the shared file, see its README) and ``naswot_v1_score``.

    Args:
      path: the CSV, with an ``arch_str`` column and the columns above.

    Raises:
      FileNotFoundError: no such file.
      ValueError: a required column is missing, or an arch appears twice.
    """
    path = _existing(path)
    frame = pd.read_csv(path, dtype={"naslib_op_indices": str})
    missing = [c for c in ("arch_str", *NB201_CSV_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} is not an NB201 accuracy table: missing column(s) "
                         f"{', '.join(missing)}")
    frame = frame.set_index("arch_str")
    accuracies = _accuracy_frame(
        frame[list(NB201_CSV_COLUMNS)].rename(
            columns={src: name for src, (name, _) in NB201_CSV_COLUMNS.items()}),
        str(path),
    )
    info = frame[[c for c in _NB201_CSV_INFO if c in frame.columns]].copy()
    info.index = accuracies.index
    return Benchmark(
        name="nb201",
        accuracies=accuracies,
        descriptions=dict(NB201_CSV_COLUMNS.values()),
        info=info,
    )


# ---------------------------------------------------------------------------
# NAS-Bench-Suite-Zero JSON (NASLib zc_<space>.json)
# ---------------------------------------------------------------------------
def naslib_arch(space: str, key) -> str:
    """A NAS-Bench-Suite-Zero JSON key of ``space`` -> our canonical arch string.

    The space's own ``from_naslib`` reads the key (:class:`zcjax.space.SearchSpace`), so
    any registered space that declares it can read its Suite-Zero file.

    Raises:
      ValueError: the space does not read NASLib keys, or the key is malformed (the space's
        message names the problem).
    """
    found = get_space(space)
    return found.decode(found.require("from_naslib")(key))


def naslib_nb201_arch(key: str | Iterable[int]) -> str:
    """NASLib's NAS-Bench-201 op indices (``"(4, 3, 3, 0, 0, 0)"``, ``"433000"`` or 6
    ints) -> our (NB201's own) arch string; see :func:`zcjax.spaces.nb201.from_naslib`."""
    return naslib_arch("nb201", key)


def naslib_nb101_arch(key: str) -> str:
    """NASLib's NAS-Bench-101 key (the repr of the 56 genotype ints, which is
    :mod:`zcjax.spaces.nb101`'s arch string itself) -> the validated, canonically spaced
    arch string."""
    return naslib_arch("nb101", key)


def naslib_darts_arch(key: str) -> str:
    """NASLib's NAS-Bench-301 "compact" key ``"[[(input, op) x 8], [(input, op) x 8]]"``
    (the darts space's canonical form) -> the validated, canonically spaced arch string."""
    return naslib_arch("darts", key)


def naslib_tnb101_micro_arch(key: str) -> str:
    """NASLib's TransNAS-Bench-101 micro key ``"(a, b, c, d, e, f)"`` -> our arch string;
    see :func:`zcjax.spaces.tnb101_micro.from_naslib`."""
    return naslib_arch("tnb101_micro", key)


class _FromRegistry(Mapping):
    """A read-only mapping computed from the space registry each time it is read, so
    spaces registered later count too (and importing this module imports no space)."""

    def __init__(self, build: Callable[[], dict]):
        self._build = build

    def __getitem__(self, key):
        return self._build()[key]

    def __iter__(self):
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return repr(self._build())


def _arch_keys() -> dict[str, Callable[[str], str]]:
    return {name: functools.partial(naslib_arch, name) for name in space_names()
            if get_space(name).offers("from_naslib")}


# NASLib's search spaces that zcjax has no space for (their files are refused clearly).
_NASLIB_WITHOUT_SPACE = ("transbench101_macro",)


def _file_spaces() -> dict[str, str | None]:
    parts = {space.naslib_name: space.name for space in map(get_space, space_names())
             if space.naslib_name is not None}
    return parts | dict.fromkeys(_NASLIB_WITHOUT_SPACE)


# Space name -> Suite-Zero key mapper: every registered space that offers from_naslib.
SUITE_ZERO_ARCH_KEYS: Mapping[str, Callable[[str], str]] = _FromRegistry(_arch_keys)
# Part of NASLib's file name (zc_<name>.json, a space's naslib_name) -> space; None: no
# zcjax space for it.
SUITE_ZERO_FILE_SPACES: Mapping[str, str | None] = _FromRegistry(_file_spaces)


def suite_zero_space(path: str | os.PathLike) -> str | None:
    """The search space of a Suite-Zero file from its name (``zc_nasbench101.json`` ->
    ``"nb101"``), or None when the name says nothing.

    Raises:
      ValueError: the name is that of a space zcjax does not implement (TNB101 macro).
    """
    name = Path(path).name.lower()
    for part, space in _file_spaces().items():
        if part in name:
            if space is None:
                raise ValueError(f"{Path(path).name}: zcjax has no search space for NASLib's "
                                 f"{part!r} (known: {', '.join(SUITE_ZERO_ARCH_KEYS)})")
            return space
    return None


def _read_json(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as file:
        return json.load(file)


def _score(value) -> float:
    # JSON null and the strings NaN/Infinity that json accepts all become floats.
    return math.nan if value is None else float(value)


# Record fields that are neither the accuracy nor a proxy score.
_NOT_SCORES = frozenset({"val_accuracy", "idx", "arch"})


def _record_scores(record: dict):
    """(proxy, score, seconds) of a record's proxy fields, in either Suite-Zero format.

    The newer files store ``proxy: {"score", "time"}``, the older ones (NB101 and NB301 at
    NASLib commit 22280f7) a bare number (no time: NaN seconds).
    """
    for proxy, entry in record.items():
        if isinstance(entry, dict) and "score" in entry:
            yield proxy, _score(entry["score"]), _score(entry.get("time"))
        elif proxy not in _NOT_SCORES and (entry is None or (
                isinstance(entry, (int, float)) and not isinstance(entry, bool))):
            yield proxy, _score(entry), math.nan


def _is_record(value) -> bool:
    return isinstance(value, dict) and "val_accuracy" in value


def _holds_records(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(map(_is_record, value.values()))


def _datasets(data, path: Path) -> dict:
    """``{dataset: {key: record}}``, unwrapping the older files' outer space level
    (``{"nasbench101": {"cifar10": {...}}}``).

    Raises:
      ValueError: any other layout, an empty dataset, or a record without val_accuracy.
    """
    if isinstance(data, dict) and len(data) == 1:
        (inner,) = data.values()
        if isinstance(inner, dict) and inner and all(map(_holds_records, inner.values())):
            data = inner
    if not isinstance(data, dict) or not data or not all(map(_holds_records, data.values())):
        raise ValueError(f"{path} is not a Suite-Zero file: expected {{dataset: {{key: "
                         "record}}}} (optionally inside {space: ...}), every record holding "
                         "val_accuracy")
    return data


def load_suite_zero(
    path: str | os.PathLike,
    arch_from_key: Callable[[str], str] = naslib_nb201_arch,
    *,
    name: str = "suite-zero",
) -> Benchmark:
    """NAS-Bench-Suite-Zero's precomputed proxies and accuracies (NASLib ``zc_<space>.json``).

    The file is ``{dataset: {key: {"val_accuracy": float, proxy: {"score", "time"}, ...}}}``
    or, in NASLib's older NB101 / NB301 files, ``{space: {dataset: {key: {"val_accuracy":
    float, proxy: float, ...}}}}``. Accuracy columns are the datasets lower-cased
    (``cifar10``, ``cifar100``, ``imagenet16-120``; TransNAS-Bench's task names), each the
    record's ``val_accuracy`` (NB201: one seed's validation accuracy after 200 epochs, not
    NATS-Bench's test accuracy; NB301: the surrogate's prediction; TransNAS-Bench: the
    task's own metric, e.g. SSIM for ``autoencoder``). Every proxy field (a ``{"score",
    "time"}`` dict or a bare number; ``params`` and ``flops`` included, in millions) becomes
    rows of :attr:`Benchmark.scores`; ``idx`` and ``arch`` are ignored.

    Args:
      path: the JSON file, plain or gzipped.
      arch_from_key: maps a JSON key to our arch string (:func:`naslib_nb201_arch` for
        NB201; :data:`SUITE_ZERO_ARCH_KEYS` has every space's).
      name: the benchmark's name.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not the Suite-Zero layout, a key the mapper rejects (the message names
        the key), or two keys mapping to the same arch within a dataset.
    """
    path = _existing(path)
    data = _datasets(_read_json(path), path)
    accuracy_columns, score_rows = {}, []
    for dataset, records in data.items():
        column = dataset.lower()
        accuracy = {}
        for key, record in records.items():
            try:
                arch = arch_from_key(key)
            except ValueError as error:
                raise ValueError(f"{path}: {dataset} key {key!r} is not an architecture of "
                                 f"this space: {error}") from None
            if arch in accuracy:
                raise ValueError(f"{path}: {dataset} has two keys for arch {arch!r}")
            accuracy[arch] = _score(record["val_accuracy"])
            score_rows.extend((arch, column, *entry) for entry in _record_scores(record))
        accuracy_columns[column] = pd.Series(accuracy, dtype="float64")
    accuracies = _accuracy_frame(pd.DataFrame(accuracy_columns), str(path))
    scores = pd.DataFrame(score_rows, columns=["arch", "dataset", "proxy", "value", "seconds"])
    scores = scores.astype({"value": "float64", "seconds": "float64"})
    descriptions = {
        column: f"{column} val_accuracy from NAS-Bench-Suite-Zero ({path.name}); NB201: a "
        "single seed's validation accuracy after 200 epochs; NB301: surrogate prediction; "
        "TransNAS-Bench-101: the task's metric"
        for column in accuracies.columns
    }
    return Benchmark(name=name, accuracies=accuracies, descriptions=descriptions, scores=scores)


# ---------------------------------------------------------------------------
# The official NATS-Bench API
# ---------------------------------------------------------------------------
NATS_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")


def load_nats_bench(
    path: str | os.PathLike,
    *,
    datasets: Iterable[str] = NATS_DATASETS,
    hp: str = "200",
) -> Benchmark:
    """Test accuracies from the official NATS-Bench topology (tss) files.

    Uses ``nats_bench.create(path, "tss", fast_mode=True, verbose=False)`` and
    ``get_more_info(index, dataset, hp=hp, is_random=False)["test-accuracy"]`` (mean over
    seeds; ``is_random=True``, the API's default, would pick one seed at random).

    Args:
      path: the NATS-Bench tss benchmark files (e.g. ``NATS-tss-v1_0-3ffb9-simple``).
      datasets: NATS-Bench dataset names; columns are them lower-cased.
      hp: training schedule, ``"200"`` or ``"12"`` epochs.

    Raises:
      ImportError: the ``nats_bench`` package is not installed.
      FileNotFoundError: no such path.
    """
    try:
        import nats_bench
    except ImportError as error:
        raise ImportError(
            "loading the NATS-Bench API files needs the nats_bench package: "
            "pip install nats_bench (or use the CSV / Suite-Zero loaders)"
        ) from error
    path = _existing(path)
    api = nats_bench.create(str(path), "tss", fast_mode=True, verbose=False)
    datasets = tuple(datasets)
    archs = [api.arch(index) for index in range(len(api))]
    columns = {
        dataset.lower(): [
            api.get_more_info(index, dataset, hp=hp, is_random=False)["test-accuracy"]
            for index in range(len(api))
        ]
        for dataset in datasets
    }
    accuracies = _accuracy_frame(pd.DataFrame(columns, index=archs), str(path))
    descriptions = {
        dataset.lower(): f"{dataset} test accuracy, NATS-Bench tss API, {hp} epochs, mean over "
        "seeds"
        for dataset in datasets
    }
    info = pd.DataFrame({"arch_index": range(len(archs))}, index=accuracies.index)
    return Benchmark(name="nats-tss", accuracies=accuracies, descriptions=descriptions, info=info)


# ---------------------------------------------------------------------------
# By name or path
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Source:
    variable: str  # environment variable holding the file's path
    candidates: tuple[str, ...]  # glob patterns under $ZCJAX_BENCHMARK_DIR
    loader: Callable[[Path], Benchmark]
    description: str


def _suite_zero_loader(space: str, name: str) -> Callable[[Path], Benchmark]:
    return lambda path: load_suite_zero(path, functools.partial(naslib_arch, space), name=name)


BENCHMARK_DIR_VARIABLE = "ZCJAX_BENCHMARK_DIR"
BENCHMARKS: Mapping[str, _Source] = MappingProxyType(
    {
        "nb201": _Source(
            "ZCJAX_NB201_CSV",
            ("nb201_accuracies.csv*", "nb201/nb201_accuracies.csv*"),
            load_nb201_csv,
            "NAS-Bench-201 / NATS-Bench tss accuracy CSV, all 15625 archs",
        ),
        "nb201-suite-zero": _Source(
            "ZCJAX_NB201_SUITE_ZERO",
            ("*zc_nasbench201*.json*", "nb201/*zc_nasbench201*.json*"),
            _suite_zero_loader("nb201", "nb201-suite-zero"),
            "NAS-Bench-Suite-Zero NB201 JSON (725 archs, validation accuracy, proxy scores)",
        ),
        "nb101-suite-zero": _Source(
            "ZCJAX_NB101_SUITE_ZERO",
            ("*zc_nasbench101*.json*", "nb101/*zc_nasbench101*.json*"),
            _suite_zero_loader("nb101", "nb101-suite-zero"),
            "NAS-Bench-Suite-Zero NB101 JSON (500 archs, CIFAR-10 validation accuracy, proxy "
            "scores)",
        ),
        "nb301-suite-zero": _Source(
            "ZCJAX_NB301_SUITE_ZERO",
            # The 725-arch file first: it has more proxies (nwot) than the older 500.
            ("*zc_nasbench301_725*.json*", "nb301/*zc_nasbench301_725*.json*",
             "*zc_nasbench301*.json*", "nb301/*zc_nasbench301*.json*"),
            _suite_zero_loader("darts", "nb301-suite-zero"),
            "NAS-Bench-Suite-Zero NB301 (DARTS space) JSON (725 or 500 archs, surrogate "
            "CIFAR-10 accuracy, proxy scores)",
        ),
        "tnb101-micro-suite-zero": _Source(
            "ZCJAX_TNB101_MICRO_SUITE_ZERO",
            ("*zc_transbench101_micro*.json*", "tnb101/*zc_transbench101_micro*.json*"),
            _suite_zero_loader("tnb101_micro", "tnb101-micro-suite-zero"),
            "NAS-Bench-Suite-Zero TransNAS-Bench-101 micro JSON (711 archs, 7 tasks, proxy "
            "scores)",
        ),
    }
)


def _resolve(name: str) -> Path:
    source = BENCHMARKS[name]
    if os.environ.get(source.variable):
        return _existing(os.environ[source.variable])
    directory = os.environ.get(BENCHMARK_DIR_VARIABLE)
    if directory:
        for pattern in source.candidates:
            found = sorted(expanded(directory).glob(pattern))
            if found:
                return found[0]
        raise FileNotFoundError(
            f"benchmark {name!r}: no file matching {' or '.join(source.candidates)} under "
            f"${BENCHMARK_DIR_VARIABLE}={directory}"
        )
    raise FileNotFoundError(
        f"benchmark {name!r} ({source.description}) is not shipped with zcjax: set "
        f"${source.variable} to its file, or ${BENCHMARK_DIR_VARIABLE} to a folder holding "
        f"{' or '.join(source.candidates)}, or pass the path"
    )


def load_benchmark(name_or_path: str | os.PathLike, *, space: str | None = None) -> Benchmark:
    """A benchmark by name (see :data:`BENCHMARKS`) or by path.

    Names resolve through an environment variable naming the file (``ZCJAX_NB201_CSV``,
    ``ZCJAX_NB201_SUITE_ZERO``, ``ZCJAX_NB101_SUITE_ZERO``, ``ZCJAX_NB301_SUITE_ZERO``,
    ``ZCJAX_TNB101_MICRO_SUITE_ZERO``) or a folder ``ZCJAX_BENCHMARK_DIR`` searched for the
    usual file names. A path is read by its suffix: ``.csv[.gz]`` as the NB201 table,
    ``.json[.gz]`` as a Suite-Zero file (its space from ``space``, else from NASLib's file
    name, :func:`suite_zero_space`: ``nasbench101``, ``nasbench201``, ``nasbench301`` ->
    ``darts``, ``transbench101_micro``), a folder as NATS-Bench API files.

    Args:
      name_or_path: a name in :data:`BENCHMARKS` or a path.
      space: the search space of a Suite-Zero JSON (a key of :data:`SUITE_ZERO_ARCH_KEYS`).

    Raises:
      FileNotFoundError: the file is missing, or a name's environment variables are unset.
      ValueError: neither a known name nor a readable path; an unknown or undetectable space.
    """
    text = os.fspath(name_or_path)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a benchmark is a name ({', '.join(BENCHMARKS)}) or a path, got "
                         f"{name_or_path!r}")
    if text in BENCHMARKS:
        return BENCHMARKS[text].loader(_resolve(text))
    path = expanded(text)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    if not path.exists():
        if not suffixes:
            raise ValueError(f"unknown benchmark {text!r}: neither a name "
                             f"({', '.join(BENCHMARKS)}) nor an existing path")
        raise FileNotFoundError(f"benchmark file not found: {path}")
    if path.is_dir():
        return load_nats_bench(path)
    if suffixes[-1:] == [".csv"]:
        return load_nb201_csv(path)
    if suffixes[-1:] == [".json"]:
        if space is None:
            space = suite_zero_space(path)
        if space not in SUITE_ZERO_ARCH_KEYS:
            raise ValueError(
                f"{path}: give the search space of this Suite-Zero file (space=...); known: "
                f"{', '.join(SUITE_ZERO_ARCH_KEYS)}"
            )
        return load_suite_zero(path, SUITE_ZERO_ARCH_KEYS[space], name=path.name)
    raise ValueError(f"{path}: unknown benchmark format; expected .csv[.gz] (NB201 table), "
                     ".json[.gz] (Suite-Zero) or a NATS-Bench folder")
