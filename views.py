"""The web pages: timelines, users, follow/unfollow, posting and replying, threads, likes,
reposts, notifications, joining and settings.

Every state-changing request is a POST carrying SeaSurf's CSRF token.
"""

import datetime
import functools
import time

from flask import abort
from flask import flash
from flask import g
from flask import has_request_context
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_peewee.utils import get_object_or_404
from markupsafe import Markup
from peewee import IntegrityError
from wtforms import Form
from wtforms import PasswordField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms import ValidationError
from wtforms.validators import DataRequired
from wtforms.validators import EqualTo
from wtforms.validators import Length
from wtforms.validators import Optional

from app import MAX_PAGE
from app import MAX_PAGE_OFFSET
from app import KeysetPage
from app import MaxLength
from app import PageProbe
from app import Rule
from app import app
from app import csrf_field
from app import db
from app import parse_whole_number
from app import rate_limited
from app import timesince
from auth import auth
from models import BIO_MAX_LENGTH
from models import DISPLAY_NAME_MAX_LENGTH
from models import EMAIL_MAX_LENGTH
from models import MESSAGE_MAX_LENGTH
from models import PASSWORD_MAX_LENGTH
from models import PASSWORD_MIN_LENGTH
from models import SEARCH_QUERY_MAX_LENGTH
from models import TAKEN_MESSAGE
from models import TOKEN_NAME_MAX_LENGTH
from models import USERNAME_MAX_LENGTH
from models import USERNAME_PATTERN
from models import ApiToken
from models import Message
from models import Notification
from models import Tag
from models import TextRefused
from models import User
from models import clean_bio
from models import clean_display_name
from models import clean_message
from models import clean_token_name
from models import identicon_svg
from models import linkify
from models import parse_search
from models import pending_migrations
from models import search_messages
from models import search_people

# The composer's counter reads data-max-characters (the browser's maxlength would count
# UTF-16 units, stopping at 140 emoji) and counts as models.normalize_text says.
app.add_template_global(MESSAGE_MAX_LENGTH, "message_max_length")
# The search box is a plain GET form, not a wtforms one: its maxlength comes from here.
app.add_template_global(SEARCH_QUERY_MAX_LENGTH, "search_max_length")

# Avatars never change for an id, so browsers and proxies may keep them for a year.
AVATAR_MAX_AGE = 365 * 24 * 3600

app.add_template_filter(linkify)


# URLs and UrlPatterns that are the same on every request of this process under the
# same script root (made_once); at most FIXED_URLS_MAX of them.
FIXED_URLS = {}
FIXED_URLS_MAX = 1000


def made_once(key, make):
    """Return what ``make()`` returns for ``key`` (a tuple starting with the request's
    script root), calling it only the first time in this process: kept in FIXED_URLS,
    unless that already holds FIXED_URLS_MAX entries."""
    value = FIXED_URLS.get(key)
    if value is None:
        value = make()
        if len(FIXED_URLS) < FIXED_URLS_MAX:
            FIXED_URLS[key] = value
    return value


class UrlPattern:
    """``url_for(endpoint, **{key: value}, **values)`` for many values of ``key``, built
    once: the URL is made with a stand-in for ``key`` and split around it, so each call
    only joins three strings. ``url_for`` costs about 8 microseconds, and a page of
    messages asked it for about eight URLs per message.

    ``key`` must be an ``int`` (a message id) or a username (letters, digits and ``_``,
    which need no escaping); the result equals url_for's exactly for those.
    """

    # Stand-ins that no route or query argument of Chirp's holds by chance.
    STAND_INS = {"message_id": 918273645, "in_reply_to": 918273645, "username": "Zz918273645"}

    def __init__(self, endpoint, key, **values):
        stand_in = self.STAND_INS[key]
        url = url_for(endpoint, **{key: stand_in}, **values)
        self.head, _, self.tail = url.partition(str(stand_in))

    def __call__(self, value):
        return f"{self.head}{value}{self.tail}"

    @classmethod
    def fixed(cls, endpoint, key):
        """Return the UrlPattern of ``endpoint`` by ``key`` without other values: the same
        on every request under this request's script root, so made once (made_once)."""
        return made_once((request.script_root, cls, endpoint, key), lambda: cls(endpoint, key))


