"""SWAP: the number of distinct activation patterns of the network's neurons.

Definition (Peng et al.): forward S samples; per sample, concatenate the outputs of every
ReLU on a 4-D input, flattened, and take their sign; transpose to (neurons x samples);
SWAP = the number of distinct rows, each row being one neuron's pattern over the S
samples. Regularised SWAP (``swap_reg``) multiplies it by ``exp(-(P - mu)^2 / sigma)``,
P the parameter count, to favour networks near a target size mu.

How zcjax computes it, from the ``relu`` capture collection (:mod:`zcjax.network`) of the
shared ``activations`` pass:

* A ReLU's output is positive exactly where its input is, so the sign is
  ``relu_inputs > 0``. Every site of the compiled supernet is captured whatever the
  genotype; a site whose ``relu_modules`` is 0 (no ``nn.ReLU`` of the per-architecture
  network reads it) contributes no rows. A site read by several ReLU modules (a cell node
  feeding several conv ops) gives identical rows, which do not change the distinct count,
  so it is taken once. Modules that only wrap a ReLU (``wrapper_modules``, NB201's
  ``ReLUConvBN``) are not ReLUs and add nothing. Only sites whose per-sample shape is
  3-D (H, W, C: a 4-D input with the batch) count; every space's sites are.
* Each neuron's S signs are packed into ceil(S / 32) uint32 words; the rows are sorted
  lexicographically (``jnp.lexsort``) with "inactive" as the primary key, so the rows of
  the architecture's sites come first, and the count is 1 + the number of changes between
  consecutive active rows (an inactive row is never counted, whatever its pattern). One
  program serves the whole space: the genotype is traced.
* The count is at most min(neurons, 2^S): with few samples it saturates (S = 8 allows
  256 patterns), so two keys may well give the same value.

Decisions (defaults):

* ``swap_samples`` = 16, the paper's S: the first 16 images of the batch. Fewer images
  than that is an error (ValueError at trace time), never a silent smaller S.
* BatchNorm follows the shared pass's ``activation_bn`` (default ``"init"``: eval mode at
  initialisation, samples independent, so the first S rows are exactly a forward of those
  S images). With ``activation_bn="batch"`` the statistics are those of the whole batch;
  pass a batch of exactly S images to forward S samples in train mode.
* The reference draws a fresh initialisation per repetition and averages; zcjax scores
  one initialisation per key (``api.init_key``): repetitions are several keys, averaged
  by the caller.
* ``swap_reg``: P is ``network.param_count(genotype)`` in millions (NAS-Bench-201's
  ``params_mb``, zcjax's ``params`` proxy). ``swap_mu`` = 0.8 and ``swap_sigma`` = 0.1
  are set for NAS-Bench-201 at its benchmark size (C = 16, N = 5, 10 classes): over its
  15,625 cells ``params_mb`` ranges 0.07-1.53 (mean 0.40, std 0.23); the median of the
  156 best on CIFAR-10 (top 1%, NATS test accuracy) is 0.80, and sigma = 0.1 ~ 2 std^2
  makes the factor a Gaussian with the space's own spread (about 0.005 at both the
  smallest and the largest network). They were read off the accuracy table, not tuned for rank
  correlation. Other spaces, and other configs, have other sizes (DARTS networks have
  millions of parameters): set ``swap_mu`` and ``swap_sigma`` for them.

References:
  Peng, Song, Chen, Ji, Chen, Lin, "SWAP-NAS: Sample-Wise Activation Patterns for
  Ultra-fast NAS", ICLR 2024.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zcjax.network import sown_values
from zcjax.proxies.base import ProxyInputs, ProxyOutput, scalar
from zcjax.proxies.options import Option

Array = jax.Array
_WORD = 32  # sign bits per packed word (uint32)

SWAP_SAMPLES = Option(
    "swap_samples", 16,
    doc="S, how many images of the batch (the first S) SWAP reads (the paper's 16); at "
        "least 1 and at most the batch size.")
SWAP_MU = Option(
    "swap_mu", 0.8,
    doc="swap_reg's target size mu, in millions of parameters (default: NAS-Bench-201's "
        "top-1% median, see zcjax.proxies.swap).")
SWAP_SIGMA = Option(
    "swap_sigma", 0.1,
    doc="swap_reg's width sigma in exp(-(P - mu)^2 / sigma), P in millions (default for "
        "NAS-Bench-201, see zcjax.proxies.swap); positive.")
OPTIONS = (SWAP_SAMPLES,)
REG_OPTIONS = (SWAP_SAMPLES, SWAP_MU, SWAP_SIGMA)


def _samples(inputs: ProxyInputs) -> int:
    samples, batch = inputs.options["swap_samples"], inputs.images.shape[0]
    if not 1 <= samples <= batch:
        raise ValueError(f"swap_samples={samples} must be between 1 and the batch size "
                         f"({batch} images)")
    return samples


def pack_signs(codes: Array) -> Array:
    """(R, S) bool -> (R, ceil(S / 32)) uint32: bit k of word w is sample 32 w + k."""
    rows, samples = codes.shape
    words = -(-samples // _WORD)
    padded = jnp.pad(codes, ((0, 0), (0, words * _WORD - samples)))
    bits = padded.reshape(rows, words, _WORD).astype(jnp.uint32)
    return jnp.sum(bits << jnp.arange(_WORD, dtype=jnp.uint32), axis=-1, dtype=jnp.uint32)


def distinct_rows(words: Array, valid: Array) -> Array:
    """The number of distinct rows of ``words`` (R, W) among those where ``valid`` (R,)."""
    # lexsort's last key is the primary one: valid rows first, then by every word.
    order = jnp.lexsort([words[:, w] for w in reversed(range(words.shape[1]))] + [~valid])
    ordered, kept = words[order], valid[order]
    changed = jnp.any(ordered[1:] != ordered[:-1], axis=1)
    first = jnp.concatenate([jnp.ones((1,), bool), changed])
    return jnp.sum(first & kept)


def activation_patterns(inputs: ProxyInputs, passes: Mapping[str, Any]) -> tuple[Array, Array]:
    """Every captured neuron's packed signs over the first S samples, (R, W) uint32, and
    whether a ReLU of this architecture reads it, (R,) bool."""
    samples = _samples(inputs)
    rows, valid = [], []
    for relu_inputs, relu_modules, _ in sown_values(passes["activations"]["relu"]):
        site_axes = relu_modules.ndim  # leading axes of stacked sites
        per_sample = relu_inputs.shape[site_axes + 1:]
        if len(per_sample) != 3:  # a ReLU on a non-4-D input: not SWAP's
            continue
        neurons = int(np.prod(per_sample))
        sites = relu_inputs.reshape((-1, relu_inputs.shape[site_axes]) + per_sample)
        codes = sites[:, :samples].reshape(sites.shape[0], samples, neurons) > 0
        codes = jnp.swapaxes(codes, 1, 2).reshape(-1, samples)  # (sites * neurons, S)
        rows.append(pack_signs(codes))
        valid.append(jnp.repeat(relu_modules.reshape(-1) > 0, neurons))
    return jnp.concatenate(rows), jnp.concatenate(valid)


def swap_count(inputs: ProxyInputs, passes: Mapping[str, Any]) -> Array:
    """SWAP as an exact count in ``inputs.wide``."""
    words, valid = activation_patterns(inputs, passes)
    return distinct_rows(words, valid).astype(inputs.wide)


def swap(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """The number of distinct sign patterns (over S samples) of the ReLU neurons."""
    return scalar(inputs, swap_count(inputs, passes))


def size_factor(inputs: ProxyInputs) -> Array:
    """exp(-(P - mu)^2 / sigma), P the active parameter count in millions."""
    mu, sigma = inputs.options["swap_mu"], inputs.options["swap_sigma"]
    if not sigma > 0:
        raise ValueError(f"swap_sigma={sigma} must be positive")
    millions = jnp.asarray(inputs.network.param_count(inputs.genotype), inputs.wide) / 1e6
    return jnp.exp(-((millions - mu) ** 2) / sigma)


def swap_reg(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """SWAP times exp(-(P - mu)^2 / sigma): regularised towards mu million parameters."""
    return scalar(inputs, swap_count(inputs, passes) * size_factor(inputs))
