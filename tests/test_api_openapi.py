"""The OpenAPI document of the REST API: valid OpenAPI 3.1, generated from the registered
resources, and true of the app, which schemathesis fuzzes in-process through WSGI."""

import pytest
import schemathesis
from conftest import examples
from conftest import make_message
from conftest import make_user
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from api import api
from models import BIO_MAX_LENGTH
from models import DISPLAY_NAME_MAX_LENGTH
from models import MESSAGE_MAX_LENGTH
from models import NOTE_MAX_LENGTH
from models import RAW_LENGTH_FACTOR
from models import SEARCH_QUERY_MAX_LENGTH
from models import USERNAME_MAX_LENGTH
from models import ApiToken
from models import Message
from models import Note

# Examples per operation (about 40 of them) and generation mode under the "ci" profile (a
# fifth under "dev"): the whole file stays well under two minutes.
FUZZ_EXAMPLES = {GenerationMode.POSITIVE: examples(20), GenerationMode.NEGATIVE: examples(10)}
# A schema-valid request may still be refused for what it means: 409 (a conflict, such as
# following twice) and 422 (following yourself or a missing user). Never a 400 or a 5xx.
ACCEPTED_STATUSES = ["2xx", "401", "403", "404", "409", "422", "429"]


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
        assert filters == set(resource.model.filter_keys()) | {"ordering", "page", "limit"}
    for path in ("/me/", "/timeline/home/", "/timeline/public/", "/notifications/"):
        assert "get" in document["paths"][path]
    assert "get" in document["paths"]["/message/{pk}/context/"]
    for name in ("like", "repost"):
        assert {"post", "delete"} <= set(document["paths"][f"/message/{{pk}}/{name}/"])


def test_the_document_describes_fields_auth_and_errors(document):
    components = document["components"]
    assert set(components["securitySchemes"]) == {"bearerAuth", "basicAuth"}
    assert components["schemas"]["Message"]["properties"]["user"] == {
        "$ref": "#/components/schemas/User"
    }
    assert "password" not in components["schemas"]["User"]["properties"]
    body = document["paths"]["/message/"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["additionalProperties"] is False
    assert set(body["schema"]["properties"]) == {"content", "in_reply_to"}
    assert components["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }


def test_the_documents_limits_are_the_models(document):
    """templates/api/openapi.json writes no limit itself: each comes from models.py."""

    def body(path, method="post"):
        content = document["paths"][path][method]["requestBody"]["content"]
        return content["application/json"]["schema"]["properties"]

    for field, limit in [
        (body("/message/")["content"], MESSAGE_MAX_LENGTH),
        (body("/note/")["message"], NOTE_MAX_LENGTH),
        (body("/me/", "put")["display_name"], DISPLAY_NAME_MAX_LENGTH),
        (body("/me/", "put")["bio"], BIO_MAX_LENGTH),
    ]:
        assert field["x-chirp-max-characters"] == limit
        assert field["maxLength"] == RAW_LENGTH_FACTOR * limit
    assert f"1 to {MESSAGE_MAX_LENGTH} characters" in body("/message/")["content"]["description"]
    assert body("/user/")["username"]["maxLength"] == RAW_LENGTH_FACTOR * USERNAME_MAX_LENGTH
    search = {p["name"]: p for p in document["paths"]["/search/"]["get"]["parameters"]}
    assert search["q"]["schema"]["maxLength"] == SEARCH_QUERY_MAX_LENGTH


BODIES = [
    {"content": "hello"},
    {"content": ""},
    {"content": "x" * 281},
    {"content": 7},
    {"content": "hi", "user": 1},
    {},
    {"content": "a\u0000b"},
]


@pytest.mark.parametrize("body", BODIES)
def test_the_server_refuses_exactly_the_bodies_its_document_refuses(client, document, body):
    schema = document["paths"]["/message/"]["post"]["requestBody"]["content"]
    valid = Draft202012Validator(schema["application/json"]["schema"]).is_valid(body)
    token = ApiToken.issue(make_user("alice"), "t")[1]
    response = client.post("/api/message/", json=body, headers={"Authorization": f"Bearer {token}"})
    assert (response.status_code == 400) is not valid, response.get_json()
    if not valid:  # a readable message that never echoes the (maybe huge) value
        assert len(response.get_json()["error"]) < 200


def seed():
    """Create two members, an admin and some rows; return ``{"member": token, "admin": token}``."""
    alice, bob, root = make_user("alice"), make_user("bob"), make_user("root", admin=True)
    for author in (alice, bob, alice):
        make_message(author, f"a message by {author.username}")
    alice.follow(bob)
    bob.follow(alice)
    reply = bob.reply(Message.get(Message.user == alice), "@alice a reply")
    alice.like(reply)
    bob.like(reply)  # notifies alice: her notifications list has something to show
    bob.repost(alice.messages.get())
    Note.create(user=root, message="a note")
    return {"member": ApiToken.issue(alice, "fuzz")[1], "admin": ApiToken.issue(root, "fuzz")[1]}


@pytest.mark.slow  # explores many examples per operation
@pytest.mark.parametrize(
    "caller, mode",
    [
        ("member", GenerationMode.POSITIVE),
        ("member", GenerationMode.NEGATIVE),
        ("admin", GenerationMode.POSITIVE),  # reaches the user and note writes
    ],
)
def test_fuzzing_the_app_finds_no_500_and_no_departure_from_the_document(
    app, monkeypatch, caller, mode
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
        "REACT_RATE_LIMIT",
        "REACT_ADDRESS_RATE_LIMIT",
    ):
        monkeypatch.setitem(app.config, name, "1000000 per minute")
    token = seed()[caller]
    config = SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_STATUSES}}}
    )
    # In-process through WSGI: the same checks as over HTTP, without a server or a port.
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=config)
    raw = schema.raw_schema
    headers = {"Authorization": f"Bearer {token}"}

    for result in schema.get_all_operations():
        operation = result.ok()
        documented = raw["paths"][operation.path][operation.method.lower()]
        takes_input = documented["parameters"] or "requestBody" in documented
        if mode == GenerationMode.POSITIVE or takes_input:  # nothing to get wrong otherwise
            fuzz(operation, mode, headers)


def fuzz(operation, mode, headers):
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
        case.call_and_validate(headers=headers)

    call()
