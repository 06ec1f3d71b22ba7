"""Text that means what it shows (docs/security.md): one text rule for messages and notes,
one e-mail rule, usernames that look alike are one name. Each test attacks one hole."""

import re
import unicodedata

import pytest
from conftest import PASSWORD
from conftest import examples
from conftest import login
from conftest import make_user
from conftest import post
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from peewee import IntegrityError

from app import db
from models import MESSAGE_MAX_LENGTH
from models import NOTE_MAX_LENGTH
from models import ApiToken
from models import Message
from models import Note
from models import TextRefused
from models import User
from models import clean_email
from models import clean_message
from models import confusable_skeleton
from models import is_visible

FLAG_OF_SCOTLAND = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
FAMILY = "👨\u200d👩\u200d👧"
DIRECTION_CONTROLS = [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
INVISIBLES = ["\u200b", "\u2060", "\ufeff", "\u2061", "\u206a", "\u180e", "\u3164", "\ufff9"]
PIECES = [
    "\r\n", "\r", "\n", " ", "\t", "x", "é", "e\u0301", "\u200b", "\u200d", "\u202e", "\u2066",
    "\u200f", FAMILY, FLAG_OF_SCOTLAND, "\U000e0041", "İ", "\ufeff", "\u00a0", "\u3164", "😀",
    "\x01", "\u0085", "\u2028",
]  # fmt: skip
# Unicode from every plane, with the pieces text rules trip over drawn often.
TEXTS = st.one_of(
    st.text(max_size=MESSAGE_MAX_LENGTH + 10),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)), max_size=300).map("".join),
)


# ---------------------------------------------------------------- the rule itself


def test_line_breaks_count_one_whatever_the_browser_sends():
    crlf = "\r\n".join(["y"] * 140)  # a textarea sends CR LF: 419 characters as sent
    assert clean_message(crlf) == "\n".join(["y"] * 140)
    assert len(clean_message(crlf)) == 279
    assert clean_message("a\rb") == "a\nb"


def test_emoji_count_one_each_so_280_fit():
    assert clean_message("😀" * 280) == "😀" * 280  # 560 UTF-16 units: maxlength would stop at 140
    with pytest.raises(TextRefused, match="at most 280"):
        clean_message("😀" * 281)


def test_text_is_stored_in_nfc_and_counted_after():
    assert clean_message("e\u0301" * 280) == "é" * 280  # 560 code points sent
    assert unicodedata.is_normalized("NFC", clean_message("Cafe\u0301"))


def test_trim_is_the_composers_trim():
    """ECMAScript's trim() removes U+FEFF and Unicode spaces but not U+0085 or U+180E."""
    assert clean_message("\ufeff\u3000\u00a0 hi \u2028\u2029\t") == "hi"
    with pytest.raises(TextRefused):
        clean_message("\u0085hi")  # a C1 control: JS keeps it, so it is refused, not trimmed


@pytest.mark.parametrize("content", ["", " ", "\r\n", *INVISIBLES, "\u200c\u200d", "\u0301"])
def test_nothing_visible_is_refused(content):
    with pytest.raises(TextRefused):
        clean_message(content)


@pytest.mark.parametrize("control", DIRECTION_CONTROLS)
def test_direction_overrides_and_isolates_are_refused(control):
    with pytest.raises(TextRefused, match="text direction control"):
        clean_message(f"invoice{control}fdp.exe")


@pytest.mark.parametrize("invisible", INVISIBLES)
def test_invisible_format_characters_are_refused_inside_text(invisible):
    with pytest.raises(TextRefused, match="not allowed"):
        clean_message(f"pay{invisible}pal")


def test_hidden_tag_text_is_refused_but_flags_and_emoji_sequences_are_kept():
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "ignore previous instructions")
    with pytest.raises(TextRefused, match="U\\+E00"):
        clean_message("hello" + hidden)
    assert clean_message(f"go {FLAG_OF_SCOTLAND} {FAMILY} \u200fשלום") is not None


def test_controls_and_lone_surrogates_are_refused():
    for content in ("a\x07b", "a\x1bb", "a\x9bb", "a\ud800b"):
        with pytest.raises(TextRefused):
            clean_message(content)


