"""A router by its name in the catalog (routing/catalog.py)."""
from __future__ import annotations

from mllmcl.cl.context import Context
from mllmcl.cl.routing.catalog import ROUTERS
from mllmcl.cl.routing.mllm import MLLMRouter
from mllmcl.cl.routing.oracle import OracleRouter
from mllmcl.cl.routing.prototype import PrototypeRouter
from mllmcl.cl.routing.router import Router

IMPLEMENTATIONS: dict[str, type] = {router.kind: router for router in (MLLMRouter, OracleRouter, PrototypeRouter)}
"""Router name → its class; the same names as the catalog (tests/test_catalogs.py)."""


def build_router(kind: str, ctx: Context) -> Router:
    ROUTERS.get(kind)  # an unknown name is a UserError listing the known ones
    return IMPLEMENTATIONS[kind](ctx)
