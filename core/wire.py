"""The wire types of the platform's shared routes, as msgspec Structs: the one error body
every route answers with, health, and a tenant's admin keys."""

from __future__ import annotations

from msgspec import Struct


class Health(Struct):
    status: str = "ok"


class ErrorDetail(Struct):
    path: str
    message: str


class ErrorBody(Struct):
    """Every 4xx/5xx body: a stable code, and where and what for field errors."""

    error: str
    detail: ErrorDetail


# ---- a tenant's admin keys (core/keys_api.py) -----------------------------------------
class AdminKey(Struct):
    key_id: str  # the start of the key's hash; never the key
    created_at: str
    revoked: bool
    current: bool  # the key this request was made with


class AdminKeyList(Struct):
    keys: list[AdminKey]


class AdminKeyCreated(Struct):
    key_id: str
    admin_key: str  # shown this once; only its hash is stored
    created_at: str
