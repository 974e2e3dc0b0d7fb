"""zcjax.score / make_scorer / the CLI: what a notebook user meets, including bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zcjax
from conftest import ARCHS, TINY
from zcjax import cli, proxies
from zcjax.spaces import nb201


@pytest.fixture(scope="module")
def scorer():
    return zcjax.make_scorer("nb201", ["snip", "naswot"], config=TINY)


def test_unchecked_enters_x64_itself(scorer, tiny_batch):
    genotype = nb201.encode(ARCHS[0])
    checked = scorer(genotype, tiny_batch, jax.random.key(0))
    images, labels = zcjax.data.validate_batch(tiny_batch)
    raw = scorer.unchecked(jnp.asarray(genotype, jnp.int32), images, labels, jax.random.key(0))
    assert raw["naswot"].dtype == jnp.float64  # float64 made inside, kept outside
    assert {name: np.asarray(value) for name, value in raw.items()} == checked
    assert scorer.compiled._cache_size() == 1  # the same program as the checked call


def test_scorer_takes_genotypes_and_keeps_order(scorer, tiny_batch):
    out = scorer(nb201.encode(ARCHS[0]), tiny_batch, jax.random.key(0))
    assert set(out) == {"snip", "naswot"}
    assert scorer.proxies == ("snip", "naswot")
    with pytest.raises(TypeError, match="encode the arch string"):
        scorer(ARCHS[0], tiny_batch)


@pytest.mark.parametrize("genotype,message", [
    (np.array([0, 1, 2, 9, 1, 1]), "op indices"), (np.zeros(5, np.int32), "shape"),
])
def test_scorer_rejects_bad_genotypes(scorer, tiny_batch, genotype, message):
    with pytest.raises(ValueError, match=message):
        scorer(genotype, tiny_batch)


@pytest.mark.parametrize("make_batch,error,message", [
    (lambda b: b[0], TypeError, "pair"),
    (lambda b: (jnp.transpose(b[0], (0, 3, 1, 2)), b[1]), ValueError, "NCHW"),
    (lambda b: (b[0].astype(jnp.int32), b[1]), ValueError, "floating"),
    (lambda b: (b[0], b[1][:3]), ValueError, "length"),
    (lambda b: (b[0], b[1] + 10), ValueError, "num_classes=10"),
    (lambda b: (b[0][:, :8, :8], b[1]), ValueError, "16x16"),
])
def test_scorer_rejects_bad_batches(scorer, tiny_batch, make_batch, error, message):
    with pytest.raises(error, match=message):
        scorer(nb201.encode(ARCHS[0]), make_batch(tiny_batch))


def test_score_accepts_strings_and_arrays_and_reuses_one_compilation():
    batch = zcjax.data.sample_batch("cifar10", 4)
    by_string = zcjax.score(ARCHS[1], batch, proxies="params,l2_norm")
    by_array = zcjax.score(nb201.encode(ARCHS[1]), batch, proxies=("params", "l2_norm"))
    assert by_string == by_array and list(by_string) == ["params", "l2_norm"]
    assert all(isinstance(v, float) for v in by_string.values())
    zcjax.score(ARCHS[2], batch, proxies="params,l2_norm")
    assert zcjax.api._cached_scorer.cache_info().currsize >= 1
    scorer = zcjax.api._cached_scorer("nb201", ("params", "l2_norm"), None, 32, ())
    assert scorer.compiled._cache_size() == 1


def test_score_errors_name_the_problem():
    batch = zcjax.data.sample_batch("cifar10", 4)
    with pytest.raises(ValueError, match="unknown op 'conv_3x3'"):
        zcjax.score("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", batch)
    with pytest.raises(KeyError, match="valid proxies"):
        zcjax.score(ARCHS[0], batch, proxies=["snip", "zen2"])
    with pytest.raises(ValueError, match="unknown search space 'nb999'"):
        zcjax.score(ARCHS[0], batch, space="nb999")
    with pytest.raises(ValueError, match="num_classes=10"):
        zcjax.score(ARCHS[0], zcjax.data.sample_batch("cifar100", 20), proxies="params")


def test_score_infers_image_size_and_takes_num_classes():
    batch = zcjax.data.sample_batch("imagenet16-120", 4)
    out = zcjax.score(ARCHS[0], batch, proxies="flops", num_classes=120)
    assert out["flops"] == pytest.approx(
        nb201.flops(ARCHS[0], nb201.Config(num_classes=120, image_size=16)) / 1e6, rel=1e-6)


def test_cli_score_prints_a_ranked_table(capsys):
    code = cli.main(["score", "--proxies", "params,flops", "--sample", "3", "--batch-size", "4",
                     ARCHS[2], ARCHS[5]])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and len(out) == 1 + 5
    assert out[1].split()[1] == ARCHS[2]  # the all-conv3x3 cell has the most parameters
    assert out[-1].split()[1] == ARCHS[5]


def test_cli_errors_are_one_line(capsys):
    assert cli.main(["score", "|bad~0|+|none~0|none~1|+|none~0|none~1|none~2|"]) == 2
    assert "unknown op 'bad'" in capsys.readouterr().err
    assert cli.main(["score", "--proxies", "snipp", ARCHS[0]]) == 2
    assert "valid proxies" in capsys.readouterr().err
    assert cli.main(["score"]) == 2
    assert "nothing to score" in capsys.readouterr().err


def test_registry_accepts_user_proxies_and_their_options():
    def width(inputs, passes):
        return proxies.ProxyOutput(jnp.asarray(inputs.images.shape[1], jnp.float32)
                                   * inputs.options["test_width_scale"], None, inputs.active)

    name = "test_image_width"
    if name not in proxies.names():
        proxies.register(proxies.Proxy(name, width, (), "input width", options=(
            proxies.Option("test_width_scale", 1.0, doc="multiplies the width"),)))
    batch = zcjax.data.sample_batch("cifar10", 2)
    assert zcjax.score(ARCHS[0], batch, proxies=[name]) == {name: 32.0}
    assert zcjax.score(ARCHS[0], batch, proxies=[name], test_width_scale=2) == {name: 64.0}
    with pytest.raises(TypeError, match="'test_width_scale'.*proxies that read it: "
                                        "test_image_width"):
        zcjax.score(ARCHS[0], batch, proxies=["params"], test_width_scale=2.0)
    with pytest.raises(ValueError, match="test_width_scale='2'"):
        zcjax.score(ARCHS[0], batch, proxies=[name], test_width_scale="2")
    with pytest.raises(ValueError, match="already registered"):
        proxies.register(proxies.Proxy(name, width, (), "again"))
    with pytest.raises(ValueError, match="needs unknown pass 'nope'"):
        proxies.register(proxies.Proxy("other", width, ("nope",), ""))
