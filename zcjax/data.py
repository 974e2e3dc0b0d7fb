"""Minibatches for zero-cost proxies.

A zero-cost proxy scores an untrained network on ONE minibatch, so the batch is part of the
score. This module makes that batch reproducible:

* :func:`sample_batch` builds a batch from 20 real images bundled with the package (CIFAR-10,
  CIFAR-100, 16x16 ImageNet), expanded by standard crop/flip augmentation; no download needed.
* :func:`tfds_batch` draws a batch from a tensorflow-datasets dataset in the ``array_record``
  format, without TensorFlow (optional dependency: ``pip install "zcjax[tfds]"``).
* :func:`synthetic_batch` draws Gaussian images and uniform labels.
* :func:`validate_batch` is the check the scoring API runs on any user batch.

All batches are ``(images, labels)``: images float NHWC with 3 channels, labels int32 ``[N]``.
Every function is a pure function of its arguments and key; none changes global JAX config.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import re
import types
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "sample_batch",
    "synthetic_batch",
    "tfds_batch",
    "validate_batch",
]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a dataset's batches look like, and how to normalise them.

    Attributes:
      name: the dataset's name, the key in :data:`DATASETS`.
      num_classes: number of classes of the dataset's label space.
      image_size: height == width of its images, in pixels.
      mean: per-channel (R, G, B) mean subtracted from the [0, 1]-scaled images (the
        benchmark's value for the dataset's training images).
      std: per-channel (R, G, B) standard deviation the centred images are divided by.
      files: file-name prefix of its 20 bundled real images in ``zcjax/_images`` (foolbox's
        ``{prefix}_{index:02d}_{label}.png|jpg``).
    """

    name: str
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    files: str


# NAS-Bench-201's normalisations, so that scores line up with the benchmark's training setup:
# the constants of xautodl 1.0.0 (the benchmark's code), xautodl/datasets/
# get_dataset_with_transform.py, get_datasets(), written as it writes them (8-bit values / 255).
DATASETS: Mapping[str, DatasetInfo] = types.MappingProxyType(
    {
        info.name: info
        for info in (
            DatasetInfo(
                name="cifar10",
                num_classes=10,
                image_size=32,
                mean=tuple(x / 255 for x in (125.3, 123.0, 113.9)),
                std=tuple(x / 255 for x in (63.0, 62.1, 66.7)),
                files="cifar10",
            ),
            DatasetInfo(
                name="cifar100",
                num_classes=100,
                image_size=32,
                mean=tuple(x / 255 for x in (129.3, 124.1, 112.4)),
                std=tuple(x / 255 for x in (68.2, 65.4, 70.4)),
                files="cifar100",
            ),
            DatasetInfo(
                name="imagenet16-120",
                num_classes=120,
                image_size=16,
                mean=tuple(x / 255 for x in (122.68, 116.66, 104.01)),
                std=tuple(x / 255 for x in (63.22, 61.26, 65.09)),
                files="imagenet",
            ),
        )
    }
)

# Augmentation grid: crop offsets dy, dx in [-PAD, PAD] of a zero-padded image, times a flip.
_PAD = 4
_NUM_SHIFTS = 2 * _PAD + 1
_NUM_COMBOS = _NUM_SHIFTS * _NUM_SHIFTS * 2  # 162
# Combo c encodes flip = c % 2, dy = (c // 2) // 9 - PAD, dx = (c // 2) % 9 - PAD.
_IDENTITY_COMBO = 2 * (_PAD * _NUM_SHIFTS + _PAD)
_OTHER_COMBOS = np.delete(np.arange(_NUM_COMBOS), _IDENTITY_COMBO)


def _dataset_info(dataset: str) -> DatasetInfo:
    try:
        return DATASETS[dataset]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown dataset {dataset!r}; valid names: {', '.join(sorted(DATASETS))}"
        ) from None


def _default_key(key: jax.Array | None) -> jax.Array:
    return jax.random.key(0) if key is None else key


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


