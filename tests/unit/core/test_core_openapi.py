"""The OpenAPI description in the repository is the one the code serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from dynod.api.openapi import describe
from dynod.api.server import Api, make_app

COMMITTED = Path(__file__).resolve().parents[3] / "dynod" / "api" / "openapi.json"


def test_committed_description_matches_the_routes() -> None:
    served = describe(make_app(cast(Api, None)))
    assert json.loads(COMMITTED.read_text()) == served, (
        "dynod/api/openapi.json is stale: regenerate it with "
        "`dynod openapi > dynod/api/openapi.json`."
    )


def test_every_operation_is_described() -> None:
    served = describe(make_app(cast(Api, None)))
    operations = [op for ops in served["paths"].values() for op in ops.values()]
    assert len(operations) > 40
    assert all(op["summary"] and op["operationId"] for op in operations)
    assert "/apps/{app}/releases" in served["paths"]
    assert "/oauth/authorizations" in served["paths"]
