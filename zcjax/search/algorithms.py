"""Search algorithms: a seeded key in, a :class:`~zcjax.search.history.History` out.

- :func:`training_free`: rank N architectures by zero-cost scores, pick the best; no
  accuracy is read (Mellor et al., NASWOT).
- :func:`random_search`: query architectures in random order; with ``warmup=W``, score
  W of them for free first and query those best-ranked first (Abdelfattah et al.).
- :func:`evolution`: regularised (aging) evolution (Real et al.); ``warmup=W`` draws the
  initial population as the best-ranked of W (zero-cost warm-up, and NASWOT's AREA),
  ``move=M`` mutates the parent M times, scores the children for free and queries only
  the best-ranked (zero-cost move proposal).

Every draw of a search comes from one NumPy generator seeded by ``key``, so a seeded
search is reproducible bit for bit; scores come from a score source whose values are a
function of the architecture (:class:`zcjax.bulk.StoredScorer` reads them back from the
results store, so a resumed search sees the same numbers).

The universe a search draws from is the architectures the oracle has accuracies for
(the whole space for NB201's table); mutations that leave it are drawn again.

References:
  Mellor et al., "Neural Architecture Search without Training", ICML 2021.
  Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021.
  Real et al., "Regularized Evolution for Image Classifier Architecture Search", AAAI 2019.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Callable, Sequence

import jax
import numpy as np

from zcjax.search import ranking
from zcjax.search.history import History
from zcjax.search.oracle import Oracle, Queries
from zcjax.space import SearchSpace, get_space

ALGORITHMS = ("training_free", "random", "evolution")
ScoreSource = Callable[[Sequence[str]], np.ndarray]
# Mutations drawn for one child before concluding none lands in the oracle's universe.
MUTATION_TRIES = 1000
# Consecutive evolution steps that find only already-queried children before giving up.
STALL_STEPS = 1000


def generator(key) -> np.random.Generator:
    """The search's NumPy generator from an int seed or a ``jax.random`` key."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return np.random.default_rng(int(key))
    if isinstance(key, jax.Array) and jax.numpy.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    raise TypeError(f"key must be an int seed or a jax.random key, got {type(key).__name__}")


def _seed_of(key) -> int:
    if isinstance(key, (int, np.integer)):
        return int(key)
    return int(np.asarray(jax.random.key_data(key)).ravel()[-1])


