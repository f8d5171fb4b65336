"""provgate: a provenance gate for AI-generated media in delivery pipelines.

The library is the product; ``provgate.cli`` is a thin layer over it. The data flow is
``assets -> probe -> signals -> verdict -> policy -> actions -> ledger``, run by ``pipeline``.
"""

__version__ = "0.1.0"
