"""The OpenAPI document of the REST API: valid OpenAPI 3.1, generated from the registered
resources, and true of the live app, which schemathesis fuzzes over real HTTP."""

import threading

import pytest
import requests
import schemathesis
from conftest import make_message
from conftest import make_user
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server

from api import api
from app import limiter
from models import ApiToken
from models import Note

# Examples per operation (about 40 of them) and generation mode: the whole file stays
# well under two minutes.
FUZZ_EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 10}
# A schema-valid request may still be refused for what it means: 409 (a conflict, such as
# following twice) and 422 (following yourself or a missing user). Never a 400 or a 5xx.
ACCEPTED_STATUSES = ["2xx", "401", "403", "404", "409", "422", "429"]


class QuietHandler(WSGIRequestHandler):
    """werkzeug's request handler without one log line per request."""

    def log_request(self, *args, **kwargs):
        pass


@pytest.fixture(autouse=True)
def fresh_limits(app):
    """Rate-limit counters live in memory for the whole run: start each test at zero."""
    limiter.reset()
    yield
    limiter.reset()


@pytest.fixture
def document(client):
    return client.get("/api/openapi.json").get_json()


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_the_document_covers_every_registered_resource(document):
    for resource in api._registry.values():
        name = resource.get_api_name()
        assert {"get", "post"} <= set(document["paths"][f"/{name}/"])
        assert {"get", "put", "post", "delete"} <= set(document["paths"][f"/{name}/{{pk}}/"])
        filters = {p["name"] for p in document["paths"][f"/{name}/"]["get"]["parameters"]}
        assert filters == set(resource.query_filters) | {"ordering", "page", "limit"}
    for path in ("/me/", "/timeline/home/", "/timeline/public/"):
        assert "get" in document["paths"][path]


def test_the_document_describes_fields_auth_and_errors(document):
    components = document["components"]
    assert set(components["securitySchemes"]) == {"bearerAuth", "basicAuth"}
    assert components["schemas"]["Message"]["properties"]["user"] == {
        "$ref": "#/components/schemas/User"
    }
    assert "password" not in components["schemas"]["User"]["properties"]
    body = document["paths"]["/message/"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["additionalProperties"] is False
    assert set(body["schema"]["properties"]) == {"content"}
    assert components["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }


@pytest.fixture
def live_url(app):
    """Serve the app over real HTTP on 127.0.0.1 (a free port) for the test's duration."""
    server = make_server("127.0.0.1", 0, app, threaded=False, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def seed():
    """Create two members, an admin and some rows; return ``{"member": token, "admin": token}``."""
    alice, bob, root = make_user("alice"), make_user("bob"), make_user("root", admin=True)
    for author in (alice, bob, alice):
        make_message(author, f"a message by {author.username}")
    alice.follow(bob)
    bob.follow(alice)
    Note.create(user=root, message="a note")
    return {"member": ApiToken.issue(alice, "fuzz")[1], "admin": ApiToken.issue(root, "fuzz")[1]}


@pytest.mark.parametrize(
    "caller, mode",
    [
        ("member", GenerationMode.POSITIVE),
        ("member", GenerationMode.NEGATIVE),
        ("admin", GenerationMode.POSITIVE),  # reaches the user and note writes
    ],
)
def test_fuzzing_the_live_app_finds_no_500_and_no_departure_from_the_document(
    app, live_url, monkeypatch, caller, mode
):
    # The fuzzer probes with wrong basic credentials, which ChirpAuth throttles (a 429) by
    # design; here only the document is under test.
    for name in (
        "API_RATE_LIMIT",
        "LOGIN_RATE_LIMIT",
        "LOGIN_ADDRESS_RATE_LIMIT",
        "POST_RATE_LIMIT",
        "POST_ADDRESS_RATE_LIMIT",
        "FOLLOW_RATE_LIMIT",
        "FOLLOW_ADDRESS_RATE_LIMIT",
    ):
        monkeypatch.setitem(app.config, name, "1000000 per minute")
    token = seed()[caller]
    session = requests.Session()
    session.trust_env = False  # only ever talk to 127.0.0.1, whatever proxy is configured
    raw = session.get(f"{live_url}/api/openapi.json", timeout=10).json()
    config = SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_STATUSES}}}
    )
    schema = schemathesis.openapi.from_dict(raw, config=config)
    headers = {"Authorization": f"Bearer {token}"}

    for result in schema.get_all_operations():
        operation = result.ok()
        documented = raw["paths"][operation.path][operation.method.lower()]
        takes_input = documented["parameters"] or "requestBody" in documented
        if mode == GenerationMode.POSITIVE or takes_input:  # nothing to get wrong otherwise
            fuzz(operation, mode, f"{live_url}/api", session, headers)


def fuzz(operation, mode, base_url, session, headers):
    """Send FUZZ_EXAMPLES[mode] generated requests to ``operation``; schemathesis' checks
    (no 5xx, status codes, content types, headers and bodies as documented, ...) must hold."""

    @settings(
        max_examples=FUZZ_EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        case.call_and_validate(base_url=base_url, session=session, headers=headers, timeout=10)

    call()
