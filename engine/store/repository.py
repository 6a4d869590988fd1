"""The database as the engine sees it: one store per aggregate, built once per process.

`repo.payments.claim_pending(...)`, `repo.deliveries.redeliver(...)`: each store runs its own
SQL (engine/store/<name>.sql) and translates driver errors the same way (base.translated).
"""

from __future__ import annotations

import asyncpg

from engine.store.checkout import Checkout
from engine.store.customers import Customers
from engine.store.deliveries import Deliveries
from engine.store.endpoints import Endpoints
from engine.store.history import History
from engine.store.merchants import Merchants
from engine.store.ops import Ops
from engine.store.payments import Payments
from engine.store.refunds import Refunds


class Repository:
    """Every store on one pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.payments = Payments(pool)
        self.refunds = Refunds(pool)
        self.deliveries = Deliveries(pool)
        self.endpoints = Endpoints(pool)
        self.merchants = Merchants(pool)
        self.history = History(pool)
        self.ops = Ops(pool)
        self.checkout = Checkout(pool)
        self.customers = Customers(pool)