class MessageLinks:
    """What includes/message.html links to, worked out once per page (message_links):
    per-message URLs (UrlPattern), where the like and repost buttons send the browser
    back to (``back``, the page's own path), the edit and delete links with that path as
    ``next``, and the CSRF field of their forms."""

    def __init__(self):
        self.back = request.full_path
        back = self.back.rstrip("?")
        self.user = UrlPattern.fixed("user_detail", "username")
        self.message = UrlPattern.fixed("message_detail", "message_id")
        self.reply = UrlPattern.fixed("create", "in_reply_to")
        self.like = UrlPattern.fixed("message_like", "message_id")
        self.unlike = UrlPattern.fixed("message_unlike", "message_id")
        self.repost = UrlPattern.fixed("message_repost", "message_id")
        self.unrepost = UrlPattern.fixed("message_unrepost", "message_id")
        self.edit = UrlPattern("edit", "message_id", next=back)
        self.delete = UrlPattern("delete", "message_id", next=back)

    def person(self, username):
        """Return the URL of ``username``'s page (url_for's, also for unusual names)."""
        if USERNAME_PATTERN.fullmatch(username):
            return self.user(username)
        return url_for("user_detail", username=username)

    @property
    def csrf_field(self):
        """The hidden CSRF input of the page's forms (one token per page)."""
        if "message_csrf_field" not in g:
            g.message_csrf_field = csrf_field()
        return g.message_csrf_field


@app.template_global("url_for")
def template_url_for(endpoint, **values):
    """Flask's url_for, for templates. A URL without values (a page's own address) or of
    a static file is the same on every request under the same script root, so it is
    built once per process: url_for costs about 10 µs, and base.html alone asks for
    about fifteen of them on every page."""
    fixed = not values or (endpoint == "static" and list(values) == ["filename"])
    if not fixed or endpoint.startswith(".") or not has_request_context():
        return url_for(endpoint, **values)
    key = (request.script_root, endpoint, values.get("filename"))
    return made_once(key, lambda: url_for(endpoint, **values))


@app.template_global()
def message_links():
    """Return this request's MessageLinks (made at the first call)."""
    if "message_links" not in g:
        g.message_links = MessageLinks()
    return g.message_links


class MessageDisplay:
    """What includes/message.html prints of one message, as strings made in Python by
    show_messages, one pass per page. Jinja calling filters, URL builders and date
    methods eight or more times per message cost about a fifth of a timeline page.

    Attributes: ``author_url``, ``avatar_url``, ``name`` and ``username`` (the author's),
    ``reposted_by`` (the "reposted by" links, HTML; "" for none), ``url`` (the
    message's page), ``datetime`` and ``title`` (its local date, ISO and readable),
    ``since`` (timesince), ``edited`` (the title of the "edited" mark, or None),
    ``parent_url`` and ``parent_username`` (what a reply answers, when visible),
    ``content`` (linkify's HTML) and, for a logged-in viewer, the forms' targets:
    ``reply_url``, ``like_url``, ``repost_url``, and ``edit_url``/``delete_url`` for the
    viewer's own messages (else None); ``csrf_field`` and ``back`` (MessageLinks').
    """

    __slots__ = (
        "author_url",
        "avatar_url",
        "name",
        "username",
        "reposted_by",
        "url",
        "datetime",
        "title",
        "since",
        "edited",
        "parent_url",
        "parent_username",
        "content",
        "reply_url",
        "like_url",
        "repost_url",
        "edit_url",
        "delete_url",
        "csrf_field",
        "back",
    )

    def __init__(self, message, links, viewer, now, csrf):
        author = message.user
        self.author_url = links.person(author.username)
        self.avatar_url = author.avatar_url
        self.name = author.name
        self.username = author.username
        self.reposted_by = ""
        if message.reposted_by:
            self.reposted_by = Markup(", ").join(
                Markup('<a href="{}">@{}</a>').format(links.person(p.username), p.username)
                for p in message.reposted_by
            )
        self.url = links.message(message.id)
        local_date = message.pub_date.astimezone()
        self.datetime = local_date.isoformat(timespec="seconds")
        self.title = local_date.strftime("%Y-%m-%d %H:%M %z")
        self.since = timesince(message.pub_date, now)
        self.edited = None
        if message.edited_date:
            self.edited = "Edited " + message.edited_date.astimezone().strftime("%Y-%m-%d %H:%M %z")
        parent = message.parent
        self.parent_url = links.message(parent.id) if parent else None
        self.parent_username = parent.user.username if parent else None
        self.content = linkify(message.content, message.known_mentions)
        self.reply_url = self.like_url = self.repost_url = None
        self.edit_url = self.delete_url = self.csrf_field = None
        self.back = links.back
        if viewer is not None:
            self.csrf_field = csrf
            self.reply_url = links.reply(message.id)
            self.like_url = (links.unlike if message.liked else links.like)(message.id)
            self.repost_url = (links.unrepost if message.reposted else links.repost)(message.id)
            if viewer.id == message.user_id:
                self.edit_url = links.edit(message.id)
                self.delete_url = links.delete(message.id)


