"""The REST API at /api/: flask-peewee's RestAPI and RestResource, with 4.0.1's holes closed
(docs/flask-peewee.md lists each, and the code, S1, N1..., that comments here cite).

Clients authenticate with a personal token (``Authorization: Bearer <token>``, made at
/settings/ or with ``python main.py create-token USERNAME``) or, slowly, with HTTP basic
credentials. ``/api/openapi.json`` describes every route and what each status means;
``/api/`` renders it for people.
"""

import functools
import json

from flask import Response
from flask import abort
from flask import g
from flask import render_template
from flask import request
from flask_peewee.rest import RestAPI
from flask_peewee.rest import RestResource
from flask_peewee.rest import RestrictOwnerResource
from flask_peewee.utils import get_object_or_404
from peewee import IntegrityError

from app import MAX_FILTER_LENGTH
from app import MAX_ID
from app import MAX_PAGE
from app import MAX_PAGE_OFFSET
from app import MAX_PAGE_SIZE
from app import NO_NUL_PATTERN
from app import ChirpSerializer
from app import KeysetPage
from app import PageProbe
from app import app
from app import check_body
from app import check_query
from app import csrf
from app import json_response
from app import limit_action
from app import no_store
from app import page_limit
from app import parse_argument
from app import parse_whole_number
from app import read_json_body
from auth import ALL_METHODS
from auth import AUTH_HINT
from auth import AdminApiCredentials
from auth import ApiCredentials
from auth import caller_is_admin
from auth import refuse_credentials
from models import LIMITS
from models import Message
from models import Note
from models import Notification
from models import Relationship
from models import Tag
from models import Taken
from models import TextRefused
from models import User
from models import audited
from models import parse_search
from models import search_messages
from models import search_people

API_PREFIX = "/api"

# The API never reads the cookie session (ApiCredentials resets g.user) and accepts only
# JSON bodies, which a cross-site form cannot send: no SeaSurf token needed. Chirp's only
# exemption: exempt_urls() replaces the whole list, so any other must be added here.
csrf.exempt_urls((API_PREFIX + "/",))


# ---------------------------------------------------------------- resources


