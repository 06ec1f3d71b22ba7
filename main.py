"""Chirp's single entry point: wires every module and defines the command line.

    python main.py                 apply pending migrations, then serve on http://127.0.0.1:5000
    python main.py COMMAND         the same commands as `flask --app main COMMAND`
    python main.py db upgrade      apply pending migrations (production: before starting gunicorn)
    gunicorn main:app              production; never creates or alters tables

Nothing imports this module except those entry points and tests/conftest.py.
"""

import contextlib
import datetime
import os
import random
import re
import secrets
import shutil
import sqlite3
import subprocess  # nosec B404: pg_dump and pg_restore, with argument lists
import sys
import time

import click
from faker import Faker
from flask.cli import AppGroup
from flask.cli import FlaskGroup
from flask_peewee.utils import make_password
from peewee import SqliteDatabase
from playhouse.migrations import MigrationError

import views  # noqa: F401  (registers the web pages)
from admin import admin
from api import api
from app import app
from app import db
from app import require_secret_key
from models import MESSAGE_MAX_LENGTH
from models import PASSWORD_MAX_LENGTH
from models import PASSWORD_MIN_LENGTH
from models import TOKEN_NAME_MAX_LENGTH
from models import ApiToken
from models import Message
from models import MessageCount
from models import Relationship
from models import Taken
from models import TextRefused
from models import User
from models import clean_email
from models import clean_token_name
from models import clean_username
from models import migration_runner
from models import pending_migrations
from models import username_key

SECRET_KEY_FILE = os.path.join(app.instance_path, "secret_key")
# The most rows per INSERT while seeding.
SEED_MAX_BATCH = 500
# seed --size: (users, messages, follows), the benchmark's data sets.
SEED_SIZES = {"small": (1_000, 10_000, 20_000), "large": (10_000, 1_000_000, 200_000)}


def use_instance_secret_key(flask_app, path=SECRET_KEY_FILE):
    """Give ``flask_app`` a SECRET_KEY for `python main.py` when the environment has none.

    The key is made once, kept in ``path`` (mode 0600) and reused, so sessions survive a
    restart. An environment SECRET_KEY always wins.
    """
    if flask_app.config.get("SECRET_KEY"):
        return
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as key_file:
            key_file.write(secrets.token_hex(32))
    with open(path) as key_file:
        flask_app.config["SECRET_KEY"] = key_file.read().strip()


if __name__ == "__main__":
    use_instance_secret_key(app)
require_secret_key(app)
admin.setup()
api.setup()


def require_current_schema():
    """Raise click.ClickException, saying what to run, unless every migration is applied."""
    pending = pending_migrations()
    if pending:
        raise click.ClickException(
            f"The database needs {len(pending)} migration(s) ({', '.join(pending)}). "
            "Run: python main.py db upgrade"
        )


db_cli = AppGroup("db", help="Schema migrations: upgrade, status, downgrade.")


@db_cli.command("upgrade")
@click.option("--target", help="Stop after applying this migration (default: apply all).")
def db_upgrade(target):
    """Apply pending migrations in order, each in its own transaction."""
    runner = migration_runner()
    pending = pending_migrations()
    if target is not None and target not in pending:
        raise click.ClickException(f"{target!r} is not a pending migration.")
    if not pending:
        click.echo("The database is up to date.")
    for name in pending:
        click.echo(f"Applying {name} ... ", nl=False)
        started = time.monotonic()
        try:
            runner.up(name)
        except MigrationError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"done ({time.monotonic() - started:.1f} s)")
        if name == target:
            break


@db_cli.command("status")
def db_status():
    """List every migration as applied [x] or pending [ ]; exit 1 while any is pending."""
    rows = migration_runner().status()
    for migration in rows:
        mark = "x" if migration.applied else " "
        when = f"  applied {migration.applied:%Y-%m-%d %H:%M:%S}" if migration.applied else ""
        missing = "  (file missing)" if migration.path is None else ""
        click.echo(f"[{mark}] {migration.name}{when}{missing}")
    pending = [migration.name for migration in rows if not migration.applied]
    if pending:
        click.echo(f"{len(pending)} pending: run python main.py db upgrade", err=True)
        sys.exit(1)


