"""Many seeds of one search, each stored once: a killed experiment resumes where it was.

Each finished seed's :class:`~zcjax.search.history.History` is written (atomically) to
``<folder>/seed-<seed>.json``; a rerun reads it back instead of searching again, so the
folder must name everything the search depends on (algorithm, hyperparameters, proxies,
benchmark and dataset: :func:`label`). Zero-cost
scores are resumed separately, by the results store the score source writes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm.auto import tqdm

from zcjax.search.history import History, read_history, write_history


def run_seeds(search: Callable[[int], History], seeds: Iterable[int], *,
              folder: str | os.PathLike | None = None, desc: str = "",
              progress: bool = False) -> list[History]:
    """``search(seed)`` for every seed, each stored in ``folder`` once it finishes.

    Args:
      search: one seeded search, e.g. ``lambda seed: evolution(space, oracle,
        key=seed, queries=50)``.
      seeds: the int seeds.
      folder: where the seeds' histories go (``seed-<seed>.json``); it must name everything
        the search depends on (e.g. ``out/histories/<label>``, :func:`label`), since a
        stored seed is read back instead of searched again. None keeps nothing.
      desc, progress: a progress bar over seeds.
    """
    seeds = [int(seed) for seed in seeds]
    histories = []
    for seed in tqdm(seeds, desc=desc, unit="seed", disable=not progress, leave=False):
        path = None if folder is None else Path(folder) / f"seed-{seed:05d}.json"
        if path is not None and path.exists():
            histories.append(read_history(path))
            continue
        history = search(seed)
        if path is not None:
            write_history(path, history)
        histories.append(history)
    return histories


def folder_name(text: str) -> str:
    """``text`` as one safe folder name."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)


def identity_tag(identities) -> str:
    """8 hex digits naming the run identities of a search's zero-cost scores
    (``{proxy: zcjax.store.RunIdentity}``)."""
    text = repr(sorted((name, identity.row()) for name, identity in identities.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def label(algorithm: str, **settings) -> str:
    """An experiment label from its settings, e.g. ``evolution,move=10,queries=50``."""
    parts = [f"{name}={value}" for name, value in sorted(settings.items())
             if value not in (None, 0, "", ())]
    return ",".join([algorithm, *parts])