class ChirpResource(RestResource):
    """A RestResource with every 4.0.1 hole closed; subclasses declare ``fields`` (what is
    serialized), ``required_fields`` (what a create must include) and ``get_query`` (which
    selects whatever ``include_resources`` nests). Filters and orderings are the model's
    (FILTERS, ORDERING); a body must match the schema the document publishes for it, then
    each value the model's ``clean_<field>(value)``."""

    # Writes (create, edit, delete) go to the audit trail, as the admin's do.
    audited = False
    # What a create counts as, with limits of its own besides API_RATE_LIMIT: the web's
    # counters (app.limit_action), so clients cannot double them.
    create_action = None
    nested_writes = False
    required_fields = ()
    summary = ""

    def published(self, creating=False):
        """Return what /api/openapi.json publishes of this resource's list URL (or, unless
        ``creating``, its row URL): ``{method: operation}``."""
        suffix = "" if creating else "{pk}/"
        return openapi_document(self.api)["paths"][f"/{self.get_api_name()}/{suffix}"]

    def get_serializer(self):
        return ChirpSerializer()

    def get_urls(self):
        """Return ``(url, view, methods)`` triples: flask-peewee's URLs, each with only the
        methods it serves, so Flask answers others with a 405 and an ``Allow`` header."""
        urls = (
            ("/", self.api_list, ["GET", "POST"]),
            ("/<int:pk>/", self.api_detail, ["GET", "POST", "PUT", "DELETE"]),
            ("/<int:pk>/delete/", self.post_delete, ["POST", "DELETE"]),
        )
        return [
            (url, view, [m for m in methods if m in self.allowed_methods])
            for url, view, methods in urls
        ]

    def api_list(self):
        """GET: one page of rows; POST: create one."""
        if request.method == "POST":
            if self.create_action:
                limit_action(self.create_action, g.user.id)
            if not self.check_post():
                abort(403, "You may not create this.")
            return self.create()
        return self.object_list()

    def api_detail(self, pk, method=None):
        """GET one row, edit it (PUT, or POST as flask-peewee allows), or DELETE it. A
        detail POST must pass ``check_put`` like a PUT (4.0.1 checked only ``check_post``,
        letting anyone edit anyone's row: S1)."""
        method = method or request.method
        obj = get_object_or_404(self.get_query(), self.pk == pk)
        if method in ("GET", "HEAD"):
            return self.object_detail(obj)
        if method == "DELETE":
            allowed = self.check_delete(obj)
        else:
            allowed = self.check_put(obj) and self.check_post(obj)
        if not allowed:
            abort(403, "You may only change your own rows.")
        return self.delete(obj) if method == "DELETE" else self.edit(obj)

    def object_list(self):
        """A page of rows narrowed by the model's filters in the query string, each value
        parsed by the schema the document publishes for it, and ordered by ``?ordering``
        (Model.ordered); any other key is a 400. PageProbe checks ``?page``."""
        keys = self.model.filter_keys()
        check_query([*keys, "ordering", "page", "limit"])
        given = [key for key in keys if key in request.args]
        query = self.model.ordered(self.get_query(), request.args.get("ordering"), given)
        parameters = self.published(creating=True)["get"]["parameters"]
        schemas = {parameter["name"]: parameter["schema"] for parameter in parameters}
        values = {key: parse_argument(key, request.args[key], schemas[key]) for key in given}
        return self.paginated_object_list(self.model.narrowed(query, values))

    def list_columns(self):
        """Return the only columns a list reads (never a password hash), or None: all."""
        return None

    def paginated_object_list(self, filtered_query):
        """One page of ``filtered_query`` as ``{"meta": ..., "objects": [...]}``, never
        counted (PageProbe), read with ``list_columns()`` when it names any."""
        columns = self.list_columns()
        if columns:
            filtered_query = filtered_query.select(*columns)
        pagination = PageProbe(filtered_query, self.get_paginate_by())
        objects = self.serialize_query(pagination.get_list())
        return self.response({"meta": self.get_request_metadata(pagination), "objects": objects})

    def get_request_metadata(self, paginated_query):
        """Return the list's ``meta``: model, page, limit, previous and next page URLs."""
        endpoint = self.get_url_name("api_list")
        return {
            "model": self.get_api_name(),
            "page": paginated_query.get_page(),
            "limit": paginated_query.paginate_by,
            "previous": paginated_query.previous_url(endpoint) or "",
            "next": paginated_query.next_url(endpoint) or "",
        }

    def get_paginate_by(self):
        """Return the page size: page_limit()."""
        return page_limit()

    def read_request_data(self):
        return read_json_body()

    def new_instance(self):
        """Return the unsaved row a create fills in."""
        return self.model()

    def deserialize_object(self, data, instance):
        """Copy ``data`` onto ``instance`` and return ``(instance, [instance])``, as
        flask-peewee does. It must match the published body schema (400: so ``_pk`` and
        any unknown key, which 4.0.1 would ``setattr``, are refused: S2); then each value
        passes the model's ``clean_<field>`` (Model.assign)."""
        schema = body_schema(self.published(instance.get_id() is None)["post"])
        instance.assign(check_body(data, schema))
        return instance, [instance]

    def save_changes(self, instance):
        """Validate the request's body and save it onto ``instance`` in one transaction
        (with its audit entry, if ``audited``); answer the saved row. A value the model
        refuses is a 422 (409 when taken)."""
        action = "create" if instance.get_id() is None else "edit"
        try:
            with self.transaction(action, instance):
                saved = self.persist_object(instance, self.read_request_data())
        except Taken as exc:
            abort(409, str(exc))
        except IntegrityError:  # a concurrent request won a uniqueness race
            abort(409, "That conflicts with existing data.")
        except TextRefused as exc:
            abort(422, str(exc))
        return self.response(self.serialize_object(saved))

    def create(self):
        return self.save_changes(self.new_instance())

    def edit(self, obj):
        return self.save_changes(obj)

    def delete(self, obj):
        with self.transaction("delete", obj):
            return super().delete(obj)

    def transaction(self, action, instance):
        """Return the transaction a write runs in (models.audited, if ``audited``)."""
        if self.audited:
            return audited(g.user, action, instance)
        return self.model._meta.database.atomic()