@functools.lru_cache(maxsize=None)
def _bundled_images(prefix: str, size: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Loads foolbox's 20 images for ``prefix``: (x uint8 [20,size,size,3], y int64 [20],
    labels_are_in_space).

    The files are foolbox 3.3.4's own (PNG for CIFAR, 512x512 JPEG for ImageNet); larger
    images are box-downsampled to ``size`` with Pillow. The label is the file name's last
    field; for ImageNet it is an ImageNet-1k index, not a dataset label.
    """
    from PIL import Image  # noqa: PLC0415 - only needed for the bundled images

    folder = importlib.resources.files("zcjax") / "_images"
    names = sorted(entry.name for entry in folder.iterdir()
                   if re.fullmatch(rf"{prefix}_\d\d_\d+\.(png|jpg)", entry.name))
    images, labels = [], []
    for name in names:
        with (folder / name).open("rb") as f:
            image = Image.open(f).convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BOX)
            images.append(np.asarray(image, np.uint8))
        labels.append(int(name.rsplit("_", 1)[1].split(".")[0]))
    x, y = np.stack(images), np.asarray(labels, np.int64)
    # Cached arrays are shared between calls: make accidental mutation an error.
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y, prefix != "imagenet"


def _normalise(images01: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    # float64 arithmetic, one rounding to float32 at the end.
    mean = np.asarray(mean, np.float64)
    std = np.asarray(std, np.float64)
    return ((images01.astype(np.float64) - mean) / std).astype(np.float32)


def sample_batch(
    dataset: str = "cifar10", batch_size: int = 64, *, key: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """A reproducible batch of real images, bundled with the package (no download).

    Row ``i`` is source image ``i % 20`` of the dataset's 20 bundled real images. The first
    copy of each source (rows 0..19) is the image itself; every later copy is a distinct
    standard augmentation of it: zero-pad by 4 pixels, crop back at offset (dy, dx) in
    [-4, 4]^2, then optionally flip horizontally. For each source, the (dy, dx, flip) of its
    copies are drawn from ``key`` WITHOUT replacement among the 161 non-identity combinations,
    so no two rows are identical and ``batch_size`` is at most ``20 * 162 = 3240``. Images
    are then scaled to [0, 1] and normalised with the dataset's mean/std (:data:`DATASETS`).

    The result is a pure function of ``(dataset, batch_size, key)``, and a smaller batch is
    a prefix of a larger one drawn with the same key.

    Labels:
      * ``"cifar10"``, ``"cifar100"``: the images' true test-set labels (CIFAR-100: fine).
      * ``"imagenet16-120"``: the bundled images are real ImageNet validation images
        downsampled to 16x16, but their labels are ImageNet-1k indices, which are NOT in the
        120-class space of ImageNet16-120. So their labels are PSEUDO-LABELS: each distinct
        ImageNet-1k class of the 20 sources is mapped to a distinct class in 0..119 drawn
        from ``key`` (all copies of a source share its label; sources of the same ImageNet
        class share a label). Use them for label-dependent proxies only as such.

    Args:
      dataset: one of ``DATASETS``: ``"cifar10"``, ``"cifar100"``, ``"imagenet16-120"``.
      batch_size: number of rows N, ``1 <= N <= 3240``.
      key: ``jax.random`` key driving augmentation (and ImageNet16-120 pseudo-labels).
        Defaults to ``jax.random.key(0)``.

    Returns:
      ``(images, labels)``: images float32 ``[N, S, S, 3]`` (S = ``DATASETS[dataset]
      .image_size``), normalised; labels int32 ``[N]`` in ``[0, num_classes)``.

    Raises:
      ValueError: unknown ``dataset``, or ``batch_size`` < 1 or > 3240.
    """
    info = _dataset_info(dataset)
    _check_batch_size(batch_size)
    x, y, labels_in_space = _bundled_images(info.files, info.image_size)
    num_sources = x.shape[0]
    if batch_size > num_sources * _NUM_COMBOS:
        raise ValueError(
            f"batch_size={batch_size} exceeds {num_sources * _NUM_COMBOS}, the number of "
            f"distinct augmentations of the {num_sources} bundled {dataset} images "
            f"({_NUM_COMBOS} crop/flip combinations each); use tfds_batch or synthetic_batch"
        )
    key_aug, key_label = jax.random.split(_default_key(key))

    # One permutation of the non-identity combos per source, independent of batch_size so
    # that smaller batches are prefixes of larger ones.
    order = np.asarray(
        jnp.argsort(jax.random.uniform(key_aug, (num_sources, _NUM_COMBOS - 1)), axis=1)
    )
    rows = np.arange(batch_size)
    source = rows % num_sources
    copy = rows // num_sources
    combo = np.where(
        copy == 0,
        _IDENTITY_COMBO,
        _OTHER_COMBOS[order[source, np.maximum(copy - 1, 0)]],
    )
    flip = combo % 2 == 1
    dy = (combo // 2) // _NUM_SHIFTS - _PAD
    dx = (combo // 2) % _NUM_SHIFTS - _PAD

    # Crop by gathering from the padded image; a flip reverses the crop's column order.
    size = x.shape[1]
    padded = np.pad(x, ((0, 0), (_PAD, _PAD), (_PAD, _PAD), (0, 0)))
    offsets = np.arange(size)
    row_idx = _PAD + dy[:, None] + offsets[None, :]  # [N, S]
    col_idx = _PAD + dx[:, None] + np.where(flip[:, None], offsets[::-1], offsets)  # [N, S]
    crops = padded[source[:, None, None], row_idx[:, :, None], col_idx[:, None, :]]
    images = _normalise(crops / 255.0, info.mean, info.std)

    if labels_in_space:
        source_labels = np.asarray(y)
    else:
        classes, inverse = np.unique(y, return_inverse=True)
        pseudo = np.asarray(
            jax.random.choice(key_label, info.num_classes, (classes.size,), replace=False)
        )
        source_labels = pseudo[inverse]
    labels = source_labels[source].astype(np.int32)
    return jnp.asarray(images), jnp.asarray(labels)


def synthetic_batch(
    batch_size: int = 64,
    *,
    image_size: int = 32,
    num_classes: int = 10,
    key: jax.Array | None = None,
    dtype: Any = jnp.float32,
) -> tuple[jax.Array, jax.Array]:
    """A batch of Gaussian noise images with uniform random labels.

    Args:
      batch_size: number of rows N >= 1.
      image_size: height == width S of the images.
      num_classes: labels are drawn uniformly from ``[0, num_classes)``.
      key: ``jax.random`` key; defaults to ``jax.random.key(0)``.
      dtype: floating dtype of the images.

    Returns:
      ``(images, labels)``: images ``dtype`` ``[N, S, S, 3]`` with i.i.d. N(0, 1) entries
      (already "normalised"); labels int32 ``[N]``.

    Raises:
      ValueError: a non-positive size or class count, or a non-floating ``dtype``.
    """
    _check_batch_size(batch_size)
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype, got {jnp.dtype(dtype)}")
    key_images, key_labels = jax.random.split(_default_key(key))
    images = jax.random.normal(key_images, (batch_size, image_size, image_size, 3), dtype=dtype)
    labels = jax.random.randint(key_labels, (batch_size,), 0, num_classes, dtype=jnp.int32)
    return images, labels


def tfds_batch(
    name: str,
    *,
    split: str = "train",
    batch_size: int = 64,
    data_dir: str | None = None,
    key: jax.Array | None = None,
    dataset: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """A random batch from a tensorflow-datasets dataset, read without TensorFlow.

    Reads through ``tfds.data_source`` (random access to the ``array_record`` files), so
    TensorFlow is not needed to READ the data (decoding PNG/JPEG images needs Pillow or
    OpenCV). The dataset must be prepared in ``array_record`` format in ``data_dir``; if it
    is absent, tfds tries to download and prepare it, which for many datasets needs
    TensorFlow. ``batch_size`` distinct example indices are drawn from ``key`` without
    replacement (deterministic: same key, same batch, same order); their ``image`` and
    ``label`` features are stacked.

    Normalisation: integer images are scaled to [0, 1] by their dtype's maximum (float
    images are assumed to be in [0, 1] already). If ``dataset`` (or else ``name`` without
    its ``/config`` and ``:version``) is a key of :data:`DATASETS`, its mean/std are used.
    Otherwise the images are normalised with the per-channel mean/std of THIS batch (a
    channel with zero spread is only centred), so such batches are not comparable across
    keys in absolute terms.

    Args:
      name: tfds dataset name, e.g. ``"cifar10"`` or ``"cifar100:3.0.2"``.
      split: tfds split, e.g. ``"train"``, ``"test"``, ``"train[:10%]"``.
      batch_size: number of rows N, at most the size of the split.
      data_dir: tfds data directory; ``None`` uses tfds' default (``TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      key: ``jax.random`` key choosing the examples; defaults to ``jax.random.key(0)``.
      dataset: a :data:`DATASETS` name whose normalisation to use, when ``name`` is not one.

    Returns:
      ``(images, labels)``: images float32 ``[N, H, W, C]`` normalised; labels int32 ``[N]``.

    Raises:
      ImportError: tensorflow-datasets (or an image decoder) is not installed.
      ValueError: ``batch_size`` < 1 or larger than the split, an unknown ``dataset``, or
        examples without ``image`` / ``label`` features.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            'tfds_batch needs tensorflow-datasets and array_record: pip install "zcjax[tfds]"'
        ) from e
    _check_batch_size(batch_size)
    if dataset is not None:
        info: DatasetInfo | None = _dataset_info(dataset)
    else:
        info = DATASETS.get(re.split(r"[/:]", name, maxsplit=1)[0])

    source = tfds.data_source(name, split=split, data_dir=data_dir)
    num_examples = len(source)
    if batch_size > num_examples:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {num_examples} examples of split "
            f"{split!r} of tfds dataset {name!r}"
        )
    indices = np.asarray(
        jax.random.choice(_default_key(key), num_examples, (batch_size,), replace=False)
    )
    try:
        examples = [source[int(i)] for i in indices]
    except ImportError as e:
        raise ImportError(
            f'{e}\nDecoding tfds images needs Pillow: pip install "zcjax[tfds]"'
        ) from e
    missing = {"image", "label"} - set(examples[0])
    if missing:
        raise ValueError(
            f"tfds dataset {name!r} examples lack feature(s) {sorted(missing)}; "
            f"they have {sorted(examples[0])}"
        )
    raw = np.stack([np.asarray(ex["image"]) for ex in examples])
    labels = np.asarray([ex["label"] for ex in examples]).astype(np.int32)

    if np.issubdtype(raw.dtype, np.integer):
        images01 = raw.astype(np.float64) / np.iinfo(raw.dtype).max
    else:
        images01 = raw.astype(np.float64)
    if info is not None:
        mean, std = info.mean, info.std
    else:
        axes = tuple(range(images01.ndim - 1))
        mean = images01.mean(axis=axes)
        std = images01.std(axis=axes)
        std = np.where(std > 0, std, 1.0)
    return jnp.asarray(_normalise(images01, mean, std)), jnp.asarray(labels)


