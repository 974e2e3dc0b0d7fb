"""JAX's persistent compilation cache: where zcjax keeps it, and turning it on.

Compiling a scorer takes seconds to minutes on a CPU; with the cache a second run loads
the compiled program instead. ``score_space``, ``StoredScorer`` and the CLI use it by
default, in a per-user folder: ``$ZCJAX_CACHE_DIR`` when set (``off`` turns the cache
off), else ``$XDG_CACHE_HOME/zcjax/jax`` or ``~/.cache/zcjax/jax``. ``zcjax.score`` and
``make_scorer`` leave JAX's configuration alone; call :func:`use_compilation_cache` to
give a notebook the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

CACHE_DIR_ENV = "ZCJAX_CACHE_DIR"
_OFF = ("", "0", "off", "none", "false", "no")


def default_cache_dir() -> str | None:
    """The per-user cache folder, or None when ``$ZCJAX_CACHE_DIR`` turns the cache off."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured is not None:
        return None if configured.strip().lower() in _OFF else configured
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return os.fspath(Path(base) / "zcjax" / "jax")


def resolve_cache_dir(cache_dir: str | os.PathLike | bool | None) -> str | None:
    """A ``cache_dir`` argument: None = :func:`default_cache_dir`, False = no cache."""
    if cache_dir is None:
        return default_cache_dir()
    if cache_dir is False:
        return None
    if cache_dir is True or not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"cache_dir must be a directory, None (the default cache) or False "
                         f"(no cache), got {cache_dir!r}")
    return os.fspath(cache_dir)


def use_compilation_cache(cache_dir: str | os.PathLike) -> None:
    """Turn on JAX's persistent compilation cache in ``cache_dir`` for this process.

    This changes JAX's global configuration (``jax_compilation_cache_dir`` and
    ``jax_persistent_cache_min_compile_time_secs=0``, so that every compilation is cached).
    """
    path = os.fspath(cache_dir)
    os.makedirs(path, exist_ok=True)
    if jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
        # JAX decides once per process whether the cache is used; start that decision over
        # so a directory set after earlier compilations still takes effect.
        compilation_cache.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
