"""The OpenAPI 3.1 document, generated from the endpoint table and its pydantic models.

Every operation carries a request example (a body example, query parameter examples), and
`tests/scheduler/test_api.py` checks each one against the model that validates requests, so
an example cannot drift from what the server accepts. Descriptions are Markdown; the
reference page renders them with raw HTML disabled.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from scheduler.web.api import ENDPOINTS, PREFIX, Endpoint
from scheduler.webhooks.events import EVENT_MODELS

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


_EVALUATOR_ID = "5a0b6c1e-8f3d-4c2a-9b7e-2d4f6a8c0e13"
_EXAMPLE_ID = "0f6c2d3e-4b5a-4e7f-8a9b-1c2d3e4f5a6b"
# Request examples by operationId: "body" is the JSON body (or "bodies": several, named),
# "query" the query string. Every operation has one, even if it is only its path.
EXAMPLES: dict[str, dict[str, Any]] = {
    "patch_organisation": {
        "bodies": {
            "recording": {"summary": "Record the interviews", "value": {"recording": True}},
            "contact": {
                "summary": "Change the contact address",
                "value": {"contact_email": "oral@cci.example"},
            },
        }
    },
    "create_key": {"body": {"name": "LMS 2027"}},
    "create_evaluator": {
        "body": {
            "name": "Claire Martin",
            "email": "claire.martin@cci.example",
            "timezone": "Europe/Paris",
            "languages": ["fr", "en"],
            "locale": "fr",
        }
    },
    "patch_evaluator": {"body": {"languages": ["fr", "en", "es"]}},
    "put_availability": {
        "body": {
            "weekly": [
                {"day": "mon", "start": "09:00", "end": "12:00"},
                {"day": "mon", "start": "14:00", "end": "17:30"},
                {"day": "thu", "start": "09:00", "end": "12:00"},
            ],
            "overrides": [
                {"date": "2026-12-24", "intervals": []},
                {"date": "2026-12-31", "intervals": [{"start": "09:00", "end": "11:00"}]},
            ],
        }
    },
    "put_calendars": {
        "bodies": {
            "caldav": {
                "summary": "A CalDAV calendar and a published ICS calendar",
                "value": {
                    "calendars": [
                        {
                            "type": "caldav",
                            "url": "https://caldav.example.org/dav/calendars/claire/work/",
                            "username": "claire",
                            "password": "app-password",
                        },
                        {"type": "ics", "url": "https://calendar.example.org/claire.ics"},
                    ]
                },
            },
            "none": {"summary": "No external calendar", "value": {"calendars": []}},
        }
    },
    "create_candidate": {
        "body": {
            "name": "Léa Dubois",
            "email": "lea.dubois@example.org",
            "language": "en",
            "locale": "fr",
            "timezone": "Europe/Paris",
            "book_by": "2026-12-20",
        }
    },
    "list_candidates": {"query": {"unservable": "true"}},
    "org_slots": {
        "query": {
            "language": "en",
            "from": "2026-12-01",
            "to": "2026-12-07",
            "timezone": "Europe/Paris",
        }
    },
    "list_bookings": {
        "query": {"from": "2026-12-01", "to": "2026-12-31", "evaluator_id": _EVALUATOR_ID}
    },
    "erase_candidate_data": {"body": {"mode": "erase"}},
    "delete_evaluator": {"body": {"mode": "erase"}},
    "put_retention": {"body": {"recordings": 14, "candidates": 365}},
    "hold_candidate": {"body": {"reason": "Appeal lodged on 2026-12-04 (case 2026-117)."}},
    "put_privacy": {
        "body": {
            "consent_notices": {
                "en": "This interview is recorded for the certification's appeals; the "
                "recording is deleted after 30 days.",
                "fr": "Cet entretien est enregistré pour les recours de la certification ; "
                "l'enregistrement est supprimé après 30 jours.",
            }
        }
    },
    "patch_booking": {"body": {"recording": False}},
    "put_assessment_scheme": {
        "body": {
            "levels": [
                {"code": code, "labels": {"fr": label, "en": label}}
                for code, label in (("A2", "A2"), ("B1", "B1"), ("B2", "B2"), ("C1", "C1"))
            ],
            "criteria": [
                {"code": "range", "labels": {"fr": "Étendue", "en": "Range"}},
                {"code": "accuracy", "labels": {"fr": "Correction", "en": "Accuracy"}},
                {"code": "fluency", "labels": {"fr": "Aisance", "en": "Fluency"}},
            ],
        }
    },
    "put_booking_assessment": {
        "body": {
            "levels": {
                "range": "B2",
                "accuracy": "B1",
                "fluency": "B2",
                "interaction": "B2",
                "coherence": "B2",
            },
            "overall_level": "B2",
            "reason": "Second marking by the jury: accuracy is B1.",
        }
    },
    "create_webhook": {
        "body": {
            "url": "https://lms.cci.example/hooks/viva",
            "events": ["booking.created", "booking.cancelled", "booking.completed"],
        }
    },
    "patch_webhook": {"body": {"enabled": False}},
    "put_result": {
        "body": {
            "parts": [{"name": "Written test", "level": "B1", "score": 71.5}],
            "overall_level": "B2",
            "target_level": "B2",
            "target_reached": True,
        }
    },
    "publish_many": {"body": {"candidate_ids": ["0c9e2b7a-3f14-4d8e-a6b1-5e7f9a2c4d60"]}},
    "revoke_result": {"body": {"reason": "Identity fraud established on 2027-01-12."}},
    "list_results": {"query": {"status": "to_review"}},
    "force_majeure_booking": {
        "bodies": {
            "move": {
                "summary": "Move to another time (and evaluator)",
                "value": {
                    "action": "move",
                    "start": "2026-12-03T14:00:00+01:00",
                    "evaluator_id": _EVALUATOR_ID,
                    "reason": "The evaluator is ill; the candidate agreed by phone.",
                },
            },
            "cancel": {
                "summary": "Cancel",
                "value": {"action": "cancel", "reason": "The session is cancelled (strike)."},
            },
        }
    },
}

_MARKDOWN = MarkdownIt("commonmark", {"html": False})


def markdown(text: str | None) -> Markup:
    """A description as HTML: Markdown, with any raw HTML in it shown as text."""
    return Markup(_MARKDOWN.render(text or ""))


def markdown_inline(text: str | None) -> Markup:
    """The same for a table cell or a line: no paragraph around it."""
    return Markup(_MARKDOWN.renderInline(text or ""))


def example_requests(doc: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """operationId -> [(title, curl command)], built from the document's own examples."""
    base = doc["servers"][0]["url"] if doc.get("servers") else ""
    out: dict[str, list[tuple[str, str]]] = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            url = path
            query: dict[str, str] = {}
            for p in op.get("parameters", []):
                if "example" not in p:
                    continue
                if p["in"] == "path":
                    url = url.replace("{" + p["name"] + "}", str(p["example"]))
                elif p["in"] == "query":
                    query[p["name"]] = str(p["example"])
            if query:
                url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
            head = "curl" + ("" if method == "get" else f" -X {method.upper()}")
            head += f' {shlex.quote(base + url)} \\\n  -H "Authorization: Bearer $VIVA_API_KEY"'
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            bodies = (
                [("", body["example"])]
                if "example" in body
                else [(ex["summary"], ex["value"]) for ex in body.get("examples", {}).values()]
            )
            commands = []
            for title, value in bodies or [("", None)]:
                command = head
                if value is not None:
                    data = json.dumps(value, ensure_ascii=False, indent=2)
                    command += " \\\n  -H 'Content-Type: application/json'"
                    command += f" \\\n  -d {shlex.quote(data)}"
                commands.append((title, command))
            out[op["operationId"]] = commands
    return out


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
    example = EXAMPLES.get(ep.handler.__name__, {}).get("query", {})
    params = []
    for name, prop in schema["properties"].items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if "description" in prop:
            param["description"] = prop["description"]
        if name in example:
            param["example"] = example[name]
        params.append(param)
    return params