def _describe(x: Any) -> str:
    return f"shape {tuple(x.shape)} and dtype {x.dtype}"


def validate_batch(
    batch: Any, *, image_size: int | None = None, num_classes: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """Checks that ``batch`` is a valid ``(images, labels)`` minibatch.

    Args:
      batch: a pair ``(images, labels)``: images a floating array ``[N, H, W, 3]`` (NHWC),
        labels an integer array ``[N]`` of class indices.
      image_size: if given, H and W must both equal it.
      num_classes: if given, every label must lie in ``[0, num_classes)`` (checked only on
        concrete arrays, not under ``jit``).

    Returns:
      ``(images, labels)`` as jax arrays: images in their own floating dtype, labels int32.

    Raises:
      TypeError: ``batch`` is not a pair, or images/labels are not arrays.
      ValueError: wrong rank, layout, channel count, dtype, length, size or label range;
        the message names the problem and the shape/dtype received.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        got = type(batch).__name__
        if isinstance(batch, (tuple, list)):
            got += f" of length {len(batch)}"
        raise TypeError(f"batch must be a pair (images, labels), got a {got}")
    images, labels = batch
    for what, x in (("images", images), ("labels", labels)):
        if not (hasattr(x, "shape") and hasattr(x, "dtype")):
            raise TypeError(
                f"{what} must be an array (numpy or jax), got {type(x).__name__}"
            )

    if images.ndim != 4:
        raise ValueError(f"images must have rank 4 (NHWC), got {_describe(images)}")
    if images.shape[-1] != 3:
        if images.shape[1] == 3:
            raise ValueError(
                f"images look like NCHW (channels on axis 1), got {_describe(images)}; "
                "zcjax needs NHWC, e.g. images.transpose(0, 2, 3, 1)"
            )
        raise ValueError(
            f"images must have 3 channels on the last axis (NHWC), got {_describe(images)}"
        )
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"images must have a floating dtype (scaled and normalised), got {_describe(images)}"
        )
    if images.shape[0] == 0:
        raise ValueError(f"images must hold at least one example, got {_describe(images)}")

    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"labels must have an integer dtype (class indices), got {_describe(labels)}"
        )
    if labels.ndim != 1:
        hint = " (one-hot? pass class indices, e.g. labels.argmax(-1))" if labels.ndim == 2 else ""
        raise ValueError(f"labels must have rank 1{hint}, got {_describe(labels)}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"labels length {labels.shape[0]} does not match the batch size "
            f"{images.shape[0]} of images ({_describe(images)}; labels {_describe(labels)})"
        )

    if image_size is not None and images.shape[1:3] != (image_size, image_size):
        raise ValueError(
            f"images must be {image_size}x{image_size} (image_size={image_size}), "
            f"got {_describe(images)}"
        )
    if num_classes is not None and not isinstance(labels, jax.core.Tracer):
        values = np.asarray(labels)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"labels must lie in [0, {num_classes}) (num_classes={num_classes}), "
                f"got values in [{low}, {high}] with {_describe(labels)}"
            )
    return jnp.asarray(images), jnp.asarray(labels, dtype=jnp.int32)
