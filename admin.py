"""The admin at /admin/: flask-peewee's Admin, ModelAdmins and dashboard panels.

Admins moderate every model here, with a read-only audit trail of every admin write. The
rules (what a valid username or note is, what an audit entry holds, how an export writes
a row) live in models.py; this module is the admin's pages. Each flask-peewee 4.0.1 hole
it closes is named after its entry in docs/flask-peewee.md (S3, S4, S5, S10, N6).
"""

import datetime
import functools

from flask import abort
from flask import flash
from flask import g
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask_peewee.admin import Action
from flask_peewee.admin import Admin
from flask_peewee.admin import AdminFilterModelConverter
from flask_peewee.admin import AdminModelConverter
from flask_peewee.admin import AdminPanel
from flask_peewee.admin import ModelAdmin
from flask_peewee.filters import FilterMapping
from peewee import AutoField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import IntegrityError
from wtforms import PasswordField
from wtforms.fields.core import UnboundField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import Optional

from app import MAX_ID
from app import MaxLength
from app import PageProbe
from app import Rule
from app import app
from app import count_up_to
from app import db
from app import download
from app import is_whole_number
from auth import auth
from models import EXPORT_MIMETYPES
from models import MAX_EXPORT_ROWS
from models import NOTE_MAX_LENGTH
from models import PASSWORD_MAX_LENGTH
from models import PASSWORD_MIN_LENGTH
from models import SECRET_FIELDS
from models import ApiToken
from models import AuditEntry
from models import Like
from models import Mention
from models import Message
from models import MessageTag
from models import Note
from models import Notification
from models import Relationship
from models import Repost
from models import Tag
from models import User
from models import audited
from models import daily_counts
from models import export_file
from models import site_totals
from models import with_related

# Row totals on tabs and the dashboard stop counting here ("10000+"): counting a million
# rows costs more than showing a page of them.
COUNT_CAP = 10_000
# The Site stats panel's window, in days, counting today.
STATS_DAYS = 30
NOTES_SHOWN = 10
# Rows of each kind a delete confirmation lists among those going with the deleted row.
DEPENDENTS_SHOWN = 10
# The field that names a row of these models wherever a foreign key points at one.
LABELS = {User: "username", Tag: "name"}


def count_text(count, cap):
    """Return ``count`` (app.count_up_to's, for ``cap``) as text: "``cap``+" above ``cap``."""
    return f"{cap}+" if count > cap else str(count)


def parse_ids(values):
    """Return ``values`` (form or query-string text) as row ids; if any is no row id
    (app.is_whole_number), flash an error and return None: it never reaches the database."""
    if all(is_whole_number(value) for value in values):
        return [int(value) for value in values]
    flash("Row ids must be whole numbers.", "danger")
    return None


class ChirpFilterMapping(FilterMapping):
    """Filters whose values are parsed before they reach the database: dates (4.0.1
    compares the browser's ``2026-11-01T10:00`` as text, off at day boundaries on SQLite)
    and numbers (PostgreSQL refuses ``?fv_user=abc``). A value a filter cannot use drops
    that filter, as a ValueError from flask-peewee's ``clean`` does."""

    datetime_date = FilterMapping.timestamp

    def convert(self, field):
        filters = super().convert(field)
        if isinstance(field, (IntegerField, AutoField, ForeignKeyField)):
            for query_filter in filters:
                query_filter.clean = functools.partial(self.whole_number, query_filter.clean)
        return filters

    @staticmethod
    def whole_number(clean, value):
        """Return ``clean(value)`` (a filter's own cleaning), which must be a whole number
        within the database's integer range when it is text; anything else raises
        ValueError."""
        cleaned = clean(value)
        if isinstance(cleaned, str):
            cleaned = int(cleaned.strip())  # ValueError for "abc"
        if isinstance(cleaned, int) and not -MAX_ID <= cleaned <= MAX_ID:
            raise ValueError("out of range")
        return cleaned


class RowIdKeysConverter:
    """Converter mixin: a key submitted to a foreign-key form field it makes that is no row
    id (``abc``, ``-1``, beyond MAX_ID) matches no row, without asking the database (where
    PostgreSQL would refuse ``WHERE id = 'abc'``: a 500)."""

    def handle_foreign_key(self, model, field, **kwargs):
        name, unbound = super().handle_foreign_key(model, field, **kwargs)
        unbound.field_class = row_id_keys(unbound.field_class)
        return name, unbound