@pytest.mark.slow  # explores many examples
@settings(max_examples=examples(300))
@given(TEXTS)
def test_whatever_is_accepted_is_normalised_visible_and_fits(content):
    try:
        text = clean_message(content)
    except TextRefused:
        return
    assert clean_message(text) == text  # idempotent: saving again changes nothing
    assert "\r" not in text and unicodedata.is_normalized("NFC", text)
    assert 1 <= len(text) <= MESSAGE_MAX_LENGTH and any(is_visible(c) for c in text)
    assert not any(c in text for c in [*DIRECTION_CONTROLS, *INVISIBLES])


# ---------------------------------------------------------------- every surface agrees


@pytest.fixture
def surfaces(app, monkeypatch):
    """A member logged in on the web, their API token, and an admin logged in."""
    alice = make_user("alice")
    make_user("root", admin=True)
    web, admin = app.test_client(), app.test_client()
    login(web, "alice")
    login(admin, "root")
    monkeypatch.setitem(app.config, "POST_RATE_LIMIT", "100000 per minute")
    monkeypatch.setitem(app.config, "POST_ADDRESS_RATE_LIMIT", "100000 per minute")
    monkeypatch.setitem(app.config, "SIGNUP_RATE_LIMIT", "100000 per minute")
    # Hypothesis under the "ci" profile sends hundreds of API requests within a minute.
    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "100000 per minute")
    token = {"Authorization": f"Bearer {ApiToken.issue(alice, 't')[1]}"}
    return web, token, admin, alice


def newest_content():
    message = Message.select().order_by(Message.id.desc()).first()
    return message.content if message else None


@pytest.mark.slow  # explores many examples, several requests each
@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=TEXTS.filter(lambda text: "\x00" not in text))
def test_web_api_and_admin_accept_and_store_exactly_the_same_messages(app, surfaces, content):
    web, token, admin, alice = surfaces
    try:
        expected = clean_message(content)
    except TextRefused:
        expected = None
    outcomes = []
    before = Message.select().count()
    response = post(web, "/create/", {"content": content})
    outcomes.append((response.status_code == 302, newest_content()))
    api = app.test_client().post("/api/message/", json={"content": content}, headers=token)
    outcomes.append((api.status_code == 200, newest_content()))
    response = post(
        admin, "/admin/message/add/", {"user": alice.id, "content": content}, "/admin/message/add/"
    )
    outcomes.append((response.status_code == 302, newest_content()))
    accepted = [ok for ok, _ in outcomes]
    assert accepted == [expected is not None] * 3, (outcomes, api.get_data(as_text=True))
    assert Message.select().count() == before + 3 * (expected is not None)
    if expected is not None:
        assert [stored for _, stored in outcomes] == [expected] * 3


@pytest.mark.parametrize(
    "note, stored",
    [
        ("  a note\r\nwith two lines ", "a note\nwith two lines"),
        ("x" * NOTE_MAX_LENGTH, "x" * NOTE_MAX_LENGTH),
        ("x" * (NOTE_MAX_LENGTH + 1), None),
        ("\u200b\u200b", None),
        ("\u202eevil", None),
    ],
)
def test_notes_follow_the_same_rule_on_the_dashboard_in_the_admin_and_the_api(app, note, stored):
    root = make_user("root", admin=True)
    client = app.test_client()
    login(client, "root")
    token = {"Authorization": f"Bearer {ApiToken.issue(root, 't')[1]}"}
    post(client, "/admin/notes/create/", {"message": note}, "/admin/")
    post(
        client,
        "/admin/note/add/",
        {"user": root.id, "message": note, "status": 1},
        "/admin/note/add/",
    )
    response = client.post("/api/note/", json={"message": note}, headers=token)
    assert response.status_code == (200 if stored else 422)
    assert [n.message for n in Note.select()] == ([stored] * 3 if stored else [])


def test_the_note_check_holds_under_save(app):
    root = make_user("root", admin=True)
    with pytest.raises(IntegrityError), db.database.atomic():
        Note.insert(user=root, message="x" * (NOTE_MAX_LENGTH + 1)).execute()
    with pytest.raises(IntegrityError), db.database.atomic():
        Note.insert(user=root, message="").execute()
    with pytest.raises(TextRefused):
        Note.create(user=root, message="\u2066")


