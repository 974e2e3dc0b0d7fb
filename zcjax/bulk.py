"""Space-wide scoring: one compiled scorer, chunk by chunk, into a resumable results store.

:func:`score_space` scores every architecture of a space (or a given list) on one
minibatch and writes one Parquet part per finished chunk to a results store
(:mod:`zcjax.store`). Rerunning the same call skips every (architecture, proxy) already
stored for the same run identity (:class:`zcjax.store.RunIdentity`: space, dataset, batch,
seed, and settings: the network configuration and the options that proxy reads), so a
killed run resumes with nothing lost and nothing duplicated. :class:`StoredScorer` scores
architectures on demand through the same store (a search asks for a few at a time).

Parallelism. The scorer is compiled once (genotypes are data) and architectures are
scored one at a time: vmapping over genotypes turns every ``lax.switch`` into a select
that runs all ops, which is slower on a CPU (see DESIGN.md). On a GPU, where each
``switch`` costs a host sync, :func:`zcjax.grouped.score_grouped` (NB201) vmaps over
architectures that share their leading edges' ops instead (bench/RESULTS.md). On a
multi-core CPU, ``workers=N`` runs N worker processes (``spawn``), each with its own
scorer; with the persistent compilation cache (on by default, :mod:`zcjax.cache`) only
the first compiles from scratch. On a machine with several accelerators the scorer runs on
JAX's default device only; use ``workers=1`` there (worker processes would each claim the
same device's memory), or ``backend="devices"``: one scorer per local device, all in this
process (:mod:`zcjax.local_devices`). ``backend="ray"`` runs the workers as actors of a
Ray cluster (:mod:`zcjax.ray_backend`), one per GPU with
``ray_actor_options={"num_gpus": 1}``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import multiprocessing
import os
import pickle
import signal
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from zcjax import api, data, initialisation, local_devices, ray_backend, store
from zcjax.cache import CACHE_DIR_ENV, resolve_cache_dir, use_compilation_cache  # noqa: F401
from zcjax import settings as settings_lib
from zcjax.proxies import registry

DEFAULT_CHUNK = 100
BACKENDS = ("processes", "devices", "ray")


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a :func:`score_space` call did.

    Attributes:
      out: the results store's directory.
      archs: distinct architectures requested.
      archs_scored: architectures scored by this call (those with a proxy not yet stored).
      rows_written: rows this call added to the store.
      rows_skipped: requested (architecture, proxy) rows already stored, not recomputed.
      non_finite: rows written this call whose value is NaN or +-inf (stored as they are).
      parts: the part files this call wrote.
      seconds: wall time of the call.
      compile_seconds: the first scoring call (compilation included); with workers, the
        slowest worker's.
    """

    out: str
    archs: int
    archs_scored: int
    rows_written: int
    rows_skipped: int
    non_finite: int
    parts: tuple[str, ...]
    seconds: float
    compile_seconds: float