def show_messages(messages):
    """Give each of ``messages`` (annotated by Message.annotate) its MessageDisplay
    (``message.shown``), with one clock reading for the page; returns ``messages``."""
    links = message_links()
    now = datetime.datetime.now()
    csrf = links.csrf_field if g.user is not None else None
    for message in messages:
        message.shown = MessageDisplay(message, links, g.user, now, csrf)
    return messages


class JoinForm(Form):
    """Sign-up: a new username and e-mail (both unique), and a confirmed password."""

    username = StringField(
        "Username",
        validators=[DataRequired(), Rule(User.clean_new_username), MaxLength(USERNAME_MAX_LENGTH)],
    )
    email = StringField(
        "Email",
        validators=[DataRequired(), Rule(User.clean_new_email), MaxLength(EMAIL_MAX_LENGTH)],
    )
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH)]
    )
    confirm = PasswordField(
        "Confirm password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )


class MessageForm(Form):
    """A message, as models.clean_message accepts it: normalised, 1 to 280 characters
    with something visible, no direction overrides or invisible format characters."""

    content = TextAreaField("Message", validators=[DataRequired(), Rule(clean_message)])


class SettingsForm(Form):
    """Change e-mail and/or password; both need the current password. The address the
    account already has is always accepted, even one from before today's rules, so an
    account can always save its settings."""

    email = StringField("Email", validators=[DataRequired(), MaxLength(EMAIL_MAX_LENGTH)])
    new_password = PasswordField(
        "New password",
        validators=[Optional(), Length(PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH)],
        description="Leave empty to keep your password.",
    )
    confirm = PasswordField(
        "Confirm new password",
        validators=[EqualTo("new_password", message="The passwords do not match.")],
    )
    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=PASSWORD_MAX_LENGTH)]
    )

    def validate_email(self, field):
        Rule(functools.partial(User.clean_new_email, user=g.user))(self, field)

    def validate_current_password(self, field):
        if not auth.check_current_password(g.user, field.data):
            raise ValidationError("That is not your current password.")


class ProfileForm(Form):
    """The public profile: a display name and a short bio, both optional, one line each."""

    display_name = StringField(
        "Display name",
        validators=[Rule(clean_display_name), MaxLength(DISPLAY_NAME_MAX_LENGTH)],
        description="Shown beside your @username. Leave empty to show just the username.",
    )
    bio = StringField(
        "Bio",
        validators=[Rule(clean_bio), MaxLength(BIO_MAX_LENGTH)],
        description=f"A few words about you, up to {BIO_MAX_LENGTH} characters.",
    )


class TokenForm(Form):
    """A name for a new API token, so its owner can tell tokens apart."""

    name = StringField(
        "Token name",
        validators=[DataRequired(), Rule(clean_token_name), MaxLength(TOKEN_NAME_MAX_LENGTH)],
    )


