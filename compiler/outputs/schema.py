"""JSON Schemas of the definitions (for editors) and of the bundle (for SDK authors)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from expc.outputs import ledger
from expc.outputs.bundle_types import Bundle
from expc.reading.model import KINDS, DefinitionField

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _document(schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {"$schema": SCHEMA_DIALECT, **schema, "title": title}


def schemas() -> dict[str, dict[str, Any]]:
    """File name under `generated/schema/` -> schema document."""
    documents = {
        "definition.schema.json": _document(
            TypeAdapter(DefinitionField).json_schema(), "expc definition (any kind)"
        ),
        "bundle.schema.json": _document(TypeAdapter(Bundle).json_schema(), "expc bundle"),
        "ledger.schema.json": _document(ledger.schema(), "expc ledger"),
    }
    for kind, model in KINDS.items():
        documents[f"{kind}.schema.json"] = _document(model.model_json_schema(), f"expc {kind}")
    return documents