@functools.cache
def row_id_keys(field_class):
    """Return ``field_class`` (a wtf-peewee foreign-key field) whose ``get_model(pk)``
    finds no row for a key that is no row id (app.is_whole_number)."""

    def get_model(self, pk):
        return field_class.get_model(self, pk) if is_whole_number(str(pk)) else None

    return type(field_class.__name__, (field_class,), {"get_model": get_model})


def browser_only_length(unbound):
    """Return the unbound wtforms field ``unbound`` with its ``Length`` validators (from a
    CharField's max_length, on the raw input) made MaxLength: the browser still gets
    ``maxlength``, and the model's rule judges the trimmed, normalised value, as on the
    web and in the API (else a name with a space after it would be refused here only)."""
    validators = [
        MaxLength(v.max) if isinstance(v, Length) and v.max > 0 else v
        for v in unbound.kwargs.get("validators", [])
    ]
    return unbound.field_class(*unbound.args, **{**unbound.kwargs, "validators": validators})


class ChirpFormConverter(RowIdKeysConverter, AdminModelConverter):
    """The admin's edit-form converter (RowIdKeysConverter)."""


class ChirpFilterConverter(RowIdKeysConverter, AdminFilterModelConverter):
    """The admin's filter-form converter (RowIdKeysConverter)."""


class ExportView:
    """The export page of a model admin: the list's rows (filters, search, ordering, ids)
    as a streamed JSON or CSV download (models.export_file). Never every column when no
    field is chosen (S4), never SECRET_FIELDS, always valid JSON (S10), and an audit entry
    saying who exported what."""

    def get_export_fields(self, model=None):
        model = model or self.model
        names = super().get_export_fields(model)
        return [name for name in names if model._meta.fields[name] not in SECRET_FIELDS]

    def get_exportable_lookups(self, related):
        # One level of relation only: 4.0.1 joins two FKs to one model once,
        # so each related path gets its own join in export_query instead.
        lookups = super().get_exportable_lookups(related)
        return {lookup for lookup in lookups if lookup.count("__") <= 1}

    def export(self):
        if parse_ids(request.args.getlist("id")) is None:
            return self._index_redirect()
        if request.method == "POST":
            return self.export_download()
        return super().export()

    def export_count(self):
        """The number of rows an export of this request's list holds, as text (its
        template shows it): "MAX_EXPORT_ROWS+" when the export would be cut."""
        return self.count_label(self.export_query([]), MAX_EXPORT_ROWS)

    def export_download(self):
        """Answer an export POST with a JSON or CSV file of the chosen fields; with no
        allowed field chosen, flash an error and go back (S4)."""
        allowed = self.get_exportable_lookups(self.collect_related_fields(self.model, {}, []))
        lookups = [name for name in request.form.getlist("fields") if name in allowed]
        export_format = request.form.get("format", "json")
        if not lookups or export_format not in EXPORT_MIMETYPES:
            flash("Choose at least one field, and JSON or CSV, to export.", "danger")
            return redirect(request.full_path.rstrip("?"))
        filters = request.query_string.decode("utf-8") or "(none)"
        changes = {"fields": ", ".join(lookups), "format": export_format, "filters": filters}
        AuditEntry.record(g.user, "export", self.model, request.args.getlist("id"), changes)
        chunks, mimetype, cut = export_file(self.export_query(lookups), lookups, export_format)
        response = download(chunks, mimetype, f"export-{self.get_admin_name()}.{export_format}")
        if cut:
            response.headers["X-Chirp-Export-Truncated"] = str(cut)
        return response

    def export_query(self, lookups):
        """Return the list's query (filters, search, ordering, ids: export() checked them)
        with the rows ``lookups`` reach joined in (models.with_related)."""
        paths = [name.split("__")[0] for name in lookups if "__" in name]
        query = self.narrowed(with_related(self.model.select(), paths))[0]
        if request.args.getlist("id"):
            query = query.where(self.pk << parse_ids(request.args.getlist("id")))
        return query