@db_cli.command("downgrade")
@click.option("--target", help="Revert every migration back to and including this one.")
def db_downgrade(target):
    """Revert the newest applied migration (or back through ``--target``)."""
    try:
        reverted = migration_runner().down(target)
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from exc
    for name in reverted:
        click.echo(f"Reverted {name}")
    if not reverted:
        click.echo("No migration is applied.")


app.cli.add_command(db_cli)


def run_postgres_tool(program, *arguments):
    """Run the PostgreSQL client tool ``program`` (``pg_dump``, ``pg_restore``) with
    ``arguments`` against Chirp's database (its name, host, port, user and password, as
    peewee connects). Raises click.ClickException if it is missing or fails."""
    if shutil.which(program) is None:
        raise click.ClickException(
            f"{program} is not installed (Debian: apt-get install postgresql-client)."
        )
    params = db.database.connect_params
    options = [f"--{name}={params[name]}" for name in ("host", "port") if params.get(name)]
    if params.get("user"):
        options.append(f"--username={params['user']}")
    env = dict(os.environ)
    if params.get("password"):  # in the environment: never on a command line others see
        env["PGPASSWORD"] = str(params["password"])
    if params.get("sslmode"):
        env["PGSSLMODE"] = str(params["sslmode"])
    command = [program, *options, f"--dbname={db.database.database}", *arguments]
    # An argument list, never a shell.
    result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, check=False)  # nosec B603
    if result.returncode != 0:
        raise click.ClickException(f"{program} failed (exit status {result.returncode}).")


def sqlite_path():
    """Return the file of Chirp's SQLite database; ClickException if there is none yet."""
    path = db.database.database
    if not os.path.isfile(path):
        raise click.ClickException(f"There is no database at {path}.")
    return path


def check_sqlite_copy(connection, what):
    """Raise click.ClickException unless the SQLite ``connection`` passes SQLite's
    integrity and foreign key checks and holds Chirp's migration history."""
    try:
        ok = connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ok = ok and not connection.execute("PRAGMA foreign_key_check").fetchall()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"{what} is not a usable SQLite database: {exc}") from exc
    if not ok:
        raise click.ClickException(f"{what} fails SQLite's integrity checks.")
    if "schema_migration" not in tables:
        raise click.ClickException(f"{what} is not a Chirp database (no migration history).")


@app.cli.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def backup(file, force):
    """Write a consistent copy of the database to FILE while Chirp keeps serving.

    SQLite: SQLite's online backup API copies one consistent snapshot (writers carry on;
    their later changes are not in the copy), checked with SQLite's integrity checks and
    written as a single file (no -wal), renamed into place only once complete.
    PostgreSQL: runs ``pg_dump --format=custom`` (a snapshot too); ``restore`` reads it.
    """
    if os.path.exists(file) and not force:
        raise click.ClickException(f"{file} exists; choose another name or add --force.")
    if not isinstance(db.database, SqliteDatabase):
        db.database.close()
        run_postgres_tool("pg_dump", "--format=custom", "--no-owner", f"--file={file}")
        click.echo(f"Backed up the PostgreSQL database to {file} (pg_dump, custom format).")
        return
    partial = f"{file}.partial"
    source = sqlite3.connect(sqlite_path(), timeout=app.config["SQLITE_BUSY_TIMEOUT"])
    target = sqlite3.connect(partial)
    try:
        source.backup(target)
        # One self-contained file: the copy needs no -wal beside it.
        target.execute("PRAGMA journal_mode=DELETE")
        check_sqlite_copy(target, "The copy")
        rows = target.execute("SELECT count(*) FROM message").fetchone()[0]
    finally:
        target.close()
        source.close()
    os.replace(partial, file)
    click.echo(f"Backed up the SQLite database to {file} ({rows} messages).")