def page_size():
    """Return how many rows a web list shows per page (the PAGE_SIZE setting)."""
    return app.config["PAGE_SIZE"]


def parse_username_cursor(name, raw):
    """Return ``raw`` if it is a possible username (the directory's ``?after=`` cursor),
    else abort with 400."""
    if not USERNAME_PATTERN.fullmatch(raw):
        abort(400, f"{name} must be a username.")
    return raw


def legacy_page_redirect(fetch=None, cursor_arg="before", cursor_of=lambda row: row.id):
    """Answer an old ``?page=N`` URL, from before keyset paging, with a 301 to the keyset
    URL (``?before=``, or ``cursor_arg``) showing the same rows; None when there is no
    ``page`` argument. Garbage is a 400.

    ``fetch``, ``cursor_of``: as for KeysetPage. The last row of page N-1 is found by one
    OFFSET query, bounded by MAX_PAGE_OFFSET (deeper pages are a 404, as are pages past
    the end). Without ``fetch`` every page goes to the first: the home timeline merges
    many ranges, and an offset into each would cost far more than a page.
    """
    raw = request.args.get("page")
    if raw is None:
        return None
    offset = (parse_whole_number("The page number", raw, 1, MAX_PAGE) - 1) * page_size()
    if offset > MAX_PAGE_OFFSET:
        abort(404, "Pages this old are no longer numbered: follow the Older links.")
    values = dict(request.view_args)
    if offset and fetch is not None:
        rows = list(fetch(None, offset + 1).offset(offset - 1).limit(2))
        if len(rows) < 2:
            abort(404, "This page is past the end of the list.")
        values[cursor_arg] = cursor_of(rows[0])
    return redirect(url_for(request.endpoint, **values), 301)


def render_timeline(template, fetch, legacy_pages=True, **context):
    """Render ``template`` with one keyset page (KeysetPage) of the timeline ``fetch``
    as ``message_list`` (annotated: parents, counts, the viewer's likes and reposts, in
    a constant number of queries) and the page as ``pagination``; an old ``?page=`` URL is
    redirected (legacy_page_redirect, to the page itself exactly when ``legacy_pages``)."""
    legacy = legacy_page_redirect(fetch if legacy_pages else None)
    if legacy is not None:
        return legacy
    pagination = KeysetPage(fetch, page_size())
    return render_template(
        template, message_list=annotate(pagination.items), pagination=pagination, **context
    )


def render_people(fetch, title, **context):
    """Render user_list.html with one keyset page of the people list ``fetch`` (followers
    or following, newest follow first, by ``?before=<follow id>``)."""

    def cursor_of(row):
        return row.follow_id

    legacy = legacy_page_redirect(fetch, cursor_of=cursor_of)
    if legacy is not None:
        return legacy
    pagination = KeysetPage(fetch, page_size(), cursor_of=cursor_of)
    return render_template(
        "user_list.html", user_list=pagination.items, pagination=pagination, title=title, **context
    )


def render_list(template, query, var_name, prepare=None, **context):
    """Render ``template`` with one numbered page (PageProbe: no count) of ``query`` as
    ``var_name``, plus ``pagination`` for the newer/older links. ``prepare``, if given,
    receives the page's rows (a list) and returns what the template gets. Prefer
    render_timeline (keyset) where the list has a unique sort key of its own."""
    pagination = PageProbe(query, page_size())
    context[var_name] = pagination.get_list()
    if prepare is not None:
        context[var_name] = prepare(context[var_name])
    return render_template(template, pagination=pagination, **context)


def render_messages(template, query, **context):
    """Render ``template`` with one page of the messages ``query`` as ``message_list``,
    each with its parent, counts and the viewer's likes and reposts (Message.annotate:
    the same few queries whatever the page holds)."""
    return render_list(template, query, "message_list", prepare=annotate, **context)


