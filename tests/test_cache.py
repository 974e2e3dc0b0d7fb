"""The per-user compilation cache (zcjax.cache): where it lives, how it is turned off, and
that the CLI uses it by default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zcjax import cache

ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|"


def test_the_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.default_cache_dir() == str(tmp_path / "zcjax" / "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.default_cache_dir() == str(tmp_path / "home" / ".cache" / "zcjax" / "jax")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert cache.resolve_cache_dir(None) == str(tmp_path / "mine")
    for off in ("off", "", "0", "None"):
        monkeypatch.setenv(cache.CACHE_DIR_ENV, off)
        assert cache.default_cache_dir() is None and cache.resolve_cache_dir(None) is None
    assert cache.resolve_cache_dir(False) is None
    assert cache.resolve_cache_dir(tmp_path) == str(tmp_path)
    with pytest.raises(ValueError, match="cache_dir must be a directory"):
        cache.resolve_cache_dir(True)


def zcjax_score(tmp_path, *options):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    env.pop(cache.CACHE_DIR_ENV)  # conftest turns the cache off for the tests
    return subprocess.run([sys.executable, "-m", "zcjax.cli", "score", ARCH, "--proxies",
                           "params,naswot", "--batch-size", "4", "--no-progress", *options],
                          capture_output=True, text=True, env=env, timeout=600)


def test_the_cli_compiles_into_the_per_user_cache_by_default(tmp_path):
    folder = tmp_path / "xdg" / "zcjax" / "jax"
    first = zcjax_score(tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"compilation cache {folder} (--no-cache: none)" in first.stderr
    entries = set(os.listdir(folder))
    assert entries  # the compiled scorer
    again = zcjax_score(tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout  # the same scores, loaded instead of compiled
    assert set(os.listdir(folder)) == entries  # nothing new to compile


def test_no_cache_keeps_nothing(tmp_path):
    result = zcjax_score(tmp_path, "--no-cache")
    assert result.returncode == 0, result.stderr
    assert "no compilation cache" in result.stderr
    assert not (tmp_path / "xdg").exists()