def _count(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class _Scored:
    """A score source that counts the distinct architectures read and their non-finite ones."""

    def __init__(self, scores: ScoreSource | None, combine: ranking.Combine):
        self.scores, self.combine = scores, combine
        self.seen: set[str] = set()
        self.non_finite: set[str] = set()

    def best_first(self, archs: Sequence[str]) -> list[str]:
        values = np.asarray(self.scores(list(archs)), np.float64)
        if values.ndim != 2 or len(values) != len(archs):
            raise ValueError(f"a score source must return (archs, proxies) values; got shape "
                             f"{values.shape} for {len(archs)} architectures")
        self.seen.update(archs)
        self.non_finite.update(a for a, row in zip(archs, values) if not np.isfinite(row).all())
        return [archs[i] for i in ranking.best_first(values, self.combine)]


def _universe(space: SearchSpace, oracle: Oracle | None) -> np.ndarray | None:
    if oracle is not None:
        return np.asarray(oracle.archs, object)
    if space.offers("all_genotypes"):
        return np.asarray(space.arch_strings(space.all_genotypes()), object)
    return None


def _draw(space: SearchSpace, universe, rng: np.random.Generator, n: int | None) -> list[str]:
    """``n`` distinct architectures drawn uniformly (all of the universe for None)."""
    if universe is not None:
        # The first n of one permutation: for a key, every n draws a prefix of the same
        # order, so a warm-up pool and the random search it seeds share their draws.
        return list(universe[rng.permutation(len(universe))[:n]])
    if n is None:
        raise ValueError(f"space {space.name!r} does not enumerate its architectures; give n")
    key = jax.random.key(int(rng.integers(2 ** 31)))
    return space.arch_strings(space.sample(key, n))


def _mutant(space: SearchSpace, arch: str, rng: np.random.Generator,
            oracle: Oracle) -> str:
    genotype = space.check_arch(arch)
    for _ in range(MUTATION_TRIES):
        child = space.decode(space.mutate(genotype, rng))
        if child in oracle:
            return child
    raise ValueError(f"{MUTATION_TRIES} mutations of {arch!r} found no architecture that "
                     f"benchmark {oracle.benchmark!r} has an accuracy for (it covers "
                     f"{len(oracle.archs)} of the space's architectures); use random or "
                     "training_free search with this benchmark")


def _finish(algorithm, key, settings, queries: Queries | None, scored: _Scored, pick: str,
            oracle: Oracle | None, top=()) -> History:
    if scored.scores is not None and pick in scored.non_finite:
        warnings.warn(f"{algorithm} search picked {pick!r}, whose zero-cost score is "
                      "non-finite: every candidate's was", RuntimeWarning, stacklevel=3)
    queried = tuple(queries.archs) if queries is not None else ()
    return History(
        algorithm=algorithm, seed=_seed_of(key), settings=settings, queried=queried,
        accuracies=tuple(queries.known[a] for a in queried),
        reported=tuple(oracle.reported(a) for a in queried),
        scored=len(scored.seen), non_finite=len(scored.non_finite), pick=pick,
        pick_reported=oracle.reported(pick) if oracle is not None else float("nan"),
        top=tuple(top))


def _check_scores(scores, combine, *, needed: bool, what: str):
    if needed and scores is None:
        raise ValueError(f"{what} needs zero-cost scores: pass scores=")
    if scores is not None and not callable(scores):
        raise TypeError(f"scores must be a score source (archs -> values), got "
                        f"{type(scores).__name__}")
    if not callable(combine):
        raise TypeError(f"combine must be a ranking function, got {type(combine).__name__}")


def _settings(scores, **hyperparameters) -> dict:
    proxies = list(getattr(scores, "proxies", ())) if scores is not None else []
    return dict(hyperparameters, proxies=proxies)


def training_free(space: str | SearchSpace, scores: ScoreSource, *, key, n: int | None = None,
                  top_k: int = 1, oracle: Oracle | None = None,
                  combine: ranking.Combine = ranking.rank_average) -> History:
    """Score ``n`` random architectures (None: all of them) and pick the best-ranked.

    No accuracy is queried; with an ``oracle`` the pick's reported accuracy is looked up
    for the history (and the draw is from the oracle's architectures).

    Raises:
      ValueError: ``n`` or ``top_k`` not a positive int, ``top_k > n``.
    """
    space = get_space(space)
    _check_scores(scores, combine, needed=True, what="training-free search")
    if n is not None:
        n = _count("n", n)
    top_k = _count("top_k", top_k)
    if n is not None and top_k > n:
        raise ValueError(f"top_k={top_k} exceeds n={n}")
    rng = generator(key)
    scored = _Scored(scores, combine)
    ranked = scored.best_first(_draw(space, _universe(space, oracle), rng, n))
    return _finish("training_free", key, _settings(scores, n=n, top_k=top_k), None, scored,
                   ranked[0], oracle, ranked[:top_k])


def random_search(space: str | SearchSpace, oracle: Oracle, *, key, queries: int,
                  scores: ScoreSource | None = None, warmup: int = 0,
                  combine: ranking.Combine = ranking.rank_average) -> History:
    """Query ``queries`` distinct random architectures; the best queried is the pick.

    With ``warmup=W``: W random architectures are scored for free and queried best-ranked
    first; later queries are random architectures outside that pool.

    Raises:
      ValueError: ``queries`` not a positive int, a negative ``warmup``, a warm-up
        without ``scores``.
    """
    space = get_space(space)
    queries = _count("queries", queries)
    warmup = _count("warmup", warmup, minimum=0)
    _check_scores(scores, combine, needed=warmup > 0, what="a zero-cost warm-up")
    rng = generator(key)
    scored = _Scored(scores, combine)
    order = _draw(space, _universe(space, oracle), rng, None)
    if warmup:
        order = scored.best_first(order[:warmup]) + order[warmup:]
    paid = Queries(oracle, queries)
    for arch in order[:queries]:
        paid.ask(arch)
    pick = max(paid.archs, key=lambda a: paid.known[a])
    return _finish("random", key, _settings(scores, queries=queries, warmup=warmup), paid,
                   scored, pick, oracle)


def evolution(space: str | SearchSpace, oracle: Oracle, *, key, queries: int,
              population: int = 10, sample_size: int = 3, scores: ScoreSource | None = None,
              warmup: int = 0, move: int = 0,
              combine: ranking.Combine = ranking.rank_average) -> History:
    """Regularised evolution: tournament of ``sample_size``, mutate the winner, age out.

    The initial ``population`` architectures are random (or, with ``warmup=W >=
    population``, the best-ranked of W random ones: zero-cost warm-up / AREA). Each step
    samples ``sample_size`` members without replacement, mutates the most accurate
    (``move=M``: M mutants, scored for free, the best-ranked one not yet queried is
    kept), queries the child, appends it and removes the oldest member. A child already
    queried costs nothing; after :data:`STALL_STEPS` such steps in a row the search
    stops short of its budget (the history says how many queries it made).

    Defaults: population 10 and tournament 3, the R-EA settings of NATS-Bench's
    baselines.

    Raises:
      ValueError: a non-positive budget, population or tournament; ``queries <
        population``; ``sample_size > population``; ``0 < warmup < population``;
        a warm-up or move without ``scores``; a space that cannot mutate.
    """
    space = get_space(space)
    space.require("mutate")  # checked before anything runs; _mutant calls it
    queries = _count("queries", queries)
    population = _count("population", population)
    sample_size = _count("sample_size", sample_size)
    warmup = _count("warmup", warmup, minimum=0)
    move = _count("move", move, minimum=0)
    if queries < population:
        raise ValueError(f"a query budget of {queries} cannot fill the initial population "
                         f"of {population}; give queries >= population")
    if sample_size > population:
        raise ValueError(f"sample_size={sample_size} exceeds population={population}")
    if 0 < warmup < population:
        raise ValueError(f"a warm-up pool of {warmup} cannot supply the initial population "
                         f"of {population}; give warmup >= population (or 0)")
    _check_scores(scores, combine, needed=warmup > 0 or move > 0,
                  what="a zero-cost warm-up or move proposal")
    rng = generator(key)
    scored = _Scored(scores, combine)
    universe = _universe(space, oracle)
    initial = (scored.best_first(_draw(space, universe, rng, warmup))[:population] if warmup
               else _draw(space, universe, rng, population))
    paid = Queries(oracle, queries)
    alive = collections.deque((arch, paid.ask(arch)) for arch in initial)
    stalls = 0
    while paid.left > 0 and stalls < STALL_STEPS:
        members = rng.choice(len(alive), sample_size, replace=False)
        parent = alive[max(members, key=lambda m: (alive[m][1], -m))][0]
        if move:
            children = [_mutant(space, parent, rng, oracle) for _ in range(move)]
            ranked = scored.best_first(list(dict.fromkeys(children)))
            child = next((a for a in ranked if a not in paid.known), ranked[0])
        else:
            child = _mutant(space, parent, rng, oracle)
        stalls = stalls + 1 if child in paid.known else 0
        alive.append((child, paid.ask(child)))
        alive.popleft()
    pick = max(paid.archs, key=lambda a: paid.known[a])
    return _finish("evolution", key,
                   _settings(scores, queries=queries, population=population,
                             sample_size=sample_size, warmup=warmup, move=move),
                   paid, scored, pick, oracle)