class ChirpModelAdmin(ExportView, ModelAdmin):
    """ModelAdmin with Chirp's defences, shared by every model in the admin.

    - lists are paged without counting (PageProbe); totals stop at COUNT_CAP;
    - every create, edit and delete is audited in the change's transaction
      (models.audited);
    - forms apply the models' ``clean_<field>`` rules, as the web forms and the API do;
    - ``can_add``/``can_edit``/``can_delete`` switch views off (403); without ``can_edit``
      the row page is read-only;
    - delete stays inside ``get_query()`` (S5) and refuses ids that are no row ids;
    - a database constraint violation is a flashed error, not a 500 (ChirpAdmin.refuse);
    - secrets never sort; a filter or form value that is no number where a row id belongs
      is ignored (ChirpFilterMapping, RowIdKeysConverter), never sent to the database.
    """

    form_converter = ChirpFormConverter
    filter_converter = ChirpFilterConverter
    filter_mapping = ChirpFilterMapping
    base_templates = {**ModelAdmin.base_templates, "detail": "admin/models/detail.html"}
    can_add = True
    can_edit = True
    can_delete = True
    display_name = None

    # The list's order, newest first: field names, "-" for descending; the last unique.
    ordering = ("-id",)

    def get_display_name(self):
        return self.display_name or super().get_display_name()

    @property
    def foreign_key_lookups(self):
        """``{foreign key: field}``: each key to a model in LABELS is picked, filtered and
        looked up by that model's label field (a username, a tag's name)."""
        refs = self.model._meta.refs  # {foreign key: model it points at}
        return {fk.name: LABELS[model] for fk, model in refs.items() if model in LABELS}

    def get_query(self):
        """The rows in ``ordering``, with the row of every foreign key among ``columns``
        joined in (models.with_related): one query per page, not one per row and column
        (N6)."""
        fields = self.model._meta.fields
        keys = [fields[n[1:]].desc() if n[0] == "-" else fields[n] for n in self.ordering]
        return with_related(self.model.select(self.model), self.columns or ()).order_by(*keys)

    def column_is_sortable(self, col):
        # Sorting by a hash would leak its order (?ordering=password): secrets never sort.
        field = self.model._meta.fields.get(col)
        return field is not None and field not in SECRET_FIELDS

    def count_label(self, query=None, cap=None):
        """Return the number of rows of ``query`` (default: the whole list) as text,
        "``cap``+" when there are more (default COUNT_CAP; app.count_up_to: the cost stops
        at ``cap``)."""
        cap = cap or COUNT_CAP
        return count_text(count_up_to(self.get_query() if query is None else query, cap), cap)

    def ruled_form(self, form_class, instance):
        """Return ``form_class`` validating each of the model's own fields (foreign keys
        aside) with the model's rule, ``instance.clean_<field>``, where it has one: the
        rule the web forms, the API and save() apply. Its message is the field's error."""
        ruled = [
            field.name
            for field in self.model._meta.sorted_fields
            if hasattr(instance, f"clean_{field.name}") and not isinstance(field, ForeignKeyField)
        ]
        attributes = {}
        for name in ruled:
            attributes[f"validate_{name}"] = Rule(getattr(instance, f"clean_{name}"))
            if isinstance(getattr(form_class, name, None), UnboundField):
                attributes[name] = browser_only_length(getattr(form_class, name))
        return type(form_class.__name__, (form_class,), attributes)

    def get_add_form(self):
        return self.ruled_form(self.get_form(adding=True), self.model())

    def get_edit_form(self, instance):
        return self.ruled_form(self.get_form(), instance)

    def narrowed(self, query):
        """Return ``query`` as this request's list has it (``?ordering``, the filter form's
        arguments, the search ``?q``), and the filter form's state: ``(query, filter form,
        active filters, field tree)``."""
        query = self.apply_ordering(query, request.args.get("ordering") or "")
        filter_form, query, cleaned, field_tree = self.process_filters(query)
        query = self.apply_search(query, request.args.get("q") or "")
        return query, filter_form, cleaned, field_tree

    def index(self):
        """The list page: flask-peewee's, paged by PageProbe, so that no page counts the
        rows (4.0.1 ran two ``COUNT(*)`` per page); POSTs (bulk actions) are its own."""
        if request.method == "POST":
            return super().index()
        session[f"{self.get_admin_name()}.index"] = request.url
        query, filter_form, cleaned, field_tree = self.narrowed(self.get_query())
        return render_template(
            self.templates["index"],
            admin=self.admin,
            model_admin=self,
            query=PageProbe(query, self.paginate_by),
            ordering=request.args.get("ordering") or "",
            search_query=request.args.get("q") or "",
            filter_form=filter_form,
            field_tree=field_tree,
            active_filters=cleaned,
            **self.get_extra_context(),
        )

    def get_object(self, pk):
        if not is_whole_number(str(pk)):
            raise self.model.DoesNotExist
        return super().get_object(pk)

    def save_model(self, instance, form, adding=False):
        """Save ``instance`` from ``form`` and audit it, in one transaction. Only what the
        admin changed changes: the form shows times to the second while rows hold
        microseconds, so a time submitted as shown keeps its stored value (re-parsing it
        would truncate it and audit a change nobody made)."""
        stored = dict(instance.__data__)
        with audited(g.user, "create" if adding else "edit", instance):
            form.populate_obj(instance)
            for name, old in stored.items():
                new = instance.__data__.get(name)
                if isinstance(old, datetime.datetime) and new == old.replace(microsecond=0):
                    setattr(instance, name, old)
            self.before_save(instance, form, adding)
            instance.save(force_insert=adding)
        return instance

    def before_save(self, instance, form, adding):
        """Hook: adjust ``instance`` after the form filled it, before its one save."""

    def add(self):
        if not self.can_add:
            abort(403)
        return super().add()

    def edit(self, pk):
        return super().edit(pk) if self.can_edit else self.detail(pk)

    def detail(self, pk):
        """Render one row read-only; a POST is refused (403)."""
        if request.method == "POST":
            abort(403)
        try:
            instance = self.get_object(pk)
        except self.model.DoesNotExist:
            abort(404)
        return render_template(
            self.templates["detail"],
            admin=self.admin,
            model_admin=self,
            instance=instance,
            rows=self.get_detail_rows(instance),
            **self.get_extra_context(),
        )

    def get_detail_rows(self, instance):
        """Return ``[(label, value)]`` for the read-only page: every non-secret column."""
        return [
            (self.admin.get_verbose_name(self.model, field.name), getattr(instance, field.name))
            for field in self.model._meta.sorted_fields
            if field not in SECRET_FIELDS
        ]

    def delete(self):
        if not self.can_delete:
            abort(403)
        ids = parse_ids(request.values.getlist("id"))
        if ids is None:
            return self._index_redirect()
        if request.method == "POST":
            return self.delete_rows(ids)
        return super().delete()

    def collect_objects(self, obj):
        """What deleting ``obj`` takes with it, for the confirmation page: the first
        DEPENDENTS_SHOWN rows of each kind, and their total (to COUNT_CAP) when there are
        more (models.BaseModel.dependents). 4.0.1 lists every one: 100 000 rows for a
        prolific author."""
        kinds = obj.dependents(DEPENDENTS_SHOWN, COUNT_CAP)
        return [(kind, rows, total and count_text(total, COUNT_CAP)) for kind, rows, total in kinds]

    def delete_rows(self, ids):
        """Delete the rows ``ids`` that ``get_query()`` can see, auditing each one, in one
        transaction."""
        rows = list(self.get_query().where(self.pk << ids))
        with db.database.atomic():
            for row in rows:
                with audited(g.user, "delete", row):
                    row.delete_instance(recursive=self.delete_recursive)
        flash(f"Deleted {len(rows)} {self.get_display_name()} row(s).", "success")
        return self._index_redirect()

    def ajax_list(self):
        # 4.0.1 answers an unknown or missing ?field= with a 500.
        if request.args.get("field") not in (self.foreign_key_lookups or {}):
            return jsonify(error="Unknown lookup field."), 400
        return super().ajax_list()