def _webhooks() -> dict[str, Any]:
    """What Viva posts to a webhook, per event type (OpenAPI 3.1 `webhooks`): the body's
    schema, signed per Standard Webhooks (docs/integrations.md)."""
    out: dict[str, Any] = {}
    for name, model in EVENT_MODELS.items():
        ref = {"$ref": f"#/components/schemas/{model.__name__}"}
        out[name] = {
            "post": {
                "summary": (model.__doc__ or name).strip(),
                "operationId": "webhook_" + name.replace(".", "_"),
                "description": "Headers `webhook-id`, `webhook-timestamp` and "
                "`webhook-signature` (Standard Webhooks); answer 2xx to acknowledge.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
                "responses": {"200": {"description": "Received (any 2xx)"}},
                "security": [],
            }
        }
    return out


def document(base_url: str) -> dict[str, Any]:
    models = _models()
    _, defs = models_json_schema(
        [
            (m, "validation" if any(ep.body is m for ep in ENDPOINTS) else "serialization")
            for m in models
        ]
        + [(m, "serialization") for m in EVENT_MODELS.values()],
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
                    "example": _EVALUATOR_ID
                    if name == "id" and "evaluators" in ep.path
                    else _EXAMPLE_ID,
                }
            )
        if ep.body is not None:
            media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{ep.body.__name__}"}}
            example = EXAMPLES.get(ep.handler.__name__, {})
            if "body" in example:
                media["example"] = example["body"]
            if "bodies" in example:
                media["examples"] = example["bodies"]
            op["requestBody"] = {
                "required": not ep.body_optional,
                "content": {"application/json": media},
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
        "webhooks": _webhooks(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