class OwnedResource(ChirpResource, RestrictOwnerResource):
    """Rows owned by ``owner_field``: anyone reads, the caller creates rows owned by
    themself, and only the owner edits or deletes (PUT, detail POST and DELETE alike)."""

    def validate_owner(self, user, obj):
        # Compare ids: following the foreign key would cost a query.
        return user is not None and obj.__data__.get(self.owner_field) == user.id

    def check_post(self, obj=None):
        # 4.0.1's RestrictOwnerResource leaves check_post open; a detail POST edits (S1).
        return obj is None or self.validate_owner(g.user, obj)

    def new_instance(self):
        # Owned before its fields are cleaned: their rules may depend on the owner.
        return self.model(**{self.owner_field: g.user.id})


class UserResource(ChirpResource):
    """People. Public: id, username, join date; admins also see e-mail addresses.
    Only admins write, and only ``username`` and ``email``; inactive users are hidden
    from everyone else. A user created here has no usable password until one is set."""

    summary = "Users"
    audited = True
    fields = ("id", "username", "display_name", "bio", "join_date")
    required_fields = ("username", "email")

    def get_query(self):
        return User.visible_to(g.get("user"))

    def list_columns(self):
        """The list reads only the columns it shows (User.SUMMARY_COLUMNS, and the e-mail
        address for an admin): never the password hash or session token."""
        return (*User.SUMMARY_COLUMNS, User.email) if caller_is_admin() else User.SUMMARY_COLUMNS

    def prepare_data(self, obj, data):
        data["avatar_url"] = obj.avatar_url
        if caller_is_admin() and "email" in obj.__data__:
            data["email"] = obj.email
        return data

    def object_detail(self, obj):
        """One user, with the counts their profile page shows."""
        return self.response({**self.serialize_object(obj), "counts": obj.profile_counts()})

    def delete(self, obj):
        refusal = User.except_self(g.user, [obj.id], "delete")[1]
        if refusal:
            abort(403, refusal)
        return super().delete(obj)


class MessageResource(OwnedResource):
    """Messages, each with its author as a nested user. Messages of inactive users are
    hidden. Members post as themselves (``in_reply_to`` makes a reply) and edit or delete
    only their own. Each message carries its reply, like and repost counts, and whether
    the caller liked or reposted it (false for anonymous callers)."""

    summary = "Messages"
    create_action = "post"
    fields = ("id", "user", "content", "pub_date", "edited_date", "is_reply")
    fields += ("reply_count", "like_count", "repost_count")
    include_resources = {"user": UserResource}
    required_fields = ("content",)

    def get_query(self):
        # The author is selected in the same query (no N+1, no join by flask-peewee).
        return Message.visible(User.SUMMARY_COLUMNS)

    def save_object(self, instance, raw_data):
        """A new message is posted by the caller through User.post, which counts the reply
        and notifies in the same transaction, as on the web; edits save as usual."""
        if instance.get_id() is None:
            return g.user.post(instance.content, in_reply_to=instance.in_reply_to)
        return super().save_object(instance, raw_data)

    def serialize_query(self, query):
        """Serialize a page of messages, with the caller's likes and reposts and each
        one's links: one query each for the whole page (Message.annotate); the counts
        are columns."""
        rows = Message.annotate(list(query), g.get("user"), context=False, links=True)
        return super().serialize_query(rows)

    def serialize_object(self, obj):
        return self.serialize_query([obj])[0]

    def prepare_data(self, obj, data):
        # Added here, not in ``fields``: the serializer would load each parent (N+1).
        data["in_reply_to"] = obj.in_reply_to_id
        data["liked"] = getattr(obj, "liked", False)
        data["reposted"] = getattr(obj, "reposted", False)
        data["user"]["avatar_url"] = obj.user.avatar_url
        data["links"] = obj.link_lists
        return data


