"""The results store of bulk runs: a directory of Parquet part files.

One part file per finished chunk, one row per (architecture, proxy) of a run identity
(space, dataset, batch, seed, settings). A part is written under a hidden temporary name
(``.part-<run>-<chunk>.parquet.<random>.tmp``) in the same directory, flushed to disk and
renamed with ``os.replace``, which is atomic on POSIX: a reader (or a resumed run) sees a
whole part or none of it. A temporary name starts with a dot (pyarrow and pandas skip such
files) and does not end in ``.parquet`` (globs skip it), so pandas (``pd.read_parquet(out)``),
polars and DuckDB (``read_parquet('out/*.parquet')``) read the store directly, without
zcjax, and ignore what a killed run left behind; the next :class:`StoreWriter` to append
deletes such leftovers.

Columns (:data:`SCHEMA`):
  space, dataset, batch_id, seed, settings: the row's :class:`RunIdentity` (``settings`` is
    canonical JSON of the network configuration and the options the row's proxy reads,
    :mod:`zcjax.settings`; rows written before proxies owned their options are read in
    today's form, so those stores keep resuming).
  arch: the canonical architecture string.
  genotype_index: the genotype's row in the space's ``all_genotypes()``, null when the
    space does not enumerate its genotypes. For NB201 it is the base-5 code of the six
    edge ops in arch-string order, NOT the benchmark's official architecture index (join
    benchmark tables on ``arch``).
  proxy, value: the score, float64, non-finite values kept as they are.
  seconds: wall time of the scoring call of that architecture (all its proxies at once,
    compilation excluded), so rows of one architecture share it.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import filelock
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pa_dataset
import pyarrow.parquet as pq

from zcjax import settings as settings_lib

SCHEMA = pa.schema([
    ("space", pa.string()),
    ("dataset", pa.string()),
    ("batch_id", pa.string()),
    ("seed", pa.int64()),
    ("settings", pa.string()),
    ("arch", pa.string()),
    ("genotype_index", pa.int64()),
    ("proxy", pa.string()),
    ("value", pa.float64()),
    ("seconds", pa.float64()),
])


@dataclasses.dataclass(frozen=True)
class RunIdentity:
    """What a stored score was computed from; rows of one identity are one experiment.

    Two scores of one proxy are comparable (may be ranked together) only when every field
    but ``seed`` agrees; scores of one identity but different seeds are repeats of one
    experiment, which :func:`zcjax.correlate` averages.

    Attributes:
      space: search space name.
      dataset: the data the batch comes from.
      batch_id: identity of the minibatch (e.g. its content hash).
      seed: the int of the initialisation key.
      settings: canonical JSON of the network config and the options the proxy reads
        (:func:`zcjax.settings.encode`).
    """

    space: str
    dataset: str
    batch_id: str
    seed: int
    settings: str

    def row(self) -> dict[str, object]:
        """The identity as store columns."""
        return dataclasses.asdict(self)

    def differences(self, other: RunIdentity) -> list[str]:
        """The fields (``settings`` broken down to ``options.x`` / ``config.y``) that differ."""
        fields = [name for name in RUN_COLUMNS if name != "settings"
                  and getattr(self, name) != getattr(other, name)]
        mine, theirs = (settings_lib.flatten(s) for s in (self.settings, other.settings))
        fields += sorted(name for name in set(mine) | set(theirs)
                         if mine.get(name) != theirs.get(name))
        return fields


RUN_COLUMNS = tuple(field.name for field in dataclasses.fields(RunIdentity))
# A stored row is identified by its run identity plus these.
ROW_COLUMNS = ("arch", "proxy")

PART_SUFFIX = ".parquet"


def _directory(out: str | os.PathLike, *, create: bool) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"results store {str(path)!r} is a file; it must be a directory "
                         "of Parquet part files")
    if not path.exists():
        if not create:
            raise ValueError(f"no results store at {str(path)!r}")
        # exist_ok: another writer may create it between the check and here.
        path.mkdir(parents=True, exist_ok=True)
    return path


def part_files(out: str | os.PathLike) -> list[Path]:
    """The finished part files of a store, sorted by name (temporary files excluded)."""
    return sorted(p for p in _directory(out, create=False).iterdir()
                  if p.is_file() and p.name.endswith(PART_SUFFIX)
                  and not p.name.startswith((".", "_")))


def _check_schema(part: Path) -> None:
    try:
        schema = pq.read_schema(part)
    except (pa.ArrowInvalid, OSError) as error:
        raise ValueError(f"{str(part)!r} is not a readable Parquet file: {error}") from None
    for field in SCHEMA:
        index = schema.get_field_index(field.name)
        if index < 0 or not schema.field(index).type.equals(field.type):
            found = "missing" if index < 0 else str(schema.field(index).type)
            raise ValueError(f"{str(part)!r} is not a zcjax results part: column "
                             f"{field.name!r} ({field.type}) is {found}")


def _read_table(out: str | os.PathLike, columns: Sequence[str] | None) -> pa.Table:
    parts = part_files(out)
    if not parts:
        return SCHEMA.empty_table().select(list(columns or SCHEMA.names))
    for part in parts:
        _check_schema(part)
    try:
        # The fixed schema, so every part is read alike whatever a first part holds.
        dataset = pa_dataset.dataset([str(p) for p in parts], schema=SCHEMA, format="parquet")
        return dataset.to_table(columns=list(columns) if columns else None)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"{str(out)!r} is not a zcjax results store: {error}") from None


def read_results(out: str | os.PathLike) -> pd.DataFrame:
    """Every stored row of a results store, one row per (arch, proxy, run identity).

    Args:
      out: the store's directory.

    Returns:
      A DataFrame with the columns of :data:`SCHEMA` (empty if no part is finished yet);
      ``settings`` in today's canonical form (:func:`zcjax.settings.canonical`).

    Raises:
      ValueError: ``out`` does not exist, is a file, or holds Parquet files of another
        schema.
    """
    return _canonical(_read_table(out, None).to_pandas())


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame):
        frame["settings"] = settings_lib.canonical_column(frame)
    return frame


def identities(frame: pd.DataFrame) -> list[RunIdentity]:
    """The distinct run identities of a frame of store rows, in order of first appearance."""
    distinct = frame[list(RUN_COLUMNS)].drop_duplicates()
    return [RunIdentity(*row) for row in distinct.itertuples(index=False, name=None)]


def stored_values(out: str | os.PathLike,
                  runs: Mapping[str, RunIdentity]) -> pd.DataFrame:
    """The stored scores of some proxies, each proxy under its own run identity.

    Args:
      out: the store's directory (need not exist yet).
      runs: proxy name -> the identity its rows must have (settings differ per proxy:
        each holds only the options that proxy reads).

    Returns:
      Columns ``arch``, ``proxy``, ``value`` (float64, non-finite kept).
    """
    columns = list(ROW_COLUMNS) + ["value"]
    if not Path(out).exists():
        return pd.DataFrame({"arch": [], "proxy": [], "value": []}).astype(
            {"arch": object, "proxy": object, "value": "float64"})
    table = _canonical(_read_table(out, RUN_COLUMNS + tuple(columns)).to_pandas())
    table = table[table["proxy"].isin(list(runs))]
    # The identities in today's canonical form too (one given in an older form matches).
    wanted = pd.DataFrame([dict(run.row(), proxy=proxy,
                                settings=settings_lib.canonical(run.settings, proxy))
                           for proxy, run in runs.items()],
                          columns=list(RUN_COLUMNS) + ["proxy"])
    matched = table.merge(wanted.astype(table.dtypes[wanted.columns].to_dict()),
                          on=list(RUN_COLUMNS) + ["proxy"])
    return matched[columns].reset_index(drop=True)


def stored_pairs(out: str | os.PathLike,
                 runs: Mapping[str, RunIdentity]) -> set[tuple[str, str]]:
    """The (arch, proxy) pairs already stored, each proxy under its own run identity
    (see :func:`stored_values`)."""
    stored = stored_values(out, runs)
    return set(zip(stored["arch"], stored["proxy"]))


# A row's key: its run identity and what it scores. A store holds each key once.
KEY_COLUMNS = RUN_COLUMNS + ROW_COLUMNS
LOCK_NAME = ".zcjax.lock"  # hidden, not '*.parquet': readers and globs skip it


class StoreWriter:
    """Appends parts to a store, storing no row twice, while other writers append too.

    Every :meth:`append` holds the store's lock (``filelock`` on ``<out>/.zcjax.lock``),
    reads the parts written since it last looked, drops the rows whose key
    (:data:`KEY_COLUMNS`) is already stored, and writes the rest as one part. Two
    processes scoring one store at once therefore store every row once (they may both
    compute some). Every part is written under that lock, so a part's temporary file found
    by a writer holding it was left by a writer that died mid-write: it is deleted. The
    lock is an OS file lock (``fcntl.flock``): it holds between
    processes of one machine, and on network filesystems only where those support
    ``flock`` (many NFS setups do not); there, give each machine its own store.

    Args:
      out: the store's directory (created if missing).
    """

    def __init__(self, out: str | os.PathLike):
        self.directory = _directory(out, create=True)
        self._lock = filelock.FileLock(self.directory / LOCK_NAME)
        self._seen: set[str] = set()
        self._keys: set[tuple] = set()

    def _read_new_parts(self) -> None:
        new = [part for part in part_files(self.directory) if part.name not in self._seen]
        if not new:
            return
        for part in new:
            _check_schema(part)
        self._keys.update(_stored_keys(new))
        self._seen.update(part.name for part in new)

    def append(self, name: str, rows: Mapping[str, Sequence]) -> tuple[Path | None, list[int]]:
        """Write the rows not yet stored as part ``name``.

        A second append of the same part (a retried task whose first attempt was killed
        after its part was written: part names are unique to a run and chunk) writes
        nothing and reports that part and the rows it holds, so what the call added is
        counted once, not lost.

        Returns:
          (the part's path, or None when every row was stored already by other parts; the
          positions in ``rows`` of the rows the part holds).
        """
        with self._lock:
            for left in self.directory.glob(f".part-*{PART_SUFFIX}.*.tmp"):
                left.unlink(missing_ok=True)  # a killed writer's: every live one waits
            self._read_new_parts()
            keys = _row_keys(rows)
            keep = [i for i, key in enumerate(keys) if key not in self._keys]
            if not keep:
                earlier = self.directory / name
                if not earlier.exists():
                    return None, []
                held = _stored_keys([earlier])
                return earlier, [i for i, key in enumerate(keys) if key in held]
            kept = {column: [rows[column][i] for i in keep] for column in SCHEMA.names}
            path = write_part(self.directory, name, kept)
            self._seen.add(name)
            self._keys.update(keys[i] for i in keep)
            return path, keep


def _keys(frame: pd.DataFrame) -> list[tuple]:
    """The (``KEY_COLUMNS``) keys of a frame's rows, their settings in today's form: a row
    given or stored in an older form (no ``init_draw``, every old option) is the same key
    as its twin in today's."""
    return list(_canonical(frame)[list(KEY_COLUMNS)].itertuples(index=False, name=None))