def annotate(messages):
    """Message.annotate for the logged-in user (or nobody), then show_messages: what
    includes/message.html needs of each message."""
    return show_messages(Message.annotate(list(messages), g.user))


def keyset_param(name):
    """Return the id in ``request.args[name]`` (None when absent); 400 unless 1..MAX_ID."""
    raw = request.args.get(name)
    return None if raw is None else parse_whole_number(name, raw)


def local_next(default):
    """Return the form's (or else the query string's) ``next`` if it is a path on this
    site, else ``default``: a button sends the browser back where it was, never to
    another site."""
    target = request.values.get("next", "")
    if target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target:
        return target
    return default


def get_person(username):
    """Return the active user called ``username`` (any case), or abort with 404."""
    person = User.active_named(username)
    if person is None:
        abort(404)
    return person


def get_own_message(message_id):
    """Return message ``message_id`` if the logged-in user wrote it: 404 if it does not
    exist, 403 if it is someone else's."""
    message = get_object_or_404(Message, Message.id == message_id)
    if message.user_id != g.user.id:
        abort(403, "You can only change your own messages.")
    return message


@app.route("/")
def index():
    """The home timeline when logged in, else the public timeline."""
    if auth.get_logged_in_user():
        return home_timeline()
    return public_timeline()


@app.route("/public/")
def public_timeline():
    """Every visible message, newest first."""
    return render_timeline("public_timeline.html", Message.public_timeline)


@app.route("/private/")
@auth.login_required
def home_timeline():
    """The logged-in user's messages and those of everyone they follow."""
    return render_timeline(
        "home_timeline.html", g.user.home_timeline, legacy_pages=False, form=MessageForm()
    )


@app.route("/join/", methods=["GET", "POST"])
@rate_limited("signup")
def join():
    """Sign up, then log in as the new user. Someone logged in is sent home instead."""
    if g.user is not None:
        flash(f"You are already a member, {g.user.username}.", "info")
        return redirect(url_for("index"))
    form = JoinForm(request.form)
    if request.method == "POST" and form.validate():
        user = User(username=form.username.data, email=form.email.data)
        user.set_password(form.password.data)
        try:
            with db.database.atomic():
                user.save()
        except IntegrityError:  # a concurrent sign-up took the name or address
            form.username.errors.append(TAKEN_MESSAGE)
        else:
            auth.login_user(user, greeting=f"Welcome to Chirp, {user.username}!")
            return redirect(url_for("index"))
    return render_template("join.html", form=form), 422 if form.errors else 200


@app.route("/users/")
def user_list():
    """The directory of active users, by username, paged with ``?after=<username>``."""

    def cursor_of(row):
        return row.username

    legacy = legacy_page_redirect(User.directory, "after", cursor_of)
    if legacy is not None:
        return legacy
    pagination = KeysetPage(
        User.directory,
        page_size(),
        cursor_arg="after",
        parse_cursor=parse_username_cursor,
        cursor_of=cursor_of,
    )
    pagination.previous_label, pagination.next_label = "First", "Next"
    return render_template(
        "user_list.html",
        user_list=pagination.items,
        pagination=pagination,
        title="People",
        search_box=True,
    )


@app.route("/users/<username>/")
def user_detail(username):
    """One user's page: their messages and follower/following counts."""
    person = get_person(username)
    following = g.user is not None and g.user.is_following(person)
    return render_timeline(
        "user_detail.html",
        person.timeline,
        person=person,
        is_following=following,
        counts=person.profile_counts(),
    )