class ListedAdmin(ChirpModelAdmin):
    """A model admin for rows Chirp makes itself: listed, filtered, viewed, exported and
    (unless ``can_delete`` is off) deleted, never added or edited here."""

    can_add = False
    can_edit = False


class SetActiveAction(Action):
    """Bulk action: deactivate or reactivate users (User.set_active: one transaction, one
    audit entry). A deactivated user cannot log in and their messages are hidden until
    they are reactivated. Admins cannot deactivate themselves."""

    def __init__(self, active):
        name = "reactivate" if active else "deactivate"
        super().__init__(name, f"{name.title()} selected users")
        self.active = active

    def callback(self, id_list):
        ids = parse_ids(id_list)
        if ids is None:
            return None
        if not self.active:
            ids, refusal = User.except_self(g.user, ids, "deactivate")
            if refusal:
                flash(refusal, "warning")
        changed = User.set_active(ids, self.active, actor=g.user)
        flash(f"{self.name.title()}d {len(changed)} user(s).", "success")
        return None


# Registered with admin.register, not auth.register_admin(): 4.0.1 subclasses the admin
# class it is given and replaces its save_model with one that stores the plaintext
# password first (S3).
class UserAdmin(ChirpModelAdmin):
    """Users. The password hash is never in a form, list, export or audit entry (S3):
    a write-only "new password" field is hashed before the one save."""

    columns = ("username", "display_name", "email", "join_date", "active", "admin", "message_count")
    exclude = ("password", "session_token", "username_skeleton")
    export_exclude = exclude
    search_fields = ("username", "display_name", "bio", "email")
    filter_fields = ["username", "display_name", "email", "join_date", "active", "admin"]
    actions = [SetActiveAction(False), SetActiveAction(True)]

    ordering = ("-join_date", "-id")

    def get_query(self):
        return User.with_message_counts(super().get_query())  # one query per page (N6)

    def ruled_form(self, form_class, instance):
        """The user form: the rules, plus ``new_password`` (required when adding), and
        nobody locks themself out (deactivating themself, dropping their admin flag)."""
        adding = instance.id is None

        class UserForm(super().ruled_form(form_class, instance)):
            new_password = PasswordField(
                "New password",
                validators=[
                    DataRequired() if adding else Optional(),
                    Length(PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH),
                ],
                description=None if adding else "Leave empty to keep the current password.",
                render_kw={"autocomplete": "new-password"},
            )

            def validate(form, extra_validators=None):
                # Checked after the fields: their Optional() stops at "False".
                valid = super().validate(extra_validators)
                for field, action in ((form.active, "deactivate"), (form.admin, "demote")):
                    refusal = User.except_self(g.user, [instance.id], action)[1]
                    if refusal and not field.data:
                        field.errors.append(refusal)
                        valid = False
                return valid

        return UserForm

    def before_save(self, instance, form, adding):
        # populate_obj never sees "password" (excluded), so the row is saved once, with
        # the hash: 4.0.1 saved the plaintext first and hashed it in a second UPDATE.
        if form.new_password.data:
            instance.set_password(form.new_password.data)
            if instance.id == g.user.id:  # an admin changing their own password stays in
                auth.renew_session(instance)

    def delete_rows(self, ids):
        ids, refusal = User.except_self(g.user, ids, "delete")
        if refusal:
            flash(refusal, "warning")
        return super().delete_rows(ids)


