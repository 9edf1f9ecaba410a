"""The event contract: pydantic v2 models for every henvis event (DESIGN §4).

These models are the single source: JSON Schema and the AsyncAPI document in
``schemas/generated/`` are exported from them (``henvis schemas export``).
Evolution rule: within a ``v1`` topic only optional fields with defaults may be added;
anything else is a new topic version.
"""