class RelationshipResource(OwnedResource):
    """Follows: ``from_user`` follows ``to_user``. POST ``{"to_user": id}`` to follow,
    DELETE to unfollow. Follows involving an inactive user are hidden."""

    summary = "Relationships (follows)"
    owner_field = "from_user"
    create_action = "follow"
    fields = ("id", "from_user", "to_user", "created_date")
    required_fields = ("to_user",)

    def get_query(self):
        return Relationship.between_active_users()

    def save_object(self, instance, raw_data):
        """A new follow goes through User.follow, which notifies the followed user, as a
        follow on the web does; edits save as usual."""
        if instance.get_id() is not None:
            return super().save_object(instance, raw_data)
        g.user.follow(instance.to_user)
        return Relationship.get(from_user=g.user.id, to_user=instance.to_user_id)


class NoteResource(ChirpResource):
    """Admins' notes, for admins only (401 without credentials, 403 for members): they read
    and write them, and a new note's author is the admin who posts it."""

    summary = "Admin notes"
    audited = True
    fields = ("id", "user", "message", "status", "created_date")
    required_fields = ("message",)

    def get_query(self):
        return Note.select().order_by(Note.id)

    def new_instance(self):
        return Note(user=g.user.id)


# ---------------------------------------------------------------- the API


class ChirpAPI(RestAPI):
    """flask-peewee's RestAPI, routing every API URL (the resources' and the API's own
    views below: ``/me/``, timelines, search, threads, reactions, notifications, the
    OpenAPI document) through credentials and rate limits, with JSON errors."""

    @property
    def messages(self):
        """The message resource, which serializes every message the API shows."""
        return self._registry[Message]

    @property
    def users(self):
        """The user resource, which serializes every person the API shows."""
        return self._registry[User]

    # Never 4.0.1's text 401 with a Basic challenge (S9), should any route still use it.
    response_auth_failed = staticmethod(refuse_credentials)

    def configure_routes(self):
        """Route every API URL: the API's own views (each view's name is its endpoint)
        and each resource's."""
        anyone, members = ApiCredentials(), ApiCredentials(protected_methods=ALL_METHODS)
        self.add("/", index, ["GET"], anyone)
        self.add("/openapi.json", openapi, ["GET"], anyone)
        self.add("/me/", me, ["GET", "PUT"], members)
        self.add("/search/", search, ["GET"], anyone)
        self.add("/tags/<tag>/", tag_timeline, ["GET"], anyone)
        self.add("/message/<int:pk>/context/", message_context, ["GET"], anyone)
        for name in User.REACTIONS:
            self.add(f"/message/<int:pk>/{name}/", reaction_view(name), ["POST", "DELETE"], members)
        self.add("/notifications/", notifications, ["GET"], members)
        self.add("/notifications/read/", notifications_read, ["POST"], members)
        self.add("/timeline/home/", timeline_home, ["GET"], members)
        self.add("/timeline/public/", timeline_public, ["GET"], anyone)
        for resource in self._registry.values():
            name = resource.get_api_name()
            for url, view, methods in resource.get_urls():
                endpoint = f"{name}_{view.__name__}"
                self.add(f"/{name}{url}", view, methods, resource.authentication, endpoint)

    def add(self, url, view, methods, credentials, endpoint=None):
        """Route ``url`` to ``view`` for ``methods``, behind ``credentials`` and
        API_RATE_LIMIT (ApiCredentials.admit); ``endpoint`` defaults to the view's name."""

        def guarded(**kwargs):
            credentials.admit()
            return view(**kwargs)

        self.blueprint.add_url_rule(url, endpoint or view.__name__, guarded, methods=methods)