class MessageAdmin(ChirpModelAdmin):
    """Messages, with their author picked and filtered by username. Replies show what they
    answer; the counters and the reply link are kept by Chirp, never edited here."""

    columns = ("excerpt", "user", "pub_date", "replying_to", "reply_count", "like_count")
    ordering = ("-pub_date", "-id")
    exclude = ("in_reply_to", "is_reply", "reply_count", "like_count", "repost_count")
    search_fields = ("content", "user__username")
    filter_fields = ["user", "user__username", "pub_date", "content", "is_reply"]


class RelationshipAdmin(ChirpModelAdmin):
    """Follows. Both users are joined in through aliases: one query per page (N6)."""

    columns = ("from_user", "to_user", "created_date")
    ordering = ("-created_date", "-id")
    filter_fields = ["from_user", "to_user", "created_date"]


class NoteAdmin(ChirpModelAdmin):
    """Admins' notes (also posted from the dashboard's Notes panel)."""

    columns = ("message", "user", "state", "created_date")
    ordering = ("-created_date", "-id")
    search_fields = ("message", "user__username")
    filter_fields = ["user", "status", "created_date"]


class AuditAdmin(ListedAdmin):
    """The audit trail: read-only (no add, edit or delete), newest first."""

    can_delete = False
    display_name = "Audit trail"
    columns = ("created_date", "who", "action", "model_name", "object_id", "changed")
    search_fields = ("action", "model_name", "object_id", "actor_name")
    filter_fields = ["actor", "action", "model_name", "object_id", "created_date"]
    ordering = ("-created_date", "-id")

    def get_query(self):
        # "who" falls back on the actor's row for entries without a name.
        return with_related(super().get_query(), ["actor"])

    def get_detail_rows(self, instance):
        rows = [row for row in super().get_detail_rows(instance) if row[0] != "Changes"]
        return rows + instance.change_rows()


