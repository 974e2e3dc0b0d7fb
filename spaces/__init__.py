"""Search spaces (installed as ``zcjax.spaces``).

Each space module turns genotypes into a :class:`zcjax.network.Network`; a space never
imports a proxy.
"""
