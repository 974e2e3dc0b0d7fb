"""Tests for zcjax.data: bundled real-image batches, synthetic and tfds batches, validation."""

import ast
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zcjax.data import DATASETS, sample_batch, synthetic_batch, tfds_batch, validate_batch

from conftest import shared_file, unavailable

# The reference images as shipped in the project's shared data (../shared/data/images), read
# independently of the package copy so that the tests check the package against the source.
SHARED_FILES = {
    "cifar10": "cifar10_test_first20_foolbox.npz",
    "cifar100": "cifar100_test_first20_foolbox.npz",
    "imagenet16-120": "imagenet_val20_foolbox_16x16.npz",
}


def _shared(dataset):
    with np.load(shared_file("images", SHARED_FILES[dataset])) as npz:
        return {k: npz[k] for k in npz.files}


# NAS-Bench-201's normalisations as the benchmark's code writes them: xautodl 1.0.0,
# xautodl/datasets/get_dataset_with_transform.py, get_datasets() (ImageNet16-120 is its
# name.startswith("ImageNet16") branch). (mean, std) per dataset.
NB201_NORMALISATIONS = {
    "cifar10": ([x / 255 for x in [125.3, 123.0, 113.9]], [x / 255 for x in [63.0, 62.1, 66.7]]),
    "cifar100": ([x / 255 for x in [129.3, 124.1, 112.4]], [x / 255 for x in [68.2, 65.4, 70.4]]),
    "imagenet16-120": ([x / 255 for x in [122.68, 116.66, 104.01]],
                       [x / 255 for x in [63.22, 61.26, 65.09]]),
}
XAUTODL_NAMES = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16-120": "ImageNet16-120"}


def _unnormalise(images, dataset):
    mean, std = NB201_NORMALISATIONS[dataset]
    return np.asarray(images, np.float64) * np.asarray(std) + np.asarray(mean)


def _xautodl_normalisations():
    """{condition on the dataset name: (mean, std)} for each branch of get_datasets()'s
    if/elif chain in xautodl 1.0.0, in order, read from its source with ast: importing
    xautodl.datasets needs torchvision, and calling get_datasets the datasets themselves."""
    spec = importlib.util.find_spec("xautodl")
    if spec is None or not spec.submodule_search_locations:
        unavailable("xautodl not installed (pip install --no-deps xautodl==1.0.0)")
    assert importlib.metadata.version("xautodl") == "1.0.0"
    source = Path(spec.submodule_search_locations[0], "datasets",
                  "get_dataset_with_transform.py")
    tree = ast.parse(source.read_text())
    (function,) = [node for node in tree.body
                   if isinstance(node, ast.FunctionDef) and node.name == "get_datasets"]
    found = {}
    branch = function.body[0]  # if name == "cifar10": ... elif ...
    while isinstance(branch, ast.If):
        values = {}
        for statement in branch.body:
            for target, value in _assignments(statement):
                values[target] = value
        found[ast.unparse(branch.test)] = (values["mean"], values["std"])
        branch = branch.orelse[0] if branch.orelse else None
    return found


def _assignments(statement):
    """(name, value) of ``name = expr`` and ``a, b = expr1, expr2``, evaluated literally;
    a list comprehension ``[x / 255 for x in [...]]`` is evaluated on its literal list."""
    def evaluate(node):
        if isinstance(node, ast.ListComp):
            (generator,) = node.generators
            assert ast.unparse(node.elt) == f"{generator.target.id} / 255", ast.unparse(node)
            return [x / 255 for x in ast.literal_eval(generator.iter)]
        return ast.literal_eval(node)

    if not isinstance(statement, ast.Assign):
        return []
    (target,) = statement.targets
    if isinstance(target, ast.Tuple):
        return [(t.id, evaluate(v)) for t, v in zip(target.elts, statement.value.elts)]
    return [(target.id, evaluate(statement.value))]


def _all_augmentations(image):
    """{(dy, dx, flip): crop} for every 4-pixel zero-pad crop offset and flip, in numpy."""
    size = image.shape[0]
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    out = {}
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            crop = padded[4 + dy : 4 + dy + size, 4 + dx : 4 + dx + size]
            out[(dy, dx, False)] = crop
            out[(dy, dx, True)] = crop[:, ::-1]
    return out


def test_nb201_normalisations():
    assert {name: (i.num_classes, i.image_size) for name, i in DATASETS.items()} == {
        "cifar10": (10, 32),
        "cifar100": (100, 32),
        "imagenet16-120": (120, 16),
    }
    # The benchmark's published constants, exactly (the same float64 arithmetic).
    for name, (mean, std) in NB201_NORMALISATIONS.items():
        assert list(DATASETS[name].mean) == mean, name
        assert list(DATASETS[name].std) == std, name