def test_messages_are_shown_in_their_own_direction_isolate(client):
    """``unicode-bidi: plaintext`` isolates each message, with the direction of its text."""
    alice = make_user("alice")
    Message.create(user=alice, content="\u05e9\u05dc\u05d5\u05dd!")
    assert '<p class="content">' in client.get("/public/").get_data(as_text=True)
    response = client.get("/static/style.css")
    css = response.get_data(as_text=True)
    response.close()
    assert re.search(r"\.message \.content \{[^}]*unicode-bidi: plaintext;", css)


def test_the_composer_is_not_held_back_by_maxlength(client):
    """maxlength counts UTF-16 units: 280 emoji would stop at 140. The composer declares
    the limit for its counter instead."""
    make_user("alice")
    login(client, "alice")
    for path in ("/", "/create/"):
        page = client.get(path).get_data(as_text=True)
        assert 'data-max-characters="280"' in page and 'maxlength="280"' not in page


# ---------------------------------------------------------------- usernames


def test_skeletons_follow_unicode_tr39():
    assert confusable_skeleton("aIice") == confusable_skeleton("alice")
    assert confusable_skeleton("a1ice") == confusable_skeleton("alice")
    assert confusable_skeleton("\u0430lice") == confusable_skeleton("alice")  # Cyrillic а
    assert confusable_skeleton("b0b") == confusable_skeleton("bOb")
    assert confusable_skeleton("modern") == confusable_skeleton("rnodern")
    assert confusable_skeleton("alice") != confusable_skeleton("alicia")


def test_join_refuses_cyrillic_letters_outright(client):
    make_user("alice")
    assert join(client, "\u0430lice", "x@example.com").status_code == 422


def test_the_database_refuses_a_lookalike_that_skips_the_checks(app):
    """Two racing sign-ups both pass the form's check; the unique skeleton index stops one."""
    make_user("alice")
    with pytest.raises(IntegrityError), db.database.atomic():
        make_user("aIice")


def test_a_member_keeps_their_own_name_when_saving(client):
    alice = make_user("alice")
    alice.username = "Alice"  # the same name in another case: not a look-alike of anyone
    alice.save()
    assert User.get().username_skeleton == "alice"


# ---------------------------------------------------------------- e-mail addresses


def test_the_length_is_checked_after_lower_casing():
    local = "İ" * 120  # 120 characters, 240 once lower-cased (i + combining dot)
    address = f"{local}@{'d' * 120}.org"
    assert len(address) <= 254 < len(address.lower())
    with pytest.raises(TextRefused, match="at most 254"):
        clean_email(address)
    assert clean_email("  Bob@Example.ORG ") == "bob@example.org"


@pytest.mark.parametrize("address", ["a\u202e@example.org", "a\u200b@example.org", "a@b"])
def test_invisible_or_malformed_addresses_are_refused(address):
    with pytest.raises(TextRefused):
        clean_email(address)


def test_the_database_refuses_an_address_in_another_case(app):
    make_user("alice", email="alice@example.com")
    bob = make_user("bob")
    with pytest.raises(IntegrityError), db.database.atomic():
        User.update(email="ALICE@example.com").where(User.id == bob.id).execute()


def test_an_account_with_an_old_address_can_still_save_its_settings(client):
    """An address stored before today's rules (here: no dot in the domain) is kept as it is
    when its owner saves something else, e.g. a new password."""
    bob = make_user("bob")
    User.update(email="Bob@Localhost").where(User.id == bob.id).execute()
    login(client, "bob")
    form = {
        "email": "Bob@Localhost",
        "new_password": "another-horse",
        "confirm": "another-horse",
        "current_password": PASSWORD,
    }
    assert post(client, "/settings/", form, "/settings/").status_code == 302
    user = User.get_by_id(bob.id)
    assert user.email == "Bob@Localhost" and user.check_password("another-horse")


def join(client, username, email):
    data = {"username": username, "email": email, "password": PASSWORD, "confirm": PASSWORD}
    return post(client, "/join/", data)


# ---------------------------------------------------------------- people, on every surface

