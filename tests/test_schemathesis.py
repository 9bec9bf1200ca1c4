"""Property-based API tests from the OpenAPI document (schemathesis, in-process).

Schemathesis generates requests from the shop's own OpenAPI document: valid ones (positive)
and ones that break it on purpose (negative), and stateful sequences that follow the
document's links (POST /api/orders -> GET /api/orders/{order_id}). Every answer must be no
server error and must conform to the document: a listed status code, its content type, a
body that matches its schema, its headers. The same tests run against the monolith and the
gateway of the microservices.
"""

from __future__ import annotations

import collections

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import report, start_microservices, start_monolith

PUBLIC = r"^/api/(products|orders)"  # the catalog's and the orders' API: what a customer uses
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance,
               response_schema_conformance, response_headers_conformance]
CHECKS = {GenerationMode.POSITIVE: CONFORMANCE, GenerationMode.NEGATIVE: CONFORMANCE + [negative_data_rejection]}
EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 20}  # per operation
BOUNDED = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck),
               phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])

# The monolith, and the microservices through their gateway, whose /openapi.json describes the
# same public API (built from the same routers) plus the gateway's own answers.
TARGETS = ["monolith", "gateway"]
tally: dict = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module", params=TARGETS)
def api(request):
    """(base URL, schema of its public operations) of a shop of its own."""
    if request.param == "monolith":
        deployment = start_monolith("schemathesis-monolith")
    else:
        deployment = start_microservices("schemathesis-microservices")
    url = deployment.client.url
    try:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json").include(path_regex=PUBLIC)
        yield request.param, url, schema
    finally:
        deployment.cleanup()


def public_operations(schema) -> list:
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/api/products", "/api/products/{product_id}", "/api/orders", "/api/orders/{order_id}"} <= paths, (
        f"the OpenAPI document does not describe the public API; it has {sorted(paths)}")
    return operations


def summary(target: str, what: str) -> str:
    counts = tally[(target, what)]
    unsatisfiable = counts["operations without negative cases"]
    return (f"schemathesis {what} on {target}: {counts['requests']} requests, {counts['failures']} failures"
            + (f", {unsatisfiable} operations without negative cases" if unsatisfiable else "") +
            f" ({', '.join(f'{s}: {n}' for s, n in sorted((s, n) for s, n in counts.items() if isinstance(s, int)))})")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_every_answer_conforms(api, mode):
    target, url, schema = api
    counts, failures = tally[(target, mode.value)], []
    for operation in public_operations(schema):

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(max_examples=EXAMPLES[mode], **BOUNDED)
        def run(case):
            response = case.call(base_url=url, timeout=10)
            counts["requests"] += 1
            counts[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS[mode])
            except AssertionError as failure:  # schemathesis' FailureGroup: keep going, report all
                counts["failures"] += 1
                failures.append(f"{operation.label}: {str(failure)[:1500]}")

        try:
            run()
        except hypothesis.errors.Unsatisfiable:  # nothing in it can be made invalid (a free-form path id)
            counts["operations without negative cases"] += 1
    report("\n" + summary(target, mode.value))
    assert counts["requests"] >= 4 * 10, "too few requests were generated to mean anything"
    assert not failures, f"{len(failures)} failures; the first:\n" + "\n".join(failures[:3])


def test_stateful_sequences_follow_the_links(api):
    """Place an order, then read it back through the link in the document, and so on."""
    target, url, schema = api
    public_operations(schema)
    counts = tally[(target, "stateful")]

    class Shop(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": url, "timeout": 10}

        def after_call(self, response, case):
            super().after_call(response, case)
            counts["requests"] += 1
            counts[response.status_code] += 1
            if case.operation.label == "GET /api/orders/{order_id}" and response.status_code == 200:
                counts["orders read back"] += 1

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            try:
                case.validate_response(response, checks=CONFORMANCE, transport_kwargs=kwargs or None,
                                       recorder=self.recorder)
            except AssertionError:
                counts["failures"] += 1
                raise

    Shop.run(settings=hypothesis.settings(max_examples=25, stateful_step_count=6, **BOUNDED))
    report("\n" + summary(target, "stateful") + f", {counts['orders read back']} orders read back by link")
    assert counts["requests"] >= 25
