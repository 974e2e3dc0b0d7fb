"""Grouped vmap (zcjax.grouped): same scores as the sequential compiled scorer."""

import jax
import numpy as np
import pytest

import zcjax
from zcjax import grouped
from zcjax.spaces import nb201

from conftest import TINY

PROXIES = ("tcet_snip", "naswot", "synflow", "grad_norm", "params", "flops")


def test_groups_partition_by_leading_ops():
    genotypes = nb201.sample(jax.random.key(3), 200)
    seen = []
    for shared, members in grouped.groups(genotypes, 2):
        assert (genotypes[members, :2] == shared).all()
        seen.extend(members.tolist())
    assert sorted(seen) == list(range(200))
    firsts = [members[0] for _, members in grouped.groups(genotypes, 2)]
    assert firsts == sorted(firsts)


def test_grouped_scores_equal_sequential(tiny_batch):
    shared_edges = 4
    scorer = zcjax.make_scorer("nb201", PROXIES, config=TINY)
    everything = nb201.all_genotypes()
    # Two groups of different sizes (one padded), out of base-5 order.
    width = 5 ** (6 - shared_edges)
    genotypes = np.concatenate([everything[7 * width:8 * width][::-1],
                                everything[300 * width:300 * width + 2]])
    key = jax.random.key(5)
    scores = grouped.score_grouped(scorer, genotypes, tiny_batch, key, shared_edges)
    grouped.score_grouped(scorer, genotypes[:3], tiny_batch, key, shared_edges)
    # One program for every group (a smaller group is padded to the width).
    assert grouped.grouped_vmap(scorer, shared_edges)._cache_size() == 1
    for row, genotype in enumerate(genotypes):
        alone = scorer(genotype, tiny_batch, key)
        for name in PROXIES:
            np.testing.assert_allclose(scores[name][row], alone[name], rtol=2e-5, atol=1e-6,
                                       err_msg=f"{name} of {nb201.decode(genotype)}")


def test_bad_input_is_one_clear_error(tiny_batch):
    with pytest.raises(ValueError, match="per-edge genotypes.*nb101"):
        grouped.grouped_vmap(zcjax.make_scorer("nb101", ("params",)), 2)
    scorer = zcjax.make_scorer("nb201", ("params",), config=TINY)
    with pytest.raises(ValueError, match=r"shared_edges must be in 1\.\.5"):
        grouped.grouped_vmap(scorer, 6)
    with pytest.raises(ValueError, match="op indices"):
        grouped.score_grouped(scorer, [[0, 1, 2, 3, 4, 9]], tiny_batch, jax.random.key(0), 4)
    images, labels = tiny_batch
    with pytest.raises(ValueError, match="must be 16x16"):
        grouped.score_grouped(scorer, [[0, 1, 2, 3, 4, 0]], (images[:, :8, :8], labels),
                              jax.random.key(0), 4)
