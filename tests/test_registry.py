"""The proxy registry: pass graphs checked at registration, passes run dependencies first,
options owned by the passes and proxies that read them, user proxies end to end."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zcjax
from conftest import CONNECTED_ARCHS, TINY
from zcjax import api, proxies
from zcjax.proxies import base, gradient, registry
from zcjax.spaces import nb201

SCALE = proxies.Option("test_registry_scale", 1.0, doc="multiplies the user pass's loss")


def _scaled_loss(inputs, computed):
    return computed["loss_gradients"].loss * inputs.options["test_registry_scale"]


def _register_once():
    """The user passes and proxies of this file (the registry is process-wide)."""
    if "test_registry_loss" in proxies.names():
        return
    proxies.register_pass(proxies.Pass("test_registry_scaled_loss", _scaled_loss,
                                       requires=("loss_gradients",), options=(SCALE,)))
    proxies.register(proxies.Proxy(
        "test_registry_loss", lambda inputs, passes: base.scalar(
            inputs, passes["test_registry_scaled_loss"]),
        ("test_registry_scaled_loss",), "scaled cross-entropy at initialisation"))
    # The example: GraSP naming only its Hessian pass, which requires the gradients.
    proxies.register(proxies.Proxy("test_registry_grasp", gradient.grasp,
                                   ("grasp_hessian_gradients",), "grasp, one pass named"))


@pytest.fixture(scope="module", autouse=True)
def user_proxies():
    _register_once()


def _unused(inputs, computed):
    raise AssertionError("never run")


# ------------------------------------------------------------ the pass graph


def test_register_rejects_unknown_passes():
    with pytest.raises(ValueError, match="proxy 'test_registry_bad' needs unknown pass 'nope'; "
                                         "known passes: zico_gradients, loss_gradients"):
        proxies.register(proxies.Proxy("test_registry_bad", _unused, ("loss_gradients", "nope"),
                                       ""))
    assert "test_registry_bad" not in proxies.names()
    with pytest.raises(ValueError, match="pass 'test_registry_orphan' needs unknown pass "
                                         r"'missing' \(required by test_registry_orphan\)"):
        proxies.register_pass(proxies.Pass("test_registry_orphan", _unused,
                                           requires=("missing",)))
    with pytest.raises(ValueError, match="passes test_registry_self -> test_registry_self "
                                         "require each other"):
        proxies.register_pass(proxies.Pass("test_registry_self", _unused,
                                           requires=("test_registry_self",)))
    with pytest.raises(TypeError, match="tuple of pass names"):
        proxies.Proxy("test_registry_str", _unused, "loss_gradients", "")


def test_a_cycle_is_named_with_its_path():
    table = {"a": proxies.Pass("a", _unused, requires=("b",)),
             "b": proxies.Pass("b", _unused, requires=("a",))}
    with pytest.raises(ValueError, match="proxy 'x': passes a -> b -> a require each other"):
        registry._pass_order(["a"], table, "proxy 'x'")


def test_register_rejects_taken_names():
    with pytest.raises(ValueError, match="already registered"):
        proxies.register(proxies.Proxy("snip", _unused, (), ""))
    with pytest.raises(ValueError, match="already registered"):
        proxies.register_pass(proxies.Pass("loss_gradients", _unused))


def test_passes_run_dependencies_first_otherwise_in_the_order_proxies_list_them():
    assert proxies.pass_order(["test_registry_grasp"]) == ("loss_gradients",
                                                          "grasp_hessian_gradients")
    assert proxies.pass_order(["synflow", "test_registry_grasp", "snip"]) == (
        "synflow_gradients", "loss_gradients", "grasp_hessian_gradients")
    # Every builtin proxy set computes its passes in the order of its proxies' pass tuples
    # (what run() did before passes declared requires=): same program, same numbers.
    builtin = [proxy for proxy in proxies.resolve(None) if proxies.is_builtin(proxy.name)]
    distinct = list({proxy.passes: proxy for proxy in builtin}.values())
    for chosen in itertools.chain(itertools.permutations(distinct, 2), [distinct]):
        listed = tuple(dict.fromkeys(name for proxy in chosen for name in proxy.passes))
        assert proxies.pass_order(chosen) == listed


def test_run_calls_each_pass_once_after_what_it_requires():
    calls = []

    def recorder(name):
        def fn(inputs, computed):
            calls.append((name, sorted(computed)))
            return name
        return fn

    if "test_registry_c" not in proxies.names():
        proxies.register_pass(proxies.Pass("test_registry_a", recorder("a")))
        proxies.register_pass(proxies.Pass("test_registry_b", recorder("b"),
                                           requires=("test_registry_a",)))
        proxies.register_pass(proxies.Pass("test_registry_c", recorder("c"),
                                           requires=("test_registry_b", "test_registry_a")))
        proxies.register(proxies.Proxy("test_registry_c", lambda inputs, passes: sorted(passes),
                                       ("test_registry_c",), ""))
        proxies.register(proxies.Proxy("test_registry_undeclared",
                                       lambda inputs, passes: passes["loss_gradients"],
                                       ("test_registry_a",), ""))
    inputs = base.ProxyInputs(None, {}, None, None, None, None)
    out = proxies.run(proxies.resolve(["test_registry_c"]), inputs)
    assert calls == [("a", []), ("b", ["test_registry_a"]),
                     ("c", ["test_registry_a", "test_registry_b"])]
    assert out["test_registry_c"] == ["test_registry_a", "test_registry_b", "test_registry_c"]
    with pytest.raises(KeyError, match="proxy 'test_registry_undeclared' read pass "
                                       "'loss_gradients', which it does not declare"):
        proxies.run(proxies.resolve(["test_registry_undeclared"]), inputs)


# ------------------------------------------------------------ options


def test_options_belong_to_what_reads_them():
    assert [o.name for o in proxies.options_read("snip")] == []
    assert [o.name for o in proxies.options_read("naswot")] == ["activation_bn",
                                                               "naswot_wrapper_hooks"]
    assert [o.name for o in proxies.options_read("tcet_synflow")] == ["activation_bn",
                                                                     "synflow_reduction_bn"]
    assert [o.name for o in proxies.options_read("test_registry_grasp")] == ["grasp_temperature"]
    validated = proxies.validate_options(["naswot", "synflow"], {"activation_bn": "batch"})
    assert validated == {"activation_bn": "batch", "naswot_wrapper_hooks": True,
                         "synflow_reduction_bn": False}
    assert proxies.proxy_settings("synflow", validated) == {"synflow_reduction_bn": False}
    assert proxies.proxy_settings("snip", validated) == {}
    with pytest.raises(KeyError, match="'grasp_temperature' of proxy 'grasp'"):
        proxies.proxy_settings("grasp", validated)


def test_validate_options_errors_name_the_option():
    with pytest.raises(TypeError, match="'zico_accumulate' is read by none of the requested "
                                        r"proxies \(snip, naswot\); proxies that read it: zico$"):
        proxies.validate_options(["snip", "naswot"], {"zico_accumulate": True})
    with pytest.raises(TypeError, match="'nope'.*no registered proxy reads it"):
        proxies.validate_options(["snip"], {"nope": 1})
    with pytest.raises(ValueError, match="tenas_inputs='normal' is not valid; valid values: "
                                         "'batch', 'gaussian'"):
        proxies.validate_options(["ntk"], {"tenas_inputs": "normal"})
    with pytest.raises(ValueError, match="zico_accumulate=1 is not valid; valid values: a bool"):
        proxies.validate_options(["zico"], {"zico_accumulate": 1})
    assert proxies.validate_options(["grasp"], {"grasp_temperature": 2}) == {
        "grasp_temperature": 2.0}


def test_one_option_name_has_one_declaration():
    other = proxies.Option("activation_bn", "batch", choices=("init", "batch"))
    with pytest.raises(ValueError, match="option 'activation_bn' is declared twice"):
        proxies.register(proxies.Proxy("test_registry_conflict", _unused, ("activations",), "",
                                       options=(other,)))
    with pytest.raises(ValueError, match="valid values: 'init'"):
        proxies.Option("test_registry_bad_default", "x", choices=("init",))


def test_builtin_proxies_are_known_as_such():
    assert proxies.is_builtin("snip") and proxies.is_builtin("tcet_synflow_norm")
    assert not proxies.is_builtin("test_registry_loss")
    with pytest.raises(KeyError, match="unknown proxy"):
        proxies.is_builtin("nope")


# ------------------------------------------------------------ end to end


def test_user_proxy_with_user_pass_and_option_scores_end_to_end(tiny_batch):
    names = ["test_registry_loss", "test_registry_grasp", "grasp"]
    genotype = nb201.encode(CONNECTED_ARCHS[0])
    key = jax.random.key(0)
    out = zcjax.make_scorer("nb201", names, config=TINY)(genotype, tiny_batch, key)
    network = nb201.network(TINY)
    variables = network.init(api.init_key(key), tiny_batch[0][:1])
    logits = network.apply(variables, jnp.asarray(genotype), tiny_batch[0])
    loss = base.cross_entropy(logits, jnp.asarray(tiny_batch[1]))
    np.testing.assert_allclose(out["test_registry_loss"], loss, rtol=1e-5)
    assert np.isfinite(out["test_registry_grasp"])
    assert out["test_registry_grasp"] == out["grasp"]  # one pass graph, computed once
    doubled = zcjax.make_scorer("nb201", ["test_registry_loss"], config=TINY,
                                test_registry_scale=2)(genotype, tiny_batch, key)
    np.testing.assert_allclose(doubled["test_registry_loss"], 2 * loss, rtol=1e-5)
    with pytest.raises(TypeError, match="'test_registry_scale'.*test_registry_loss"):
        zcjax.make_scorer("nb201", ["snip"], config=TINY, test_registry_scale=2.0)