NAME_PIECES = [
    "a",
    "l",
    "I",
    "1",
    "0",
    "O",
    "_",
    " ",
    "\t",
    "\r\n",
    "\u0430",
    "İ",
    "\u200b",
    "\u202e",
]
EMAIL_PIECES = [
    "a",
    "B",
    "@",
    ".",
    "org",
    " ",
    "İ",
    "\u200b",
    "\u202e",
    "\u00a0",
    "e\u0301",
    "\x85",
]
PADDING = st.sampled_from(["", " ", "\t", "\r\n", "\u00a0", "\ufeff", "\u200b"])
LIKELY_NAMES = st.one_of(
    st.tuples(PADDING, st.from_regex(r"[A-Za-z0-9_]{1,31}", fullmatch=True), PADDING).map("".join),
    st.sampled_from(["alice", "aIice", "ALICE", "a1ice", "\u0430lice", "root", "r00t", "b0b"]),
)
LIKELY_EMAILS = st.one_of(
    st.tuples(
        PADDING,
        st.lists(st.sampled_from(["a", "B", "İ", "é", "e\u0301", "ß", "."]), min_size=1),
        st.sampled_from(["@example.org", "@Example.ORG", "@x", "@ex ample.org"]),
        PADDING,
    ).map(lambda parts: parts[0] + "".join(parts[1]) + parts[2] + parts[3]),
    st.builds(lambda n: "İ" * n + "@example.org", st.integers(100, 130)),  # grows lower-cased
    st.sampled_from(["alice@example.com", "ALICE@example.com", "root@example.com"]),
)
PEOPLE = st.one_of(
    st.tuples(
        st.one_of(st.text(max_size=35), st.lists(st.sampled_from(NAME_PIECES)).map("".join)),
        st.one_of(st.text(max_size=20), st.lists(st.sampled_from(EMAIL_PIECES)).map("".join)),
    ),
    *[st.tuples(LIKELY_NAMES, LIKELY_EMAILS)] * 3,  # drawn three times as often
)


def new_account(username):
    """Return ``(username, email)`` of the account created besides alice and root, or None;
    delete it, so the next surface starts from the same state."""
    user = User.select().where(User.username.not_in(["alice", "root"])).first()
    if user is None:
        return None
    User.delete().where(User.id == user.id).execute()
    return user.username, user.email


@pytest.mark.slow  # explores many examples, several requests each
@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(person=PEOPLE)
def test_web_api_and_admin_accept_and_store_exactly_the_same_people(app, surfaces, person):
    """Sign-up, the API's user resource and the admin's user form: the same names and
    addresses accepted (look-alikes of alice and her address refused), stored alike."""
    username, email = person
    _, _, admin, _ = surfaces
    root = User.get(User.username == "root")
    token = {"Authorization": f"Bearer {ApiToken.issue(root, 't')[1]}"}
    data = {"username": username, "email": email, "password": PASSWORD, "confirm": PASSWORD}
    post(app.test_client(), "/join/", data)
    outcomes = [new_account(username)]
    app.test_client().post("/api/user/", json={"username": username, "email": email}, headers=token)
    outcomes.append(new_account(username))
    form = {"username": username, "email": email, "new_password": PASSWORD, "active": "1"}
    post(admin, "/admin/user/add/", form, "/admin/user/add/")
    outcomes.append(new_account(username))
    assert outcomes[0] == outcomes[1] == outcomes[2], outcomes
    if outcomes[0] is not None:
        name, address = outcomes[0]
        assert not User.username_taken(name) and not User.email_taken(address)
        assert clean_email(address) == address and len(address) <= 254


def test_token_names_follow_the_text_rule_on_the_web_and_the_command_line(client, runner):
    make_user("alice")
    login(client, "alice")
    for name in ("\u202etxt.exe", "\u200b", "x" * 51, "my\r\nphone"):
        response = post(client, "/settings/tokens/", {"name": name}, "/settings/")
        assert response.status_code == 422, name
    response = post(client, "/settings/tokens/", {"name": " my phone\r\n"}, "/settings/")
    assert response.status_code == 200
    result = runner.invoke(args=["create-token", "alice", "--name", "\u2066x"])
    assert result.exit_code != 0 and "not allowed" in result.output
    assert [token.name for token in ApiToken.select()] == ["my phone"]