# ---------------------------------------------------------------- the API's own views
# Each parses the request, asks models.py and answers JSON; ChirpAPI.configure_routes
# routes them.


def me():
    """The caller's own profile, with their e-mail address; never cached. PUT changes
    the display name and/or bio (User.update_profile: 422 if the text rule refuses)."""
    user = g.user
    if request.method == "PUT":
        schema = body_schema(openapi_document(api)["paths"]["/me/"]["put"])
        data = check_body(read_json_body(), schema)
        try:
            user.update_profile(
                data.get("display_name", user.display_name), data.get("bio", user.bio)
            )
        except TextRefused as exc:
            abort(422, str(exc))
    counts = user.profile_counts()
    data = {**api.users.serialize_object(user), "counts": counts, "email": user.email}
    return no_store(json_response({**data, "admin": user.admin}))


def message_context(pk):
    """A message's thread: ``ancestors`` (root first), the ``message``, and a page of
    its ``replies`` (oldest first; ``?after=<reply id>`` continues, ``meta.next``)."""
    check_query(["after", "limit"])
    message, limit = Message.get_visible(pk, User.SUMMARY_COLUMNS), page_limit()
    replies = KeysetPage(
        lambda after, n: message.thread_replies(User.SUMMARY_COLUMNS, after, n),
        limit,
        cursor_arg="after",
        not_found_when_empty=False,
    )
    ancestors = message.ancestors(author_columns=User.SUMMARY_COLUMNS)
    objects = api.messages.serialize_query([*ancestors, message, *replies.items])
    count = len(ancestors)
    meta = {"limit": limit, "after": replies.cursor, "next": replies.next_url(limit=limit)}
    return json_response(
        {
            "meta": meta,
            "ancestors": objects[:count],
            "message": objects[count],
            "replies": objects[count + 1 :],
        }
    )


def reaction_view(name):
    """Return the view of ``/message/<pk>/<name>/``: POST does the reaction (201 when
    it is new, 200 when it already was), DELETE undoes it (204, also when there was
    nothing to undo). Both answer with the same effect however often repeated."""

    def view(pk):
        limit_action("react", g.user.id)  # the web's counter too
        message = Message.get_visible(pk, User.SUMMARY_COLUMNS)
        if request.method == "DELETE":
            g.user.react(name, message, on=False)
            return Response(status=204)
        created = g.user.react(name, message)
        fresh = api.messages.serialize_object(Message.get_visible(pk, User.SUMMARY_COLUMNS))
        return json_response(fresh, 201 if created else 200)

    view.__name__ = f"message_{name}"
    return view


# What a notification shows, in this order; its actor and message are shown as elsewhere.
NOTIFICATION_FIELDS = {Notification: ("id", "kind", "actor", "message", "read", "created_date")}


def notifications():
    """The caller's notifications, newest first, from active users only.
    ``?before=<id>`` pages back (``meta.next``); ``?since_id=<id>`` returns only newer
    ones, for polling."""
    check_query(["before", "since_id", "limit"])
    limit = page_limit()
    since = request.args.get("since_id")
    since = None if since is None else parse_whole_number("since_id", since, 0)
    page = KeysetPage(
        lambda before, n: g.user.notifications(before, since, n),
        limit,
        not_found_when_empty=False,
        keep_args=("since_id",),
    )
    messages = [row.message for row in page.items if row.message]
    shown = dict(zip(messages, api.messages.serialize_query(messages), strict=True))
    objects = [
        ChirpSerializer().serialize_object(row, NOTIFICATION_FIELDS)
        | {"actor": api.users.serialize_object(row.actor), "message": shown.get(row.message)}
        for row in page.items
    ]
    meta = {"limit": limit, "before": page.cursor, "since_id": since}
    meta.update(next=page.next_url(limit=limit), unread=g.user.unread_notification_count())
    return no_store(json_response({"meta": meta, "objects": objects}))


