"""Property-based API test (issue 11): schemathesis generates requests from the OpenAPI document and
sends them to a running service; no request may get a 5xx, and every answer must match the document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from server.openapi import openapi_document
from tests.live_server import LiveServer, live_server

schema = schemathesis.openapi.from_dict(openapi_document())
#: Examples per operation: enough to find a 500, small enough for CI.
EXAMPLES = 60


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("schemathesis")) as server:
        yield server


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: schemathesis.Case, live: LiveServer) -> None:
    headers = live.admin() if case.operation.path not in ("/validate/check",) else None
    case.call_and_validate(
        base_url=live.url,
        headers=headers,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