# Rows Chirp makes itself (ListedAdmin: listed, filtered, viewed, exported and deleted,
# never added or edited here), each with what its list shows, searches and filters.
REACTIONS = {  # deleting one, its message's counter follows
    "columns": ("user", "message", "created_date"),
    "search_fields": ("user__username",),
    "filter_fields": ["user", "user__username", "created_date"],
}
LISTED = {
    Like: REACTIONS,
    Repost: REACTIONS,
    Notification: {
        "columns": ("recipient", "actor", "kind", "message_id", "read", "created_date"),
        "filter_fields": ["recipient", "actor", "kind", "read", "created_date"],
    },
    # A token is issued to its owner in their settings; its hash is a secret (never shown).
    ApiToken: {
        "display_name": "API token",
        "columns": ("name", "user", "created_date", "last_used"),
        "search_fields": ("name", "user__username"),
        "filter_fields": ["user", "user__username", "name", "created_date", "last_used"],
    },
    # Tags, and which message carries which tag or mentions whom: extracted from
    # messages when those are saved.
    Tag: {"columns": ("name",), "search_fields": ("name",), "filter_fields": ["name"]},
    MessageTag: {
        "display_name": "Message tag",
        "columns": ("tag", "message"),
        "search_fields": ("tag__name",),
        "filter_fields": ["tag", "tag__name", "message"],
    },
    Mention: {
        "columns": ("user", "message"),
        "search_fields": ("user__username",),
        "filter_fields": ["user", "user__username", "message"],
    },
}


class StatsPanel(AdminPanel):
    """Dashboard panel: the site's totals (models.site_totals), and sign-ups and messages
    per day for STATS_DAYS days (models.daily_counts), which its template draws as inline
    SVG bar charts (no script, no inline style)."""

    template_name = "admin/panels/stats.html"

    def get_context(self):
        return {
            "days": STATS_DAYS,
            "totals": site_totals(),
            "signups": daily_counts(User.join_date, STATS_DAYS),
            "messages": daily_counts(Message.pub_date, STATS_DAYS),
        }


class NotesPanel(AdminPanel):
    """Dashboard panel: post a note, and see the NOTES_SHOWN latest live notes."""

    template_name = "admin/panels/notes.html"

    def get_urls(self):
        return (("/create/", self.create),)

    def get_context(self):
        return {"notes": Note.latest_live(NOTES_SHOWN), "note_max_length": NOTE_MAX_LENGTH}

    def create(self):
        """POST: save the note in ``message`` (Note.save applies models.clean_note) and
        audit it; either way, back to the dashboard. A GET just goes back."""
        if request.method == "POST":
            try:
                with audited(g.user, "create", Note(user=g.user)) as note:
                    note.message = request.form.get("message", "")
                    note.save()
            except ValueError as exc:  # TextRefused
                flash(str(exc), "danger")
            else:
                flash("Note posted.", "success")
        return redirect(self.dashboard_url())


class ChirpAdmin(Admin):
    """flask-peewee's Admin for active admins only, whose login redirect keeps the full
    path and query in ``next`` (4.0.1 formats it as ``b'...'``)."""

    def get_blueprint(self, blueprint_name):
        blueprint = super().get_blueprint(blueprint_name)
        blueprint.register_error_handler(IntegrityError, self.refuse)
        return blueprint

    @staticmethod
    def refuse(exc):
        """Answer a database constraint violation (the change was rolled back) with a
        flashed error and the same page again, not a 500."""
        flash(f"Not saved: the database refused it ({exc}).", "danger")
        return redirect(request.url)

    def auth_required(self, func):
        @functools.wraps(func)
        def inner(*args, **kwargs):
            user = self.auth.get_logged_in_user()
            if not user:
                return self.auth.login_redirect()
            if not self.check_user_permission(user):
                abort(403)
            return func(*args, **kwargs)

        return inner

    def check_user_permission(self, user):
        return bool(user.active and user.admin)

    def get_model_field(self, model, field):
        """A list cell's value; times to the minute (peewee stores microseconds)."""
        value = super().get_model_field(model, field)
        if isinstance(value, datetime.datetime):
            return value.strftime("%Y-%m-%d %H:%M")
        return value


admin = ChirpAdmin(app, auth, branding="Chirp")
admin.register(User, UserAdmin)
admin.register(Message, MessageAdmin)
admin.register(Relationship, RelationshipAdmin)
admin.register(Note, NoteAdmin)
admin.register(AuditEntry, AuditAdmin)
for model, settings in LISTED.items():
    admin.register(model, type(f"{model.__name__}Admin", (ListedAdmin,), settings))
admin.register_panel("Notes", NotesPanel)
admin.register_panel("Site stats", StatsPanel)