def notifications_read():
    """Mark all the caller's notifications read; answers how many changed."""
    return json_response({"marked": g.user.mark_notifications_read()})


def timeline_home():
    """The caller's home timeline: their messages and those of everyone they follow."""
    return timeline(g.user.home_timeline)


def timeline_public():
    """Every visible message."""
    return timeline(Message.public_timeline)


def tag_timeline(tag):
    """The visible messages tagged ``tag`` (any case), newest first."""
    name = Tag.name_of(tag)
    return timeline(lambda before, limit: Message.tag_timeline(name, before, limit))


def search():
    """Messages matching ``q`` (words, "phrases", #tags, from:name), newest first,
    keyset-paged like a timeline; on the first page also ``people`` whose username or
    display name starts with ``q``."""
    try:
        query = parse_search(request.args.get("q", ""))
    except TextRefused as exc:
        abort(400, str(exc))
    people = []
    if "before" not in request.args:
        found = search_people(query, columns=User.SUMMARY_COLUMNS)
        people = api.users.serialize_query(found)
    return timeline(
        lambda before, limit: search_messages(query, before, limit),
        keep_args=("q",),
        extra={"people": people},
    )


def timeline(fetch, keep_args=(), extra=None):
    """One KeysetPage of the timeline ``fetch``, newest (highest id) first:
    ``?before=<message id>`` continues below that id, so every page costs the same
    however far a client scrolls. ``meta.next`` is the next page's URL, or null; past
    the end the list is empty. ``keep_args``: further query arguments accepted and
    carried into ``meta.next``; ``extra``: more keys for the response."""
    check_query(["before", "limit", *keep_args])
    limit = page_limit()
    page = KeysetPage(
        lambda cursor, n: fetch(cursor, n).select_extend(*User.SUMMARY_COLUMNS),
        limit,
        not_found_when_empty=False,
        keep_args=keep_args,
    )
    meta = {"limit": limit, "before": page.cursor, "next": page.next_url(limit=limit)}
    objects = api.messages.serialize_query(page.items)
    return json_response({"meta": meta, **(extra or {}), "objects": objects})


def openapi():
    """The OpenAPI 3.1 document, as JSON."""
    return json_response(openapi_document(api))


def index():
    """The OpenAPI document, rendered for people."""
    return render_template("api/index.html", doc=openapi_document(api))


# ---------------------------------------------------------------- OpenAPI


def resource_facts(resource):
    """Return what templates/api/openapi.json needs to write ``resource``'s paths: URL
    name, model, summary, whether reads need credentials (an admin's, for
    AdminApiCredentials), filters, orderings and a create's required fields."""
    protected, fields = resource.authentication.protected_methods, resource.model._meta.fields
    filters = [
        {"key": key, "name": key.removesuffix(f"__{op}"), "op": op, "kind": rule.kind}
        | {"what": rule.what, "choices": fields[rule.field].choices}
        for key, (rule, op) in resource.model.filter_keys().items()
    ]
    return {
        "name": resource.get_api_name(),
        "model": resource.model.__name__,
        "summary": resource.summary,
        "read_auth": "GET" in protected,
        "admins_only": isinstance(resource.authentication, AdminApiCredentials)
        and "GET" in protected,
        "filters": filters,
        "ordering": resource.model.ordering_options(),
        "required": list(resource.required_fields),
    }


def resource_schema(resource, outputs):
    """Return the OpenAPI schema of one serialized row of ``resource``: its model fields
    (nested resources by reference) plus the model's ``outputs`` in the data file."""
    properties = {}
    for name in resource.fields:
        if name in (resource.include_resources or {}):
            ref = resource._resources[name].model.__name__
            properties[name] = {"$ref": f"#/components/schemas/{ref}"}
        else:
            properties[name] = ChirpSerializer.field_schema(resource.model._meta.fields[name])
    extra = outputs[resource.model.__name__]
    properties.update(extra["properties"])
    return {
        "type": "object",
        "properties": properties,
        "required": [*resource.fields, *extra["required"]],
    }


