"""The OpenAPI document as the API contract: every status an operation can answer, with its media type.

FastAPI documents only 200 and 422. This post-processes the generated document so that a client
generated from it (the way hospitals integrate) knows every answer: 400/413/415 for bodies, 401/403/429
for keyed routes, 404 for path lookups, 503 (with ``Retry-After`` while the index warms), each as
``application/problem+json`` with one shared ``Problem`` schema, and the media types of binary answers.
Which statuses apply is derived from the operation itself (role, body, parameters) plus a small table of binary answers.
"""

from __future__ import annotations

from typing import Any

from radclip.service.problems import PROBLEM_JSON
from radclip.service.roles import PUBLIC, rule_for

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; `detail` says what was wrong and `fix` how to fix it.",
    "required": ["type", "title", "status", "detail", "fix"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "fix": {"type": "string"},
    },
    "additionalProperties": True,  # e.g. `errors` (422), `index` (503), `required_role` (403)
}
RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}}

DESCRIPTIONS = {
    400: "Malformed request: unparseable body, empty or corrupt upload, missing multipart `file` part",
    401: "Missing, unknown, expired or revoked API key",
    403: "The key's role may not call this operation, or a cross-site browser write was refused",
    404: "No such resource (a retired condition's history too: its versions stay in the registry for audit)",
    405: "Method not allowed on this path (the `Allow` header lists the allowed ones)",
    413: "Body or decoded image over the configured limit",
    415: "Unsupported content type or image encoding",
    422: "The request does not match the schema, or names an unknown finding or an invalid definition",
    429: "Over the key's rate limit; retry after `Retry-After` seconds",
    500: "Unexpected server error (logged; never carries a traceback)",
    503: "A model, the case index, the registry or the audit trail is unavailable; "
    "while the index warms, `Retry-After` says when to retry",
}
IMAGE_MEDIA = ("application/dicom", "image/png", "image/jpeg")
# (method, OpenAPI path) -> media types of a binary 200 answer, replacing the default application/json.
BINARY_ANSWERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/api/v1/studies/{study_id}/file"): IMAGE_MEDIA,
    ("GET", "/api/v1/studies/{study_id}/thumbnail"): ("image/png",),
    ("POST", "/api/v1/pixels"): ("application/octet-stream",),
    ("GET", "/metrics"): ("text/plain",),
}
# Query parameters naming a triage finding: an enum of the loaded model's labels.
FINDING_PARAMETERS: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/explain"): "label",
    ("POST", "/api/v1/cam"): "label",
    ("POST", "/api/v1/screen"): "explain",
}


def statuses_for(method: str, path: str, op: dict[str, Any]) -> set[int]:
    """Every error status ``method path`` can answer, from its role, body and parameters."""
    out: set[int] = set()
    if rule_for(method, path).role != PUBLIC:
        out |= {401, 403, 429}
    if path.startswith("/api/"):
        out |= {503}  # a failed audit write, or a model / index / registry not loaded
    if "requestBody" in op:
        out |= {400, 413, 415, 422}
    if op.get("parameters"):
        out |= {422}
    if any(p.get("in") == "path" for p in op.get("parameters", [])):
        out |= {404}
    return out


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": DESCRIPTIONS.get(status, "Error"),
        "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
    }
    if status in (429, 503):
        # 429 always carries it; 503 only while the index warms (a missing model has no ETA).
        response["headers"] = {"Retry-After": {**RETRY_AFTER, "required": status == 429}}
    return response


def document_operation(method: str, path: str, op: dict[str, Any]) -> None:
    """Add the problem answers and binary media types to one operation, in place."""
    responses = op.setdefault("responses", {})
    for status in sorted(statuses_for(method, path, op)):
        responses[str(status)] = _problem_response(status)
    binary = BINARY_ANSWERS.get((method, path))
    ok = next((code for code in ("200", "201") if code in responses), None)
    if binary and ok:
        responses[ok]["content"] = {m: {"schema": {"type": "string", "format": "binary"}} for m in binary}


def _finding_enum(method: str, path: str, op: dict[str, Any], labels: list[str]) -> None:
    name = FINDING_PARAMETERS.get((method, path))
    for param in op.get("parameters", []):
        if param.get("name") == name and param.get("in") == "query":
            schema = param.setdefault("schema", {})
            target = next((s for s in schema.get("anyOf", []) if s.get("type") == "string"), schema)
            target["enum"] = list(labels)


def _plain_tuples(node: Any) -> None:
    """``prefixItems`` of one repeated type (pydantic's ``tuple[int, int]``) -> ``items`` + min/maxItems.

    The same constraint, spelled so that validators which translate 3.1 to older JSON Schema drafts
    (schemathesis's response check among them) read it instead of rejecting the document.
    """
    if isinstance(node, dict):
        prefix = node.get("prefixItems")
        if (
            isinstance(prefix, list)
            and prefix
            and all(p == prefix[0] for p in prefix)
            and "items" not in node
        ):
            node["items"] = node.pop("prefixItems")[0]
        for value in node.values():
            _plain_tuples(value)
    elif isinstance(node, list):
        for value in node:
            _plain_tuples(value)


def document_contract(doc: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """The whole document, with each operation's answers completed and the ``Problem`` schema added.

    ``labels`` are the triage model's findings (the enum of ``?label=`` / ``?explain=``).
    """
    doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    doc["components"]["schemas"].pop("HTTPValidationError", None)
    doc["components"]["schemas"].pop("ValidationError", None)
    _plain_tuples(doc["components"]["schemas"])
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            if isinstance(op, dict) and "responses" in op:
                document_operation(method.upper(), path, op)
                _finding_enum(method.upper(), path, op, labels)
    return doc
