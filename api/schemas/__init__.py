"""The HTTP contract's bodies as pydantic models, one module per resource.

Handlers answer with these models (api/responses.send) and the OpenAPI document is generated
from them (api/ops/openapi.py), so the two cannot drift apart.
"""