@app.cli.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="Really replace the whole database with FILE.")
def restore(file, yes):
    """Replace the whole database with the backup FILE (made by ``backup``).

    Every row written since the backup is lost: stop gunicorn first, then run it with
    ``--yes``. Afterwards run ``python main.py db upgrade`` if the backup predates
    migrations the code has.
    """
    if not yes:
        raise click.ClickException(
            "restore replaces every row of the database with the backup's. "
            "Stop gunicorn, then run it again with --yes."
        )
    if isinstance(db.database, SqliteDatabase):
        source = sqlite3.connect(file)
        try:
            check_sqlite_copy(source, file)
            target = sqlite3.connect(sqlite_path(), timeout=app.config["SQLITE_BUSY_TIMEOUT"])
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
    else:
        db.database.close()
        run_postgres_tool(
            "pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction", file
        )
    db.database.close()
    click.echo(f"Restored the database from {file}.")
    with db.database.connection_context():
        pending = pending_migrations()
    if pending:
        click.echo(f"{len(pending)} migration(s) pending: run python main.py db upgrade")


def read_new_password(from_stdin):
    """Return a new password from standard input's first line or from a hidden prompt.

    Raises click.BadParameter if it is shorter than PASSWORD_MIN_LENGTH characters.
    """
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise click.BadParameter(
            f"must be {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters long",
            param_hint="password",
        )
    return password