def batch_fingerprint(images, labels) -> str:
    """A content hash of a batch (``"sha256:<16 hex>"``), the default ``batch_id``."""
    digest = hashlib.sha256()
    for array in (np.asarray(images, np.float32), np.asarray(labels, np.int64)):
        digest.update(repr(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return "sha256:" + digest.hexdigest()[:16]


def score_space(
    space: str,
    proxies: str | Iterable[str],
    batch,
    *,
    key: int | jax.Array,
    out: str | os.PathLike,
    dataset: str,
    archs: Sequence | None = None,
    chunk: int = DEFAULT_CHUNK,
    batch_id: str | None = None,
    seed: int | None = None,
    workers: int = 1,
    backend: str = "processes",
    ray_address: str | None = None,
    ray_actor_options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike | bool | None = None,
    progress: bool = True,
    **scorer_options: Any,
) -> Summary:
    """Score a search space (or some of its architectures) into a resumable results store.

    Args:
      space: search space name (e.g. ``"nb201"``).
      proxies: proxy names (sequence or comma-separated).
      batch: ``(images NHWC float, labels int)``, the one minibatch every architecture sees.
      key: an int seed, or a ``jax.random`` key of the initialisation (with ``seed``).
      out: the results store's directory (created if missing; see :mod:`zcjax.store`).
      dataset: the name of the data the batch comes from (recorded, part of the identity).
      archs: arch strings or int genotypes; None = every architecture of the space
        (needs the space's ``all_genotypes``). Duplicates are scored once.
      chunk: architectures per part file; a killed run loses at most the chunks in flight.
      batch_id: identity of the batch in the store; default :func:`batch_fingerprint`.
      seed: the int recorded for ``key``; required when ``key`` is a key, defaults to
        ``key`` when it is an int.
      workers: with ``backend="processes"``, worker processes (CPU; 1 scores in this
        process); with ``backend="ray"``, Ray actors. Proxies registered by the user are
        registered in the workers too; ones defined in ``__main__`` (a notebook) cannot
        travel there and are refused with ``workers > 1`` or Ray.
      backend: ``"processes"`` (this process, or ``workers`` spawned processes; the
        parent writes every part), ``"devices"`` (one scorer per ``jax.local_devices()``
        in this process, a thread each; :mod:`zcjax.local_devices`) or ``"ray"``
        (``workers`` Ray actors, each compiling once and writing its own parts;
        :mod:`zcjax.ray_backend`).
      ray_address: the cluster for ``backend="ray"`` (``ray.init``'s ``address``; None:
        ``$RAY_ADDRESS``, else a local cluster for this call, unless Ray is initialised).
      ray_actor_options: resources of each Ray actor (default ``{"num_cpus": 1}``; e.g.
        ``{"num_gpus": 1}`` for one GPU per worker).
      cache_dir: persistent compilation cache directory; None (default) = the per-user
        one (``$ZCJAX_CACHE_DIR``, else ``~/.cache/zcjax/jax``; :mod:`zcjax.cache`),
        False = no cache. A cache turns on JAX's cache for this whole process.
      progress: show a tqdm progress bar (architectures per second, ETA).
      **scorer_options: passed to :func:`zcjax.make_scorer`: ``config``, ``num_classes``,
        ``image_size``, ``init_draw`` and the proxies' options
        (:func:`zcjax.proxies.options_read`). Each row's ``settings`` column records the
        network config, ``init_draw`` and the options its proxy reads
        (:func:`run_settings`), part of its run identity.

    Returns:
      A :class:`Summary`.

    Raises:
      ValueError, KeyError: an unknown space, proxy or option; a malformed architecture,
        batch, key or argument; ``out`` a file or a directory of foreign Parquet files.
    """
    started = time.perf_counter()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "ray":
        ray_backend.import_ray()  # says how to install it, before anything compiles
    if backend == "devices" and workers != 1:
        raise ValueError(f"backend='devices' uses one scorer per local device "
                         f"({len(jax.local_devices())} here); leave workers at 1, got {workers}")
    run = prepare_run(space, proxies, batch, key=key, seed=seed, dataset=dataset,
                      batch_id=batch_id, workers=workers, scorer_options=scorer_options,
                      portable=workers > 1 or backend == "ray")
    chunk = _positive_int("chunk", chunk)
    cache_dir = resolve_cache_dir(cache_dir)
    space_def, names, runs = run.space, run.proxies, run.identities
    genotypes, arch_names = _architectures(space_def, archs)
    stored = store.stored_pairs(out, runs)
    missing = [[name for name in names if (arch, name) not in stored] for arch in arch_names]
    todo = [index for index, wanted in enumerate(missing) if wanted]
    rows_skipped = len(arch_names) * len(names) - sum(map(len, missing))

    def summary(parts=(), rows_written=0, non_finite=0, compile_seconds=0.0):
        return Summary(os.fspath(out), len(arch_names), len(todo), rows_written, rows_skipped,
                       non_finite, tuple(map(str, parts)), time.perf_counter() - started,
                       compile_seconds)

    if not todo:
        return summary()
    # Only the proxies some architecture still lacks (e.g. just the one added to a run).
    needed = tuple(name for name in names if any(name in missing[i] for i in todo))
    if cache_dir is not None:
        use_compilation_cache(cache_dir)

    todo = np.asarray(todo)
    indices = _genotype_indices(space_def, genotypes[todo])
    chunks = [todo[start:start + chunk] for start in range(0, len(todo), chunk)]
    run_token = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    spec = run.worker_spec(needed, cache_dir)
    parts, rows_written, non_finite = [], 0, 0
    bar = tqdm(total=len(todo), unit="arch", desc=f"{space} {','.join(needed)}",
               disable=not progress, dynamic_ncols=True)
    position = {arch: i for i, arch in enumerate(todo.tolist())}

    tasks = [ChunkTask(store.new_part_name(run_token, number), genotypes[members],
                                   tuple(arch_names[m] for m in members),
                                   tuple(indices[position[m]] for m in members),
                                   tuple(tuple(missing[m]) for m in members))
             for number, members in enumerate(chunks)]
    writer = store.StoreWriter(out)

    def record(part, written, non_finite_rows):
        nonlocal rows_written, non_finite
        if part is not None:
            parts.append(part)
            rows_written += written
            non_finite += non_finite_rows

    def finish(task, values, seconds):
        # Another writer of this store may have stored some of these rows meanwhile.
        record(*write_chunk(writer, runs, needed, task, values, seconds))

    def finished_elsewhere(task, result):
        record(result.part, result.rows_written, result.non_finite)
        bar.update(len(task.archs))

    try:
        if backend == "ray":
            compile_seconds = ray_backend.run_on_ray(
                spec, os.fspath(out), runs, tasks, workers=workers, address=ray_address,
                actor_options=ray_actor_options, on_done=finished_elsewhere)
        elif backend == "devices":
            compile_seconds = local_devices.run_on_devices(
                lambda device: ChunkScorer(spec, device), tasks, finish, bar)
        elif workers == 1:
            scorer = ChunkScorer(spec)
            for task in tasks:
                values, seconds = scorer(task.genotypes, on_each=lambda: bar.update(1))
                finish(task, values, seconds)
            compile_seconds = scorer.compile_seconds
        else:
            compile_seconds = _run_workers(spec, tasks, min(workers, len(tasks)), finish, bar)
    finally:
        bar.close()
    return summary(parts, rows_written, non_finite, compile_seconds)


# ---------------------------------------------------------------------------
# A run: validated arguments and the run identity of each proxy
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Run:
    """The validated arguments of one scoring run (see :func:`prepare_run`).

    Attributes:
      space: the search space.
      proxies: the proxy names, in request order.
      config, options: the network config and the proxies' validated options.
      images, labels: the batch, float32 NHWC and int32.
      key: the initialisation key; seed: the int recorded for it.
      identities: proxy name -> the :class:`zcjax.store.RunIdentity` of its rows.
      user_proxies: user passes and proxies worker processes must register.
    """

    space: Any
    proxies: tuple[str, ...]
    config: Any
    options: dict[str, Any]
    images: np.ndarray
    labels: np.ndarray
    key: jax.Array
    seed: int
    identities: Mapping[str, store.RunIdentity]
    user_proxies: tuple = ()

    def worker_spec(self, proxies: Sequence[str], cache_dir) -> _WorkerSpec:
        """What a (worker) process needs to build the scorer of ``proxies``."""
        return _WorkerSpec(self.space.name, tuple(proxies), self.config, self.options,
                           self.images, self.labels, *_portable_key(self.key),
                           None if cache_dir is None else os.fspath(cache_dir),
                           self.user_proxies)


def prepare_run(space, proxies, batch, *, key, seed=None, dataset: str, batch_id=None,
                workers: int = 1, scorer_options: Mapping[str, Any] | None = None,
                portable: bool | None = None) -> Run:
    """Validate the arguments of a scoring run and build each proxy's run identity.

    The arguments are those of :func:`score_space`; everything is checked here, before
    anything compiles. ``portable``: the scorer is built in other processes, so user
    proxies must be importable there (default: ``workers > 1``).

    Raises:
      ValueError, KeyError, TypeError: as :func:`score_space`.
    """
    space_def = api.get_space(space)
    resolved = registry.resolve(proxies)
    names = tuple(proxy.name for proxy in resolved)
    key, seed = _key_and_seed(key, seed)
    workers = _positive_int("workers", workers)
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a non-empty name, got {dataset!r}")
    config, options, settings = run_settings(space_def, dict(scorer_options or {}), resolved)
    if portable is None:
        portable = workers > 1
    user_proxies = _portable_user_proxies(resolved) if portable else ()
    images, labels = data.validate_batch(batch, image_size=config.image_size,
                                         num_classes=config.num_classes)
    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
    if batch_id is None:
        batch_id = batch_fingerprint(images, labels)
    elif not isinstance(batch_id, str) or not batch_id:
        raise ValueError(f"batch_id must be a non-empty string, got {batch_id!r}")
    identities = {name: store.RunIdentity(space_def.name, dataset, batch_id, seed,
                                          settings[name]) for name in names}
    return Run(space_def, names, config, options, images, labels, key, seed, identities,
               user_proxies)


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------
def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _key_and_seed(key, seed) -> tuple[jax.Array, int]:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if seed is not None and int(seed) != int(key):
            raise ValueError(f"key={int(key)} and seed={int(seed)} disagree; give one int")
        return jax.random.key(int(key)), int(key)
    if not isinstance(key, (jax.Array, np.ndarray)):
        raise ValueError(f"key must be an int seed or a jax.random key, got {type(key).__name__}")
    if seed is None:
        raise ValueError("with a jax.random key, give seed= too: the int that labels this key "
                         "in the results store (or pass key=<int seed>)")
    return key, int(seed)


def run_settings(space, scorer_options: dict[str, Any], proxies) -> tuple[Any, dict, dict]:
    """The network config, the validated proxy options, and each proxy's ``settings``.

    A proxy's settings (:func:`zcjax.settings.encode`) hold the network config, the
    initialisation's ``init_draw`` and only the options that proxy reads, so an option
    added for one proxy leaves every other proxy's stored rows resumable. Other writers of the store (bench/gpu_check.py) use it so their
    rows resume and correlate like score_space's own.

    Args:
      space: a :class:`zcjax.SearchSpace` or its name.
      scorer_options: ``config``, ``num_classes``, ``image_size``, ``init_draw`` and proxy
        options.
      proxies: names or :class:`zcjax.proxies.Proxy` objects (as for ``registry.resolve``).

    Returns:
      ``(config, options, {proxy name: settings JSON})``; ``options`` (with ``init_draw``)
      are :func:`zcjax.make_scorer`'s keyword arguments besides ``config``.

    Raises:
      TypeError: an option none of the proxies reads. ValueError: a bad option value, or
        ``per_layer`` (the store holds one score per proxy).
    """
    space = api.get_space(space)
    resolved = tuple(registry.resolve(proxies) if not _are_proxies(proxies) else proxies)
    options = dict(scorer_options)
    if "per_layer" in options:
        raise ValueError("score_space stores one score per proxy; per_layer is not supported")
    config = options.pop("config", None)
    config = space.Config() if config is None else config
    for name in ("num_classes", "image_size"):
        value = options.pop(name, None)
        if value is not None:
            config = dataclasses.replace(config, **{name: int(value)})
    init_draw = initialisation.check_init_draw(
        options.pop("init_draw", initialisation.DEFAULT_INIT_DRAW))
    validated = registry.validate_options(resolved, options)
    settings = {proxy.name: settings_lib.encode(config, registry.proxy_settings(proxy, validated),
                                                init_draw)
                for proxy in resolved}
    return config, {**options, "init_draw": init_draw}, settings


def _are_proxies(proxies) -> bool:
    return isinstance(proxies, (tuple, list)) and all(
        isinstance(p, registry.Proxy) for p in proxies) and len(proxies) > 0


def _portable_user_proxies(resolved) -> tuple:
    """The user-registered proxies (and passes) worker processes must register too.

    Spawned workers import zcjax afresh, so a proxy registered in this process exists there
    only if it is sent along; its functions travel by reference (pickle), which fails for
    functions defined in ``__main__`` (a notebook or a script).
    """
    user = tuple(proxy for proxy in resolved if not registry.is_builtin(proxy.name))
    passes = registry.user_passes(user)
    for item in user + passes:
        module = getattr(item.fn, "__module__", None)
        try:
            pickle.dumps(item)
        except Exception as error:  # pickling raises many types; all mean "cannot travel"
            raise ValueError(f"{type(item).__name__.lower()} {item.name!r} cannot be sent to "
                             f"worker processes ({error}); use workers=1") from None
        if module in (None, "__main__"):
            raise ValueError(
                f"{type(item).__name__.lower()} {item.name!r} was registered from __main__ "
                "(a notebook or a script), which worker processes cannot import: define it "
                "in an importable module, or use workers=1")
    return passes + user


def _architectures(space, archs) -> tuple[np.ndarray, list[str]]:
    """Distinct genotypes (first occurrence kept) and their canonical arch strings."""
    if archs is None:
        if not space.offers("all_genotypes"):
            raise ValueError(f"space {space.name!r} does not enumerate its architectures "
                             "(no all_genotypes); pass archs=")
        genotypes = np.asarray(space.all_genotypes(), np.int32)
    else:
        if isinstance(archs, (str, bytes)):
            raise ValueError("archs must be a sequence of arch strings or genotypes, not one "
                             "string")
        checked = []
        for position, arch in enumerate(archs):
            try:
                checked.append(space.check_arch(arch))
            except ValueError as error:
                raise ValueError(f"archs[{position}]: {error}") from None
        if not checked:
            raise ValueError("archs is empty; pass None to score the whole space")
        genotypes = np.stack(checked).astype(np.int32)
    strings = space.arch_strings(genotypes)
    seen: dict[str, int] = {}
    for index, arch in enumerate(strings):
        seen.setdefault(arch, index)
    first = list(seen.values())
    return genotypes[first], [strings[i] for i in first]


def _genotype_indices(space, genotypes: np.ndarray) -> list[int | None]:
    """Each genotype's row in the space's ``all_genotypes()`` (None if not enumerable)."""
    if not space.offers("all_genotypes"):
        return [None] * len(genotypes)
    table = {row.tobytes(): index for index, row in
             enumerate(np.ascontiguousarray(space.all_genotypes(), np.int32))}
    return [table.get(np.ascontiguousarray(g, np.int32).tobytes()) for g in genotypes]


def _portable_key(key) -> tuple[np.ndarray, str | None]:
    """A key as (raw data, implementation name) that pickles into worker processes."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key)), str(jax.random.key_impl(key))
    return np.asarray(key), None


def score_rows(runs: Mapping[str, store.RunIdentity], proxies: Sequence[str],
               archs: Sequence[str], indices: Sequence[int | None], values, seconds,
               wanted: Sequence[Collection[str]] | None = None) -> dict[str, Any]:
    """Store columns for scored architectures (:func:`zcjax.store.write_part`'s ``rows``).

    Args:
      runs: each proxy's run identity.
      proxies: the proxies, in the column order of ``values``.
      archs: canonical arch strings, one per row of ``values``.
      indices: each arch's ``genotype_index`` (None where the space does not enumerate).
      values: (archs, proxies) scores; non-finite values are stored as they are.
      seconds: per arch, the wall time of its scoring call.
      wanted: per arch, the proxies to store (default all): the pairs not yet stored.
    """
    rows = {column: [] for column in store.SCHEMA.names}
    for row, (arch, index) in enumerate(zip(archs, indices)):
        for column, name in enumerate(proxies):
            if wanted is not None and name not in wanted[row]:
                continue
            for field, value in runs[name].row().items():
                rows[field].append(value)
            rows["arch"].append(arch)
            rows["genotype_index"].append(index)
            rows["proxy"].append(name)
            rows["value"].append(float(values[row][column]))
            rows["seconds"].append(float(seconds[row]))
    rows["value"] = np.asarray(rows["value"], np.float64)
    return rows


# ---------------------------------------------------------------------------
# Scoring, in this process or in workers
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _WorkerSpec:
    """Everything a process needs to build the scorer (picklable)."""

    space: str
    proxies: tuple[str, ...]
    config: Any
    options: dict[str, Any]
    images: np.ndarray
    labels: np.ndarray
    key_data: np.ndarray
    key_impl: str | None
    cache_dir: str | None
    user_registered: tuple = ()  # user passes and proxies, registered in each worker


@dataclasses.dataclass(frozen=True)
class ChunkTask:
    """One chunk: its genotypes and what its rows are (picklable).

    Attributes:
      part: the part file name the chunk is written as.
      genotypes: (n, ...) int32 genotypes.
      archs: their canonical arch strings.
      indices: their ``genotype_index`` (None where the space does not enumerate).
      wanted: per architecture, the proxies not yet stored.
    """

    part: str
    genotypes: np.ndarray
    archs: tuple[str, ...]
    indices: tuple[int | None, ...]
    wanted: tuple[tuple[str, ...], ...]


def write_chunk(writer: store.StoreWriter, runs: Mapping[str, store.RunIdentity],
                proxies: Sequence[str], task: ChunkTask, values, seconds) -> tuple:
    """Store a scored chunk's rows not yet stored; (part path or None, rows, non-finite)."""
    rows = score_rows(runs, proxies, task.archs, task.indices, values, seconds, task.wanted)
    part, written = writer.append(task.part, rows)
    non_finite = int(np.sum(~np.isfinite(rows["value"][written])))
    return part, len(written), non_finite


class ChunkScorer:
    """Scores chunks of genotypes with one compiled scorer, timing each architecture."""

    def __init__(self, spec: _WorkerSpec, device: jax.Device | None = None):
        self.scorer = api.make_scorer(spec.space, spec.proxies, config=spec.config,
                                      **spec.options)
        key = (jnp.asarray(spec.key_data) if spec.key_impl is None
               else jax.random.wrap_key_data(spec.key_data, impl=spec.key_impl))
        # Inputs committed to ``device`` make every call run there (default: JAX's).
        self.batch, self.key = jax.device_put(
            ((jnp.asarray(spec.images), jnp.asarray(spec.labels)), key), device)
        self.compile_seconds: float | None = None

    def __call__(self, genotypes: np.ndarray, on_each: Callable[[], Any] | None = None):
        """(values (n, P) float64, seconds (n,)) of a chunk, proxies in spec order."""
        if self.compile_seconds is None:
            # Compile outside the timed calls, so seconds measure scoring only.
            started = time.perf_counter()
            self.scorer(genotypes[0], self.batch, self.key)
            self.compile_seconds = time.perf_counter() - started
        values = np.empty((len(genotypes), len(self.scorer.proxies)), np.float64)
        seconds = np.empty(len(genotypes), np.float64)
        for row, genotype in enumerate(genotypes):
            started = time.perf_counter()
            scores = self.scorer(genotype, self.batch, self.key)
            seconds[row] = time.perf_counter() - started
            values[row] = [float(scores[name]) for name in self.scorer.proxies]
            if on_each is not None:
                on_each()
        return values, seconds


_WORKER: ChunkScorer | None = None


def prepare_worker_process(spec: _WorkerSpec) -> None:
    """Set up a worker process (spawned, or a Ray actor's) before it builds its scorer."""
    # Ctrl-C reaches the whole process group: the parent alone handles it (and stops
    # the workers), so workers print no traceback of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    registry.register_all(spec.user_registered)
    if spec.cache_dir is not None:
        use_compilation_cache(spec.cache_dir)


def _exit_when_orphaned(parent: int, every: float = 0.5) -> None:
    """Exit once ``parent`` is gone (killed with -9, it stops no worker): its parts are
    written by it alone, so what an orphan computes would be lost CPU time."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _init_worker(spec: _WorkerSpec, parent: int) -> None:
    global _WORKER
    # ``parent`` is the pid the parent passed: a worker still starting up when its parent
    # was killed sees another parent already, and exits at once.
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True,
                     name="zcjax-orphan-watch").start()
    prepare_worker_process(spec)
    _WORKER = ChunkScorer(spec)


def _score_in_worker(genotypes: np.ndarray):
    values, seconds = _WORKER(genotypes)
    return values, seconds, _WORKER.compile_seconds


def _run_workers(spec, tasks, workers, finish, bar) -> float:
    """Score chunks in ``workers`` spawned processes; the parent writes every part."""
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
        initargs=(spec, os.getpid()))
    compile_seconds = 0.0
    try:
        futures = {pool.submit(_score_in_worker, task.genotypes): task for task in tasks}
        for future in concurrent.futures.as_completed(futures):
            values, seconds, compiled = future.result()
            task = futures[future]
            finish(task, values, seconds)
            compile_seconds = max(compile_seconds, compiled)
            bar.update(len(task.archs))
    except BaseException:
        # An error or an interrupt: drop the queued chunks and stop the running ones
        # (their architectures are not stored; a rerun scores them).
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)
    return compile_seconds


def _stop_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    # Before 3.14 the executor has no public way to stop a running task; its processes
    # are read before shutdown() forgets them.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()


# ---------------------------------------------------------------------------
# On-demand scoring through the store (search)
# ---------------------------------------------------------------------------
class StoredScorer:
    """Scores architectures on demand, each (architecture, proxy) once per run identity.

    A search asks for scores of a few architectures at a time, most of them unknown in
    advance. This scorer answers from the results store where it can (read once, when
    it is made) and scores the rest with one compiled scorer (built on first need),
    writing them to the store in parts of ``chunk`` architectures, so a rerun after a
    kill rescores at most the last ``chunk``. Use it as a context manager, or call
    :meth:`flush`, so that the last partial chunk is written too.

    Args:
      space, proxies, batch, key, out, dataset, batch_id, seed, cache_dir, and
      **scorer_options: as :func:`score_space`.
      chunk: architectures per part file.

    Attributes:
      proxies: the proxy names; the columns of what a call returns.
      scored: architectures this object computed (the rest came from the store).
    """

    def __init__(self, space, proxies, batch, *, key, out: str | os.PathLike, dataset: str,
                 batch_id: str | None = None, seed: int | None = None,
                 chunk: int = DEFAULT_CHUNK, cache_dir: str | os.PathLike | bool | None = None,
                 **scorer_options: Any):
        self.run = prepare_run(space, proxies, batch, key=key, seed=seed, dataset=dataset,
                               batch_id=batch_id, scorer_options=scorer_options)
        self.proxies = self.run.proxies
        self.out = out
        self.chunk = _positive_int("chunk", chunk)
        self.cache_dir = resolve_cache_dir(cache_dir)
        self.scored = 0
        stored = store.stored_values(out, self.run.identities)
        self._values: dict[str, dict[str, float]] = {}
        for arch, proxy, value in stored.itertuples(index=False, name=None):
            self._values.setdefault(arch, {})[proxy] = value
        self._scorer: ChunkScorer | None = None
        # (arch, genotype, values, seconds, which proxies are new) not yet in a part
        self._pending: list[tuple[str, np.ndarray, np.ndarray, float, np.ndarray]] = []
        self._token = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self._parts = 0
        self._writer: store.StoreWriter | None = None

    def __call__(self, archs: Sequence) -> np.ndarray:
        """(len(archs), len(proxies)) float64 scores; non-finite values as they are.

        Raises:
          ValueError: an architecture the space rejects (naming its position).
        """
        genotypes, strings = [], []
        for position, arch in enumerate(archs):
            try:
                genotype = self.run.space.check_arch(arch)
            except ValueError as error:
                raise ValueError(f"archs[{position}]: {error}") from None
            genotypes.append(genotype)
            strings.append(self.run.space.decode(genotype))
        for genotype, arch in zip(genotypes, strings):
            known = self._values.get(arch, {})
            if all(name in known for name in self.proxies):
                continue
            if self._scorer is None:
                if self.cache_dir is not None:
                    use_compilation_cache(self.cache_dir)
                self._scorer = ChunkScorer(self.run.worker_spec(self.proxies, self.cache_dir))
            values, seconds = self._scorer(genotype[None])
            wanted = np.asarray([name not in known for name in self.proxies])
            self._values.setdefault(arch, {}).update(
                (name, float(value)) for name, value in zip(self.proxies, values[0]))
            self._pending.append((arch, genotype, values[0], float(seconds[0]), wanted))
            self.scored += 1
            if len(self._pending) >= self.chunk:
                self.flush()
        return np.asarray([[self._values[arch][name] for name in self.proxies]
                           for arch in strings], np.float64)

    def flush(self) -> None:
        """Write the architectures scored since the last part to the store."""
        if not self._pending:
            return
        if self._writer is None:
            self._writer = store.StoreWriter(self.out)
        archs, genotypes, values, seconds, wanted = zip(*self._pending)
        rows = score_rows(self.run.identities, self.proxies, archs,
                          _genotype_indices(self.run.space, np.stack(genotypes)), values,
                          seconds, [{name for name, w in zip(self.proxies, row) if w}
                                    for row in wanted])
        self._writer.append(store.new_part_name(self._token, self._parts), rows)
        self._parts += 1
        self._pending = []

    def __enter__(self) -> StoredScorer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.flush()
