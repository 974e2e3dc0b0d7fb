"""epe_nas, ntk and linear_regions against direct computations of their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zcjax
from conftest import CONNECTED_ARCHS, TINY
from zcjax.network import sown_values
from zcjax.proxies import base, epe_nas, passes, registry, tenas
from zcjax.spaces import nb201


def _inputs(config, arch, batch, **options):
    network = nb201.network(config)
    images, labels = batch
    variables = network.init(jax.random.key(0), images[:1])
    return base.ProxyInputs(network, variables, jnp.asarray(nb201.encode(arch)), images,
                            jnp.asarray(labels), jax.random.key(1),
                            registry.validate_options(registry.names(), options))


def _naslib_epe(jacobian, labels, num_classes):
    """NAS-Bench-Suite-Zero's eval_score_perclass, transcribed loop for loop."""
    per_class = {}
    for row, label in zip(jacobian, labels):
        per_class[label] = np.vstack((per_class[label], row)) if label in per_class else row
    scores = {}
    for label, rows in per_class.items():
        corrs = np.corrcoef(rows)
        s = np.sum(np.log(abs(corrs) + 1e-5))
        if num_classes > 100:
            try:
                s /= len(corrs)
            except TypeError:  # one sample: a 0-d correlation, the reference skips it
                continue
        scores[label] = s
    if num_classes <= 100:
        return sum(abs(s) for s in scores.values())
    total = sum(abs(a - b) for a in scores.values() for b in scores.values())
    return total / len(scores)


@pytest.mark.parametrize("num_classes", [10, 120])
def test_epe_nas_is_the_reference_per_class_score(tiny_batch, num_classes):
    images, _ = tiny_batch
    # Classes with 3, 2, 2 and 1 samples: the single-sample class is the edge case.
    labels = np.array([0, 0, 0, 5, 5, 7, 7, 9]) % num_classes
    config = nb201.Config(channels=TINY.channels, cells_per_stage=1, image_size=16,
                          num_classes=num_classes)
    with jax.enable_x64(True):
        inputs = _inputs(config, CONNECTED_ARCHS[0], (images, labels))
        jacobian = passes.input_gradients(inputs)
        ours = float(epe_nas.epe_nas(inputs, {"input_gradients": jacobian}).score)
    expected = _naslib_epe(np.asarray(jacobian, np.float64).reshape(len(labels), -1),
                           labels.tolist(), num_classes)
    np.testing.assert_allclose(ours, expected, rtol=1e-10)


def test_linear_regions_counts_distinct_relu_patterns(tiny_batch):
    images, labels = tiny_batch
    # Rows 4..7 repeat rows 0..3: at most 4 distinct patterns, whatever the network.
    images = jnp.concatenate([images[:4], images[:4]])
    with jax.enable_x64(True):
        inputs = _inputs(TINY, CONNECTED_ARCHS[2], (images, labels))
        computed = {"tenas_images": passes.tenas_images(inputs)}
        computed["tenas_activations"] = passes.tenas_activations(inputs, computed)
        ours = float(tenas.linear_regions(inputs, computed).score)
    codes = []
    for relu_inputs, relu_modules, _ in sown_values(computed["tenas_activations"]["relu"]):
        sites = np.asarray(relu_inputs).reshape((-1,) + relu_inputs.shape[relu_modules.ndim:])
        for site, read in zip(sites, np.asarray(relu_modules).reshape(-1)):
            if read:
                codes.append(site.reshape(site.shape[0], -1) > 0)
    distinct = len(np.unique(np.concatenate(codes, axis=1), axis=0))
    assert ours == distinct
    assert ours <= 4


def test_ntk_is_the_condition_number_of_per_sample_gradients(tiny_batch):
    """Gram of d(sum of sample i's logits)/d(kernels and BN scales), one sample at a time."""
    with jax.enable_x64(True):
        inputs = _inputs(TINY, CONNECTED_ARCHS[0], tiny_batch)
        computed = {"tenas_images": passes.tenas_images(inputs)}
        ours = float(tenas.ntk(inputs, {"ntk_gram": passes.ntk_gram(inputs, computed)}).score)
        network, genotype, images = inputs.network, inputs.genotype, inputs.images

        def sample_output(params, index):
            return jnp.sum(network.apply({"params": params}, genotype, images)[index])

        rows = []
        for index in range(images.shape[0]):
            grads = jax.grad(sample_output)(inputs.params, index)
            leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
            rows.append(np.concatenate([np.asarray(leaf, np.float64).ravel()
                                        for path, leaf in leaves
                                        if path[-1].key in ("kernel", "scale")]))
    rows = np.stack(rows)
    eigenvalues = np.linalg.eigvalsh(rows @ rows.T)
    np.testing.assert_allclose(ours, -eigenvalues[-1] / eigenvalues[0], rtol=1e-6)


def test_tenas_inputs_option(tiny_batch):
    scorer = lambda **o: zcjax.make_scorer("nb201", ["ntk", "linear_regions"],  # noqa: E731
                                           config=TINY, **o)
    genotype = nb201.encode(CONNECTED_ARCHS[0])
    on_batch = scorer()(genotype, tiny_batch)
    on_noise = scorer(tenas_inputs="gaussian")(genotype, tiny_batch)
    assert on_batch["ntk"] != on_noise["ntk"]
    with pytest.raises(ValueError, match="tenas_inputs"):
        scorer(tenas_inputs="normal")


def test_new_proxies_run_their_passes_in_dependency_order():
    assert registry.pass_order(["epe_nas"]) == ("input_gradients",)
    assert registry.pass_order(["ntk"]) == ("tenas_images", "ntk_gram")
    assert registry.pass_order(["linear_regions", "ntk"]) == ("tenas_images",
                                                              "tenas_activations", "ntk_gram")