def test_nb201_normalisations_are_xautodls():
    """The constants above are those of the benchmark's own code, read from xautodl 1.0.0."""
    found = _xautodl_normalisations()
    assert len(found) == 4, list(found)  # cifar10, cifar100, imagenet-1k*, ImageNet16*
    for name, xautodl_name in XAUTODL_NAMES.items():
        # The if/elif chain: the first branch whose condition holds for the name.
        branch = next(test for test in found
                      if eval(test, {"__builtins__": {}}, {"name": xautodl_name}))  # noqa: S307
        assert found[branch] == NB201_NORMALISATIONS[name], (name, branch)
        assert [list(DATASETS[name].mean), list(DATASETS[name].std)] == list(found[branch])


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_sample_batch_is_normalised_with_the_benchmarks_constants(dataset):
    """The first copy of each image, normalised here in float64 from the shared raw pixels."""
    raw = _shared(dataset)["x"]
    mean, std = NB201_NORMALISATIONS[dataset]
    expected = (raw / 255.0 - np.asarray(mean)) / np.asarray(std)
    images, _ = sample_batch(dataset, 20)
    np.testing.assert_allclose(np.asarray(images, np.float64), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("batch_size", [1, 20, 64, 100])
def test_sample_batch_shapes_and_dtypes(dataset, batch_size):
    images, labels = sample_batch(dataset, batch_size)
    size = DATASETS[dataset].image_size
    assert isinstance(images, jax.Array) and isinstance(labels, jax.Array)
    assert images.shape == (batch_size, size, size, 3)
    assert images.dtype == jnp.float32
    assert labels.shape == (batch_size,)
    assert labels.dtype == jnp.int32
    assert np.all(np.isfinite(np.asarray(images)))
    assert 0 <= int(labels.min()) and int(labels.max()) < DATASETS[dataset].num_classes


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_sample_batch_is_deterministic_in_the_key(dataset):
    a = sample_batch(dataset, 64, key=jax.random.key(1))
    b = sample_batch(dataset, 64, key=jax.random.key(1))
    c = sample_batch(dataset, 64, key=jax.random.key(2))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # The default key is jax.random.key(0).
    default = sample_batch(dataset, 64)
    np.testing.assert_array_equal(default[0], sample_batch(dataset, 64, key=jax.random.key(0))[0])


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("batch_size", [64, 256])
def test_sample_batch_rows_are_distinct(dataset, batch_size):
    images = np.asarray(sample_batch(dataset, batch_size)[0]).reshape(batch_size, -1)
    assert np.unique(images, axis=0).shape[0] == batch_size


def test_sample_batch_largest_batch_has_distinct_rows_and_one_more_is_rejected():
    images = np.asarray(sample_batch("cifar10", 20 * 162)[0]).reshape(20 * 162, -1)
    assert np.unique(images, axis=0).shape[0] == 20 * 162
    with pytest.raises(ValueError, match="exceeds"):
        sample_batch("cifar10", 20 * 162 + 1)


@pytest.mark.parametrize("batch_size", [0, -3])
def test_sample_batch_rejects_non_positive_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        sample_batch("cifar10", batch_size)


def test_sample_batch_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset.*cifar10.*imagenet16-120"):
        sample_batch("imagenet", 8)


def test_smaller_batch_is_prefix_of_larger():
    for dataset in DATASETS:
        small = sample_batch(dataset, 30, key=jax.random.key(5))
        large = sample_batch(dataset, 100, key=jax.random.key(5))
        np.testing.assert_array_equal(small[0], large[0][:30])
        np.testing.assert_array_equal(small[1], large[1][:30])


def test_cifar10_labels_are_the_real_test_labels():
    reference = _shared("cifar10")["y"]
    _, labels = sample_batch("cifar10", 20)
    np.testing.assert_array_equal(np.asarray(labels), reference)
    np.testing.assert_array_equal(
        np.asarray(labels), [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    )
    # Every later copy carries its source's label.
    _, labels = sample_batch("cifar10", 100)
    np.testing.assert_array_equal(np.asarray(labels), np.tile(reference, 5))


def test_cifar100_labels_are_the_real_test_labels():
    reference = _shared("cifar100")["y"]
    _, labels = sample_batch("cifar100", 40)
    np.testing.assert_array_equal(np.asarray(labels), np.tile(reference, 2))


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_first_copy_unnormalises_to_the_raw_images(dataset):
    raw = _shared(dataset)["x"]
    images, _ = sample_batch(dataset, 64, key=jax.random.key(3))
    np.testing.assert_allclose(_unnormalise(images[:20], dataset), raw / 255.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet16-120"])
def test_augmented_rows_are_crops_and_flips_of_their_source(dataset):
    raw = _shared(dataset)["x"]
    images, _ = sample_batch(dataset, 64)
    pixels = np.rint(_unnormalise(images, dataset) * 255.0)
    # Normalisation is exactly invertible on the 8-bit grid, including the zero padding.
    np.testing.assert_allclose(_unnormalise(images, dataset) * 255.0, pixels, atol=1e-3)
    used = []
    for row in range(20, 64):
        candidates = _all_augmentations(raw[row % 20])
        matches = [c for c, crop in candidates.items() if np.array_equal(crop, pixels[row])]
        assert len(matches) == 1, (row, matches)
        assert matches[0] != (0, 0, False)
        used.append(matches[0])
    assert any(flip for _, _, flip in used)
    assert any(dy != 0 or dx != 0 for dy, dx, _ in used)
    # One row checked explicitly: shift and flip computed here.
    dy, dx, flip = used[0]
    padded = np.pad(raw[0], ((4, 4), (4, 4), (0, 0)))
    size = raw.shape[1]
    expected = padded[4 + dy : 4 + dy + size, 4 + dx : 4 + dx + size]
    if flip:
        expected = expected[:, ::-1]
    np.testing.assert_array_equal(pixels[20], expected)


def test_imagenet16_120_pseudo_labels():
    reference = _shared("imagenet16-120")["y_imagenet1k"]
    _, labels = sample_batch("imagenet16-120", 100)
    labels = np.asarray(labels)
    assert labels.min() >= 0 and labels.max() < 120
    # One label per source image, shared by all its copies.
    np.testing.assert_array_equal(labels, np.tile(labels[:20], 5))
    # Same ImageNet-1k class <-> same pseudo-label.
    same_class = reference[:, None] == reference[None, :]
    same_label = labels[:20, None] == labels[None, :20]
    np.testing.assert_array_equal(same_class, same_label)
    other = np.asarray(sample_batch("imagenet16-120", 20, key=jax.random.key(9))[1])
    assert not np.array_equal(labels[:20], other)


def test_synthetic_batch():
    images, labels = synthetic_batch(64, image_size=16, num_classes=7, key=jax.random.key(4))
    assert images.shape == (64, 16, 16, 3) and images.dtype == jnp.float32
    assert labels.shape == (64,) and labels.dtype == jnp.int32
    assert 0 <= int(labels.min()) and int(labels.max()) < 7
    assert len(np.unique(np.asarray(labels))) > 1
    assert abs(float(images.mean())) < 0.05 and abs(float(images.std()) - 1.0) < 0.05
    again = synthetic_batch(64, image_size=16, num_classes=7, key=jax.random.key(4))
    np.testing.assert_array_equal(images, again[0])
    np.testing.assert_array_equal(labels, again[1])
    assert not np.array_equal(images, synthetic_batch(64, image_size=16, num_classes=7)[0])


def test_synthetic_batch_defaults_and_dtype():
    images, labels = synthetic_batch(dtype=jnp.bfloat16)
    assert images.shape == (64, 32, 32, 3) and images.dtype == jnp.bfloat16
    assert 0 <= int(labels.min()) and int(labels.max()) < 10
    with pytest.raises(ValueError, match="floating"):
        synthetic_batch(4, dtype=jnp.int32)
    with pytest.raises(ValueError, match="batch_size"):
        synthetic_batch(0)


def test_validate_batch_accepts_and_converts():
    images = np.zeros((4, 32, 32, 3), np.float32)
    labels = np.array([0, 1, 2, 9], np.int64)
    out_images, out_labels = validate_batch((images, labels), image_size=32, num_classes=10)
    assert isinstance(out_images, jax.Array) and out_images.dtype == jnp.float32
    assert isinstance(out_labels, jax.Array) and out_labels.dtype == jnp.int32
    np.testing.assert_array_equal(out_labels, labels)
    # Every bundled batch passes the scoring API's check.
    for dataset, info in DATASETS.items():
        validate_batch(
            sample_batch(dataset, 8), image_size=info.image_size, num_classes=info.num_classes
        )


GOOD_IMAGES = np.zeros((4, 32, 32, 3), np.float32)
GOOD_LABELS = np.array([0, 1, 2, 3], np.int32)


@pytest.mark.parametrize(
    "batch, options, error, match",
    [
        ([GOOD_IMAGES], {}, TypeError, "pair"),
        ({"images": GOOD_IMAGES, "labels": GOOD_LABELS}, {}, TypeError, "pair"),
        ((GOOD_IMAGES.tolist(), GOOD_LABELS), {}, TypeError, "array"),
        ((np.zeros((4, 3, 32, 32), np.float32), GOOD_LABELS), {}, ValueError, "NCHW"),
        ((np.zeros((4, 32, 32), np.float32), GOOD_LABELS), {}, ValueError, "rank 4"),
        ((np.zeros((4, 32, 32, 1), np.float32), GOOD_LABELS), {}, ValueError, "3 channels"),
        ((np.zeros((4, 32, 32, 3), np.uint8), GOOD_LABELS), {}, ValueError, "floating.*uint8"),
        ((GOOD_IMAGES, GOOD_LABELS[:3]), {}, ValueError, "length 3"),
        ((GOOD_IMAGES, GOOD_LABELS.astype(np.float32)), {}, ValueError, "integer.*float32"),
        ((GOOD_IMAGES, np.eye(4, dtype=np.int32)), {}, ValueError, "one-hot"),
        ((GOOD_IMAGES, GOOD_LABELS), {"image_size": 16}, ValueError, r"16x16.*\(4, 32, 32, 3\)"),
        ((GOOD_IMAGES, GOOD_LABELS), {"num_classes": 3}, ValueError, r"\[0, 3\).*\[0, 3\]"),
        ((GOOD_IMAGES, GOOD_LABELS - 1), {"num_classes": 10}, ValueError, r"\[-1, 2\]"),
    ],
)
def test_validate_batch_errors(batch, options, error, match):
    with pytest.raises(error, match=match):
        validate_batch(batch, **options)


# ---------------------------------------------------------------------------------------
# tensorflow-datasets: a tiny array_record dataset built in the test, read without TF.

NUM_TINY = 30


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
    tfds = pytest.importorskip("tensorflow_datasets")
    # Without TensorFlow, tfds encodes (from PIL images) and decodes images with Pillow.
    PIL_Image = pytest.importorskip("PIL.Image")

    class ZcjaxTinyImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Example i: a constant image with channel c = 8 * i + c, label i % 10."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(32, 32, 3)),
                        "label": tfds.features.ClassLabel(num_classes=10),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(NUM_TINY):
                pixel = (8 * i + np.arange(3)).astype(np.uint8)
                image = np.broadcast_to(pixel, (32, 32, 3)).copy()
                yield i, {"image": PIL_Image.fromarray(image), "label": i % 10}

    data_dir = tmp_path_factory.mktemp("tfds")
    ZcjaxTinyImages(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return str(data_dir)


def _example_ids(images, dataset):
    pixels = np.rint(_unnormalise(images, dataset) * 255.0)
    assert np.all(pixels == pixels[:, :1, :1, :])  # constant images survive the round trip
    np.testing.assert_array_equal(pixels[:, 0, 0, 1] - pixels[:, 0, 0, 0], 1)
    return (pixels[:, 0, 0, 0] / 8).astype(int)


def test_tfds_batch_known_normalisation(tiny_tfds_dir):
    images, labels = tfds_batch(
        "zcjax_tiny_images", batch_size=12, data_dir=tiny_tfds_dir, dataset="cifar10"
    )
    assert images.shape == (12, 32, 32, 3) and images.dtype == jnp.float32
    assert labels.shape == (12,) and labels.dtype == jnp.int32
    ids = _example_ids(images, "cifar10")
    assert len(set(ids)) == 12 and ids.min() >= 0 and ids.max() < NUM_TINY
    np.testing.assert_array_equal(np.asarray(labels), ids % 10)

    again = tfds_batch(
        "zcjax_tiny_images", batch_size=12, data_dir=tiny_tfds_dir, dataset="cifar10"
    )
    np.testing.assert_array_equal(images, again[0])
    np.testing.assert_array_equal(labels, again[1])
    other = tfds_batch(
        "zcjax_tiny_images", batch_size=12, data_dir=tiny_tfds_dir, dataset="cifar10",
        key=jax.random.key(1),
    )
    assert not np.array_equal(images, other[0])

    everything = tfds_batch(
        "zcjax_tiny_images", batch_size=NUM_TINY, data_dir=tiny_tfds_dir, dataset="cifar10"
    )
    assert sorted(_example_ids(everything[0], "cifar10")) == list(range(NUM_TINY))


def test_tfds_batch_unknown_name_uses_batch_statistics(tiny_tfds_dir):
    images, labels = tfds_batch("zcjax_tiny_images", batch_size=10, data_dir=tiny_tfds_dir)
    assert images.shape == (10, 32, 32, 3) and labels.dtype == jnp.int32
    np.testing.assert_allclose(np.asarray(images).mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(images).std(axis=(0, 1, 2)), 1.0, atol=1e-5)


def test_tfds_batch_errors(tiny_tfds_dir):
    with pytest.raises(ValueError, match="exceeds the 30 examples"):
        tfds_batch("zcjax_tiny_images", batch_size=NUM_TINY + 1, data_dir=tiny_tfds_dir)
    with pytest.raises(ValueError, match="unknown dataset"):
        tfds_batch("zcjax_tiny_images", batch_size=4, data_dir=tiny_tfds_dir, dataset="cifar-10")


def test_tfds_batch_without_tensorflow_datasets_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"zcjax\[tfds\]"):
        tfds_batch("cifar10", batch_size=4)