def operation(
    form, summary, auth, response=None, parameters=(), body=None, errors=(), responses=None
):
    """Return one OpenAPI operation from its short form in the data file: ``auth`` (True:
    credentials required), the 200 ``response`` schema, further success ``responses``
    (``{status: {"description", "schema"?}}``), the ``errors`` it may answer besides the
    usual ones, and the JSON ``body`` schema; ``form`` is the file's "short_form"."""
    op = {
        "summary": summary,
        "security": form["security"] if auth else [{}, *form["security"]],
        "parameters": list(parameters),
        "responses": {},
    }
    successes = {} if response is None else {"200": {"description": "OK", "schema": response}}
    for status, item in (successes | (responses or {})).items():
        if "schema" in item:
            content = {"application/json": {"schema": item["schema"]}}
            headers = form["success_headers"]
            item = {"description": item["description"], "headers": headers, "content": content}
        op["responses"][status] = item
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        errors = [*errors, *form["body_errors"]]
    for status in (*form["errors"], *errors):
        op["responses"][status] = {"$ref": f"#/components/responses/{status}"}
    return op


def body_schema(operation):
    """Return the JSON Schema of a published ``operation``'s body."""
    return operation["requestBody"]["content"]["application/json"]["schema"]


@functools.cache
def openapi_document(api):
    """Return the OpenAPI 3.1 document of ``api``: templates/api/openapi.json rendered
    with Chirp's limits and each resource's facts, every operation expanded, plus each
    resource's row schema. Rendered once: every number comes from models.py or app.py."""
    text = app.jinja_env.get_template("api/openapi.json").render(
        api_prefix=API_PREFIX,
        auth_hint=AUTH_HINT,
        no_nul_pattern=NO_NUL_PATTERN,
        max_filter_length=MAX_FILTER_LENGTH,
        max_id=MAX_ID,
        max_page=MAX_PAGE,
        max_page_offset=MAX_PAGE_OFFSET,
        page_size=app.config["PAGE_SIZE"],
        max_page_size=MAX_PAGE_SIZE,
        max_body=f"{app.config['MAX_CONTENT_LENGTH'] / 2**20:g} MB",
        resources=[resource_facts(resource) for resource in api._registry.values()],
        **LIMITS,
    )
    data = json.loads(text)
    document = data["document"]
    for path, item in document["paths"].items():
        document["paths"][path] = {
            method: operation(data["short_form"], **op) for method, op in item.items()
        }
    schemas = document["components"]["schemas"]
    for resource in api._registry.values():
        schemas[resource.model.__name__] = resource_schema(resource, data["outputs"])
    # /me/ shows what a user's row shows, and more.
    schemas["Me"]["properties"] = {**schemas["User"]["properties"], **schemas["Me"]["properties"]}
    return document


@app.after_request
def add_api_headers(response):
    """On every /api/ response: the auth hint, links to the document, Vary on credentials."""
    if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
        response.headers.setdefault("X-Chirp-Auth-Hint", AUTH_HINT)
        response.headers.setdefault(
            "Link",
            f'<{API_PREFIX}/openapi.json>; rel="service-desc", <{API_PREFIX}/>; rel="service-doc"',
        )
        response.vary.add("Authorization")
    return response


api = ChirpAPI(app, prefix=API_PREFIX)
api.register(User, UserResource, auth=AdminApiCredentials())
api.register(Message, MessageResource, auth=ApiCredentials())
api.register(Relationship, RelationshipResource, auth=ApiCredentials())
api.register(Note, NoteResource, auth=AdminApiCredentials(protected_methods=ALL_METHODS))
