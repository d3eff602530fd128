"""Every operation of the OpenAPI document at /schema, fuzzed by schemathesis.

With the tenant's admin key and without any key, in positive mode (data the schema
allows) and negative mode (data it forbids): no 5xx ever, every status documented, every
body of the documented type and shape, and data the schema forbids refused with a 4xx.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from core.limits import Limit

# SDP bodies for WHIP/WHEP: schemathesis has no generator for application/sdp.
_OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n"
schemathesis.openapi.media_type("application/sdp", st.one_of(
    st.binary(max_size=512),
    st.integers(0, len(_OFFER)).map(lambda n: _OFFER[:n].encode()),
    st.text(max_size=256).map(str.encode),
))

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 12


def _fuzz(operation, base_url: str, headers: dict, mode: GenerationMode) -> None:
    checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=checks)

    run()


def _modes(operation) -> tuple[GenerationMode, ...]:
    """Negative data for a multipart form is not negative: every form value is text (a
    title of `[1, 2]` is a valid title), so the upload is fuzzed with positive data only."""
    if "multipart/form-data" in str(operation.definition.raw.get("requestBody", "")):
        return (GenerationMode.POSITIVE,)
    return (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def test_every_operation_with_and_without_a_key(server_factory, tenant_factory):
    # Rate limits off, or most of the examples would be 429s (tests/core/test_limits.py covers them).
    server = server_factory(limit_ip=Limit(0, 0), limit_whep_ip=Limit(0, 0), limit_admin_ip=Limit(0, 0))
    _, key = tenant_factory()
    schema = schemathesis.openapi.from_url(server.base_url + "/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 43, [f"{op.method} {op.path}" for op in operations]
    failures = {}
    for operation in operations:
        for who, headers in (("admin", {"Authorization": f"Bearer {key}"}), ("anonymous", {})):
            for mode in _modes(operation):
                try:
                    _fuzz(operation, server.base_url, headers, mode)
                except Unsatisfiable:  # no parameter or body to break: nothing negative to send
                    assert mode == GenerationMode.NEGATIVE, f"{operation.method} {operation.path}"
                except (Exception, BaseExceptionGroup) as exc:  # all of them: one report for the API
                    failures[f"{operation.method.upper()} {operation.path} as {who}, {mode.value}"] = str(exc)[:800]
    assert not failures, "\n\n".join(f"{name}:\n{why}" for name, why in failures.items())