@app.cli.command("create-admin")
@click.argument("username")
@click.option("--email", help="E-mail address; defaults to USERNAME@localhost.localdomain.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_admin(username, email, password_stdin):
    """Create the admin USERNAME, or make the existing user USERNAME an admin.

    Either way the password is set anew: prompted for, or read from standard input.
    """
    require_current_schema()
    # Judged before the password prompt, by the rules every surface applies.
    try:
        username = clean_username(username)
    except TextRefused as exc:
        raise click.BadParameter(str(exc), param_hint="USERNAME") from None
    try:
        email = None if email is None else clean_email(email)
    except TextRefused as exc:
        raise click.BadParameter(str(exc), param_hint="--email") from None
    password = read_new_password(password_stdin)
    with db.database.atomic():
        user = User.by_username(username).first()
        try:
            if user is None:
                email = email or f"{username}@localhost.localdomain"
                user = User(
                    username=User.clean_new_username(username), email=User.clean_new_email(email)
                )
            elif email:
                user.email = User.clean_new_email(email, user)
        except Taken as exc:
            raise click.UsageError(str(exc)) from None
        user.admin = user.active = True
        user.set_password(password)
        user.save()
    click.echo(f"{user.username} is an admin. Sign in at /admin/.")


@app.cli.command("create-token")
@click.argument("username")
@click.option("--name", default="cli", show_default=True, help="A label for the token.")
def create_token(username, name):
    """Create an API token for USERNAME and print it; only its hash is stored."""
    require_current_schema()
    user = User.by_username(username).first()
    if user is None:
        raise click.BadParameter(f"no user called {username!r}", param_hint="USERNAME")
    try:
        name = clean_token_name(name[:TOKEN_NAME_MAX_LENGTH])
    except TextRefused as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None
    _, token = ApiToken.issue(user, name)
    click.echo(token)


def unique_usernames(fake, count):
    """Return ``count`` Faker usernames made safe for USERNAME_PATTERN and not yet taken
    (in any case, or by a name that looks alike: User.username_taken's rule)."""
    taken = set()
    for name, skeleton in User.select(User.username, User.username_skeleton).tuples():
        taken.update((name.lower(), skeleton.split("#")[0]))
    names = []
    while len(names) < count:
        name = re.sub(r"[^A-Za-z0-9_]", "_", fake.user_name())[:24]
        if {name.lower(), username_key(name)} & taken:
            name = f"{name}_{random.randint(10, 99999)}"
        if not {name.lower(), username_key(name)} & taken:
            taken.update((name.lower(), username_key(name)))
            names.append(name)
    return names


def insert_batches(model, fields, rows, advance=lambda count: None):
    """Insert ``rows`` (tuples of ``fields`` values, any iterable) into ``model`` in
    multi-row INSERTs, calling ``advance(n)`` after each batch, so a progress bar moves
    as the database does the work. Other columns get their model defaults. Rows that
    would break a unique index are skipped."""
    columns = len(model._meta.fields)
    # SQLite binds at most 32766 parameters per statement.
    size = max(1, min(SEED_MAX_BATCH, 32_000 // columns))
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            model.insert_many(batch, fields=fields).on_conflict_ignore().execute()
            advance(len(batch))
            batch = []
    if batch:
        model.insert_many(batch, fields=fields).on_conflict_ignore().execute()
        advance(len(batch))


@contextlib.contextmanager
def bulk_message_load(rows, advance):
    """Run the block (which inserts ``rows`` messages) as a bulk load, inside the caller's
    transaction; yield how many extra units of work it adds to a progress bar (0 or
    ``rows``), which ``advance(units)`` is then called with as the work is done.

    On PostgreSQL the message table's non-unique indexes are dropped for the block and
    rebuilt after it, each in one sorted pass (peewee's IndexMetadata ``sql`` recreates
    each exactly as it was): a million messages go in about three times faster, the GIN
    full-text index especially. The message-count trigger is paused too, for one recount
    at the end: each statement would update the same authors' rows again, and within
    one transaction their row versions pile up. SQLite keeps up with a bulk load as it
    is, so there nothing changes. Unique indexes stay: ``insert_batches`` skips rows that
    would break them.
    """
    if isinstance(db.database, SqliteDatabase):
        yield 0
        return
    indexes = [index for index in db.database.get_indexes("message") if not index.unique]
    trigger = f'TRIGGER "{MessageCount.INSERT_TRIGGER}"'
    for index in indexes:
        db.database.execute_sql(f'DROP INDEX "{index.name}"')
    db.database.execute_sql(f'ALTER TABLE "message" DISABLE {trigger}')
    yield rows
    db.database.execute_sql(f'ALTER TABLE "message" ENABLE {trigger}')
    MessageCount.recount()
    for number, index in enumerate(indexes):
        db.database.execute_sql(index.sql)
        advance(rows * (number + 1) // len(indexes) - rows * number // len(indexes))


def zipf_weights(count, exponent=1.0):
    """Return cumulative weights for ``random.choices`` over ``count`` items where the
    item of rank r (from 1) is drawn with probability proportional to 1 / r**exponent:
    with exponent 1 and 10 000 users, the first writes ~10 % of all messages."""
    total, cumulative = 0.0, []
    for rank in range(1, count + 1):
        total += 1.0 / rank**exponent
        cumulative.append(total)
    return cumulative


def random_follows(ids, count):
    """Return ``count`` distinct (follower, followed) pairs of ``ids`` (fewer if that many
    do not exist), nobody following themself: followers drawn uniformly, followed people
    Zipf-distributed, so a few are followed by very many."""
    count = min(count, len(ids) * (len(ids) - 1))
    weights = zipf_weights(len(ids))
    pairs = set()
    while len(pairs) < count:
        need = count - len(pairs)
        followers = random.choices(ids, k=need)
        followed = random.choices(ids, cum_weights=weights, k=need)
        pairs.update((a, b) for a, b in zip(followers, followed, strict=True) if a != b)
        if len(pairs) < count and need == count - len(pairs):
            # Only rare pairs remain: fill from the uniform pairs not yet taken.
            pairs.update((a, b) for a in ids for b in ids if a != b and len(pairs) < count)
    return sorted(pairs, key=lambda pair: random.random())


def message_rows(fake, author_ids, count, now):
    """Yield ``count`` (user, content, pub_date) rows: authors Zipf-distributed (the first
    of ``author_ids`` is the most prolific), dates rising with the row over the year
    before ``now``, so ids and dates agree as on a live site."""
    sentences = [fake.sentence(nb_words=12)[:MESSAGE_MAX_LENGTH] for _ in range(2_000)]
    weights = zipf_weights(len(author_ids))
    span = datetime.timedelta(days=365).total_seconds()
    start = now - datetime.timedelta(days=365)
    done = 0
    while done < count:
        block = min(10_000, count - done)
        authors = random.choices(author_ids, cum_weights=weights, k=block)
        for number, author in enumerate(authors, start=done):
            pub_date = start + datetime.timedelta(seconds=span * (number + 1) / (count + 1))
            yield (author, random.choice(sentences), pub_date)
        done += block


@app.cli.command("seed")
@click.option(
    "--size",
    type=click.Choice(sorted(SEED_SIZES)),
    help="A preset: small = 1 000 users, 10 000 messages, 20 000 follows; large = "
    "10 000 users, 1 000 000 messages, 200 000 follows (the benchmark's data sets).",
)
@click.option("--users", type=click.IntRange(1, 100_000), help="Users to add [default: 20].")
@click.option(
    "--messages", type=click.IntRange(0, 10_000_000), help="Messages to add [default: 200]."
)
@click.option(
    "--follows", type=click.IntRange(0, 10_000_000), help="Follows to add [default: 5 a user]."
)
@click.option("--seed", "random_seed", type=int, help="Make the demo data repeatable.")
def seed(size, users, messages, follows, random_seed):
    """Fill the database with demo users, follows and messages (Faker), in one transaction.

    Authors are Zipf-distributed (a few people write most messages), and so are the people
    followed. Rows go in as multi-row INSERTs and the progress bar counts rows written
    (on PostgreSQL the message indexes are rebuilt after the load, within the bar); the
    large preset takes a minute or two on either database. Demo users cannot log in: they
    share one random, unknown password.
    """
    require_current_schema()
    preset = SEED_SIZES.get(size, (20, 200, None))
    users = users if users is not None else preset[0]
    messages = messages if messages is not None else preset[1]
    follows = follows if follows is not None else (preset[2] or 5 * users)
    fake = Faker()
    if random_seed is not None:
        Faker.seed(random_seed)
        random.seed(random_seed)
    now = datetime.datetime.now()
    unusable = make_password(secrets.token_hex(16))
    names = unique_usernames(fake, users)
    joined = now - datetime.timedelta(days=400)
    user_rows = [
        (name, username_key(name), f"{name.lower()}@example.com", unusable, joined)
        for name in names
    ]
    user_fields = [User.username, User.username_skeleton, User.email, User.password, User.join_date]
    follow_fields = [Relationship.from_user, Relationship.to_user]
    message_fields = [Message.user, Message.content, Message.pub_date]
    label = "Seeding"
    with (
        db.database.atomic(),
        click.progressbar(length=users + follows + messages, label=label, file=sys.stderr) as bar,
    ):
        insert_batches(User, user_fields, user_rows, bar.update)
        ids = [user.id for user in User.select(User.id).order_by(User.id.desc()).limit(users)]
        ids.reverse()
        pairs = random_follows(ids, follows)
        bar.length = users + len(pairs) + messages  # fewer when that many pairs do not exist
        insert_batches(Relationship, follow_fields, pairs, bar.update)
        with bulk_message_load(messages, bar.update) as extra:
            bar.length += extra
            rows = message_rows(fake, ids, messages, now)
            insert_batches(Message, message_fields, rows, bar.update)
    click.echo(f"Added {users} users, {len(pairs)} follows and {messages} messages.")


def print_first_start_hint():
    """Tell the person starting Chirp how to get an admin, if there is none yet."""
    with db.database.connection_context():
        has_admin = User.select().where(User.admin).exists()
    if not has_admin:
        click.echo(
            "No admin yet. Create one with: python main.py create-admin NAME\n"
            "Then sign in at /admin/ on this server.",
            err=True,
        )


def apply_pending_migrations():
    """Apply every pending migration, saying which (for the development server)."""
    with db.database.connection_context():
        for name in migration_runner().up():
            click.echo(f"Applied migration {name}", err=True)


cli = FlaskGroup(create_app=lambda: app, help="Chirp: a small, self-hostable microblog.")


def start(arguments):
    """`python main.py [COMMAND ...]`: run COMMAND (default ``run``) like `flask --app main`,
    except that a secret key is kept in the instance folder when the environment has none,
    and ``run`` first applies pending migrations, so that a fresh checkout just works."""
    use_instance_secret_key(app)
    arguments = arguments or ["run"]
    if arguments[0] == "run":
        apply_pending_migrations()
        print_first_start_hint()
    cli.main(args=arguments, prog_name="python main.py")


if __name__ == "__main__":
    start(sys.argv[1:])
else:  # gunicorn, flask and tests must be given a key: refuse to start without one
    require_secret_key(app)
