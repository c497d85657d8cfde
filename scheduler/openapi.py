"""The OpenAPI 3.1 document, generated from the endpoint table and its pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from scheduler.api import ENDPOINTS, PREFIX, Endpoint

_PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details; `errors` names each offending field.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
    },
    "required": ["type", "title", "status", "detail"],
}
_STATUS_TEXT = {
    401: "Missing or unknown API key",
    404: "Not found (or another organisation's)",
    409: "Conflict",
    413: "Request body too large",
    422: "Invalid input",
}


def _models() -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    for ep in ENDPOINTS:
        for model in (ep.body, ep.response):
            if model is not None:
                seen[model.__name__] = model
    return list(seen.values())


def _query_parameters(ep: Endpoint) -> list[dict[str, Any]]:
    if ep.query is None:
        return []
    schema = ep.query.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def document(base_url: str) -> dict[str, Any]:
    models = _models()
    _, defs = models_json_schema(
        [
            (m, "validation" if any(ep.body is m for ep in ENDPOINTS) else "serialization")
            for m in models
        ],
        ref_template="#/components/schemas/{model}",
    )
    schemas = dict(defs.get("$defs", {}))
    schemas["Problem"] = _PROBLEM
    paths: dict[str, dict[str, Any]] = {}
    for ep in ENDPOINTS:
        op: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": ep.handler.__name__,
            "parameters": _query_parameters(ep),
            "responses": {},
        }
        for name in re.findall(r"{(\w+)}", ep.path):
            op["parameters"].append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            )
        if ep.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{ep.body.__name__}"}
                    }
                },
            }
        ok: dict[str, Any] = {"description": "OK"}
        if ep.media_type is not None:
            ok["content"] = {ep.media_type: {"schema": {"type": "string", "format": "binary"}}}
        elif ep.response is not None:
            ok["content"] = {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{ep.response.__name__}"}
                }
            }
        op["responses"][str(ep.status)] = ok
        # Any request body is read (and may be refused as too large) before anything else.
        errors = (*ep.errors, 413) if ep.body is not None else ep.errors
        for status in errors:
            op["responses"][str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        paths.setdefault(PREFIX + ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Viva organisation API",
            "version": "1",
            "description": "Evaluators, availability, candidate invitations, slots and "
            "bookings. Authenticate with `Authorization: Bearer <api key>`.",
        },
        "servers": [{"url": base_url.rstrip("/")}],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