@app.route("/avatars/<int:user_id>.svg")
def avatar(user_id):
    """The generated avatar (identicon) of user ``user_id``, cached for a year: it depends
    on the id alone, so it needs no database query."""
    response = app.response_class(identicon_svg(user_id), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = f"public, max-age={AVATAR_MAX_AGE}, immutable"
    return response


@app.route("/tags/<tag>/")
def tag_timeline(tag):
    """The visible messages tagged ``tag`` (any case), newest first."""
    name = Tag.name_of(tag)
    return render_timeline(
        "tag_timeline.html",
        lambda before, limit: Message.tag_timeline(name, before, limit),
        tag=name,
        title=f"#{name}",
    )


@app.route("/search/")
def search():
    """Search people (username or display name prefix) and messages (words, "phrases",
    #tags, from:name), messages newest first, keyset-paged with ``?before=``."""
    text = request.args.get("q", "")
    try:
        query = parse_search(text)
    except TextRefused as exc:
        abort(400, str(exc))
    pagination = KeysetPage(
        lambda before, limit: search_messages(query, before, limit), page_size(), keep_args=("q",)
    )
    people = list(search_people(query)) if pagination.cursor is None else []
    return render_template(
        "search.html",
        q=text,
        people=people,
        message_list=annotate(pagination.items),
        pagination=pagination,
    )


@app.route("/users/<username>/followers/")
def user_followers(username):
    """The users who follow ``username``."""
    person = get_person(username)
    title = f"People following {person.username}"
    return render_people(person.followers, title, person=person)


@app.route("/users/<username>/following/")
def user_following(username):
    """The users ``username`` follows."""
    person = get_person(username)
    title = f"People {person.username} follows"
    return render_people(person.following, title, person=person)


@app.route("/users/<username>/follow/", methods=["POST"])
@auth.login_required
@rate_limited("follow")
def user_follow(username):
    """Follow ``username``; following yourself is refused with a message."""
    person = get_person(username)
    try:
        g.user.follow(person)
    except ValueError as exc:
        flash(str(exc), "danger")
    else:
        flash(f"You are now following {person.username}.", "success")
    return redirect(url_for("user_detail", username=person.username))


@app.route("/users/<username>/unfollow/", methods=["POST"])
@auth.login_required
def user_unfollow(username):
    """Stop following ``username``."""
    person = get_person(username)
    g.user.unfollow(person)
    flash(f"You are no longer following {person.username}.", "success")
    return redirect(url_for("user_detail", username=person.username))


@app.route("/create/", methods=["GET", "POST"])
@auth.login_required
@rate_limited("post")
def create():
    """Post a new message, or with ``in_reply_to`` (query or form) a reply: the composer
    then starts with ``@author `` and says what it answers."""
    parent = None
    raw_parent = request.values.get("in_reply_to", "")
    if raw_parent:
        parent = Message.get_visible(parse_whole_number("in_reply_to", raw_parent))
    form = MessageForm(request.form)
    home = url_for("home_timeline")
    if request.method == "POST" and form.validate():
        message = g.user.post(form.content.data, in_reply_to=parent)
        flash("Your message has been posted.", "success")
        if parent is not None:
            return redirect(url_for("message_detail", message_id=message.id))
        return redirect(home)
    if request.method == "POST" and parent is None and request.form.get("next") == home:
        # Posted from the home page's composer: stay there, with the text and the error.
        return render_timeline(
            "home_timeline.html", g.user.home_timeline, legacy_pages=False, form=form
        ), 422
    if request.method == "GET" and parent is not None:
        form.content.data = f"@{parent.user.username} "
    status = 422 if form.errors else 200
    return render_template("message_form.html", form=form, parent=parent), status


@app.route("/messages/<int:message_id>/")
def message_detail(message_id):
    """A message and its thread: what it answers up to the root, then its replies, oldest
    first, PAGE_SIZE at a time (``?after=<reply id>`` for the next ones)."""
    message = Message.get_visible(message_id)
    after = keyset_param("after")
    size = app.config["PAGE_SIZE"]
    replies = list(message.thread_replies(None, after, size + 1))
    more = len(replies) > size
    replies = replies[:size]
    ancestors = message.ancestors()
    annotate(ancestors + [message] + replies)
    return render_template(
        "message_detail.html",
        message=message,
        ancestors=ancestors,
        replies=replies,
        next_after=replies[-1].id if more else None,
    )


def react(message_id, action, done):
    """Apply ``action`` (a User method name: like, unlike, repost, unrepost) of the
    logged-in user to the visible message ``message_id``, flash ``done`` and go back."""
    message = Message.get_visible(message_id)
    getattr(g.user, action)(message)
    flash(done, "success")
    return redirect(local_next(url_for("message_detail", message_id=message.id)))


@app.route("/messages/<int:message_id>/like/", methods=["POST"])
@auth.login_required
@rate_limited("react")
def message_like(message_id):
    """Like a message (liking twice is one like)."""
    return react(message_id, "like", "You liked the message.")


@app.route("/messages/<int:message_id>/unlike/", methods=["POST"])
@auth.login_required
@rate_limited("react")
def message_unlike(message_id):
    """Withdraw your like of a message."""
    return react(message_id, "unlike", "You no longer like the message.")


@app.route("/messages/<int:message_id>/repost/", methods=["POST"])
@auth.login_required
@rate_limited("react")
def message_repost(message_id):
    """Repost a message to your followers' home timelines (once)."""
    return react(message_id, "repost", "You reposted the message.")


@app.route("/messages/<int:message_id>/unrepost/", methods=["POST"])
@auth.login_required
@rate_limited("react")
def message_unrepost(message_id):
    """Undo your repost of a message."""
    return react(message_id, "unrepost", "Your repost has been removed.")


@app.route("/users/<username>/likes/")
@auth.login_required
def user_likes(username):
    """The messages ``username`` liked, most recent like first. Likes are private: only
    their owner sees this page (anyone else gets 404)."""
    person = get_person(username)
    if person.id != g.user.id:
        abort(404)
    return render_messages("user_likes.html", person.liked_messages(), person=person)


@app.route("/notifications/")
@auth.login_required
def notifications():
    """Your notifications, newest first, PAGE_SIZE at a time (``?before=<id>`` for older
    ones); likes and reposts of one message on a page are grouped into one entry."""
    before = keyset_param("before")
    size = app.config["PAGE_SIZE"]
    rows = list(g.user.notifications(before, None, size + 1))
    more = len(rows) > size
    rows = rows[:size]
    return render_template(
        "notifications.html",
        groups=Notification.group(rows),
        next_before=rows[-1].id if more else None,
    )


@app.route("/notifications/read/", methods=["POST"])
@auth.login_required
def notifications_read():
    """Mark all your notifications read."""
    g.user.mark_notifications_read()
    flash("All notifications are marked read.", "success")
    return redirect(url_for("notifications"))


@app.route("/edit/<int:message_id>/", methods=["GET", "POST"])
@auth.login_required
def edit(message_id):
    """Edit one of your own messages, then go back where you came from (``next``)."""
    message = get_own_message(message_id)
    form = MessageForm(request.form, obj=message)
    back = local_next(url_for("user_detail", username=g.user.username))
    if request.method == "POST" and form.validate():
        message.edit(form.content.data)
        flash("Your message has been updated.", "success")
        return redirect(back)
    status = 422 if form.errors else 200
    return render_template("message_form.html", form=form, message=message, back=back), status


@app.route("/delete/<int:message_id>/", methods=["GET", "POST"])
@auth.login_required
def delete(message_id):
    """GET: ask whether to delete one of your own messages (a page, so it works without
    JavaScript); POST: delete it, then go back where you came from (``next``), unless
    that was the message's own page."""
    message = get_own_message(message_id)
    own_page = url_for("message_detail", message_id=message.id)
    back = local_next(url_for("user_detail", username=g.user.username))
    if request.method == "GET":
        return render_template("delete_confirm.html", message=annotate([message])[0], back=back)
    message.delete_instance()
    flash("Your message has been deleted.", "success")
    if back.split("?")[0] == own_page:
        back = url_for("user_detail", username=g.user.username)
    return redirect(back)


@app.route("/settings/", methods=["GET", "POST"])
@auth.login_required
def settings():
    """Change your e-mail address or password, and manage your API tokens. A new
    password ends every other session of the account; this one stays logged in."""
    form = SettingsForm(request.form, obj=g.user)
    if request.method == "POST" and form.validate():
        if form.email.data != g.user.email:
            g.user.email = form.email.data
        if form.new_password.data:
            g.user.set_password(form.new_password.data)
        g.user.save()
        auth.renew_session(g.user)
        flash("Your settings have been saved.", "success")
        return redirect(url_for("settings"))
    return render_settings(form=form), 422 if form.errors else 200


@app.route("/settings/profile/", methods=["POST"])
@auth.login_required
def profile_update():
    """Change your display name and bio (no password needed: both are public anyway)."""
    profile_form = ProfileForm(request.form)
    if not profile_form.validate():
        return render_settings(profile_form=profile_form), 422
    g.user.update_profile(profile_form.display_name.data or "", profile_form.bio.data or "")
    flash("Your profile has been saved.", "success")
    return redirect(url_for("settings"))


def render_settings(form=None, token_form=None, new_token=None, profile_form=None):
    """Render the settings page; ``new_token`` is a just-created token, shown this once."""
    tokens = g.user.api_tokens.order_by(ApiToken.created_date.desc())
    return render_template(
        "settings.html",
        form=form or SettingsForm(obj=g.user),
        profile_form=profile_form or ProfileForm(obj=g.user),
        token_form=token_form or TokenForm(),
        tokens=tokens,
        new_token=new_token,
    )


@app.route("/settings/sessions/end/", methods=["POST"])
@auth.login_required
def end_other_sessions():
    """Log out everywhere else: end every session of this account but the current one."""
    auth.end_other_sessions(g.user)
    flash("You have been logged out everywhere else.", "success")
    return redirect(url_for("settings"))


@app.route("/settings/tokens/", methods=["POST"])
@auth.login_required
@rate_limited("token")
def token_create():
    """Create a named API token and show it once. The response is not cached."""
    token_form = TokenForm(request.form)
    if not token_form.validate():
        return render_settings(token_form=token_form), 422
    _, token = ApiToken.issue(g.user, token_form.name.data)
    response = app.make_response(render_settings(new_token=token))
    response.headers["Cache-Control"] = "no-store"
    return response


@app.route("/settings/tokens/<int:token_id>/revoke/", methods=["POST"])
@auth.login_required
def token_revoke(token_id):
    """Revoke (delete) one of your API tokens; other users' tokens are a 404."""
    token = get_object_or_404(ApiToken, ApiToken.id == token_id, ApiToken.user == g.user)
    token.delete_instance()
    flash(f"Token “{token.name}” has been revoked.", "success")
    return redirect(url_for("settings"))


@app.route("/healthz")
def healthz():
    """Health for load balancers and operators, as JSON.

    200 ``{"status": "ok", "database_ms": ..., "pending_migrations": []}`` when the
    database answers and every migration is applied; 503 with ``"status": "error"`` when
    the database is unreachable, or ``"status": "migrations pending"`` and their names when
    the schema is older than the code (run ``python main.py db upgrade``).
    """
    started = time.perf_counter()
    try:
        db.database.execute_sql("SELECT 1")
        database_ms = round((time.perf_counter() - started) * 1000, 2)
        pending = pending_migrations()
    except Exception:  # any database failure means "not healthy"
        app.logger.exception("Health check: the database is unavailable")
        return jsonify(status="error", error="database unavailable"), 503
    status = "migrations pending" if pending else "ok"
    body = {"status": status, "database_ms": database_ms, "pending_migrations": pending}
    return jsonify(body), 503 if pending else 200


class SchemaCheck:
    """Logs once per process, at its first request, when migrations are pending: gunicorn
    workers never migrate (``python main.py db upgrade`` does), so an operator who forgot
    must hear of it. Checked lazily so that importing Chirp touches no database."""

    checked = False

    @classmethod
    def warn_if_pending(cls):
        if cls.checked:
            return
        cls.checked = True
        try:
            pending = pending_migrations()
        except Exception:  # the health check reports an unreachable database
            return
        if pending:
            app.logger.warning(
                "The database needs %d migration(s) (%s): run `python main.py db upgrade`.",
                len(pending),
                ", ".join(pending),
            )


app.before_request(SchemaCheck.warn_if_pending)