def _row_keys(rows: Mapping[str, Sequence]) -> list[tuple]:
    """The keys of rows about to be written, as :func:`_stored_keys` reads stored ones."""
    return _keys(pd.DataFrame({column: list(rows[column]) for column in KEY_COLUMNS}))


def _stored_keys(parts: Sequence[Path]) -> set:
    """The (``KEY_COLUMNS``) keys of the rows the given part files hold."""
    table = pa_dataset.dataset([str(p) for p in parts], schema=SCHEMA, format="parquet")
    return set(_keys(table.to_table(columns=list(KEY_COLUMNS)).to_pandas()))


def new_part_name(run_token: str, chunk: int) -> str:
    """A part file name unique to one run (``part-<token>-<chunk>.parquet``)."""
    return f"part-{run_token}-{chunk:06d}{PART_SUFFIX}"


def write_part(out: str | os.PathLike, name: str, rows: Mapping[str, Sequence]) -> Path:
    """Write one part file atomically: temporary file, fsync, rename.

    Where a :class:`StoreWriter` may append at the same time, write through it instead: it
    deletes part temporaries it finds while holding the store's lock.

    Args:
      out: the store's directory (created if missing).
      name: the part's file name (see :func:`new_part_name`).
      rows: a column of values for each of :data:`SCHEMA`'s names.

    Returns:
      The path of the finished part.
    """
    directory = _directory(out, create=True)
    if not name.endswith(PART_SUFFIX) or name.startswith((".", "_")) or "/" in name:
        raise ValueError(f"part name {name!r} must be a plain '*{PART_SUFFIX}' file name")
    missing = sorted(set(SCHEMA.names) - set(rows))
    if missing:
        raise ValueError(f"part rows lack column(s) {', '.join(missing)}")
    table = pa.table({column: rows[column] for column in SCHEMA.names}, schema=SCHEMA)
    return write_atomically(directory / name, lambda sink: pq.write_table(table, sink))


def write_atomically(path: Path, write: Callable[[Any], None]) -> Path:
    """``write(binary file)`` to a hidden temporary beside ``path``, fsync, rename.

    A reader sees the whole file or none of it; a failed write leaves nothing behind.
    """
    # Hidden and not '*.parquet': invisible to readers and globs until renamed.
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as sink:
            write(sink)
            sink.flush()
            # On disk before the rename, so a power cut cannot leave a renamed empty file.
            os.fsync(sink.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
