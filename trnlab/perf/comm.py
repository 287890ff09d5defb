"""Collectives on a two-tier network: a scale-up domain and scale-out NICs (alpha-beta model).

A group of ``n`` chips whose consecutive members are ``stride`` ranks apart has
``n_in = clip(domain // stride, 1, n)`` members inside one scale-up domain and ``n / n_in``
domains. Collectives spanning domains are hierarchical (NCCL's tree/ring hierarchy, Megatron's
two-level all-reduce): the intra-domain phase runs on scale-up links, the inter-domain phase on
every chip's own NIC with ``1/n_in`` of the data.

Ring reduce-scatter or all-gather of a tensor of ``B`` bytes per chip over ``n`` chips costs
``(n - 1)/n * B / bw + (n - 1) * alpha`` (Thakur et al., IJHPCA 2005); an all-reduce is both.
Bandwidths are per chip and per direction, already multiplied by the achieved fraction.
"""

from __future__ import annotations

from typing import Any

from trnlab.perf._xp import xp_of


def members_in_domain(n: Any, stride: Any, domain: Any) -> Any:
    """Members of an ``n``-chip group (rank ``stride`` apart) inside one domain [1]."""
    xp = xp_of(n, stride, domain)
    ratio = domain / stride
    if not hasattr(ratio, "shape"):
        ratio = xp.asarray(ratio)
    return xp.minimum(n, xp.maximum(xp.floor(ratio), 1.0))


def _ring(nbytes: Any, n: Any, bw: Any, alpha: Any) -> Any:
    return (n - 1.0) / n * nbytes / bw + (n - 1.0) * alpha


def reduce_scatter(nbytes: Any, n: Any, n_in: Any, bw_in: Any, alpha_in: Any, bw_out: Any,
                   alpha_out: Any) -> Any:
    """Hierarchical reduce-scatter (or all-gather) of ``nbytes`` [B] per chip over ``n`` chips [s].

    ``n_in`` chips share a domain (bandwidth ``bw_in`` [B/s], latency ``alpha_in`` [s]); the
    ``n / n_in`` domains exchange ``nbytes / n_in`` over ``bw_out``, ``alpha_out``.
    """
    n_out = n / n_in
    return _ring(nbytes, n_in, bw_in, alpha_in) + _ring(nbytes / n_in, n_out, bw_out, alpha_out)


def all_reduce(nbytes: Any, n: Any, n_in: Any, bw_in: Any, alpha_in: Any, bw_out: Any,
               alpha_out: Any) -> Any:
    """Hierarchical all-reduce [s]: the faster of ring (reduce-scatter + all-gather) and
    recursive doubling (``log2 n`` steps of the whole message), as NCCL switches to tree/LL
    algorithms for small messages (Thakur et al. 2005)."""
    xp = xp_of(nbytes, n, n_in, bw_in, bw_out)
    ring = 2.0 * reduce_scatter(nbytes, n, n_in, bw_in, alpha_in, bw_out, alpha_out)
    n_out = n / n_in
    doubling = xp.log2(n_in) * (alpha_in + nbytes / bw_in) \
        + xp.log2(n_out) * (alpha_out + nbytes / bw_out)
    return xp.minimum(ring, doubling)


def all_to_all(nbytes: Any, n: Any, n_in: Any, bw_in: Any, alpha_in: Any, bw_out: Any,
               alpha_out: Any) -> Any:
    """All-to-all where each chip sends ``nbytes`` [B] spread evenly over the ``n`` members [s].

    The share for the ``n_in - 1`` peers in the domain goes over scale-up, the rest over the
    chip's NIC; both proceed at once, so the slower one sets the time.
    """
    xp = xp_of(nbytes, n, n_in, bw_in, bw_out)
    inside = nbytes * (n_in - 1.0) / n / bw_in + (n_in - 1.0) * alpha_in
    outside = nbytes * (n - n_in) / n / bw_out + (n - n_in) / n_in * alpha_out
    return xp.maximum(inside, outside)


def send_recv(nbytes: Any, bw: Any, alpha: Any) -> Any:
    """Point-to-point transfer of ``nbytes`` [B] [s]."""
    return nbytes / bw + alpha
