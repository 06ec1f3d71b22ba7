"""Chirp's single entry point: wires every module and defines the command line.

    python main.py                 apply pending migrations, then serve on http://127.0.0.1:5000
    python main.py COMMAND         the same commands as `flask --app main COMMAND`
    python main.py db upgrade      apply pending migrations (production: before starting gunicorn)
    gunicorn main:app              production; never creates or alters tables

Nothing imports this module except those entry points and tests/conftest.py.
"""

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
from models import USERNAME_PATTERN
from models import ApiToken
from models import Message
from models import Relationship
from models import User
from models import migration_runner
from models import pending_migrations

SECRET_KEY_FILE = os.path.join(app.instance_path, "secret_key")
# Rows per INSERT while seeding: well under SQLite's 32766 bound parameters per statement.
SEED_BATCH_SIZE = 100


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
@click.option("--email", help="E-mail address; defaults to USERNAME@localhost.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_admin(username, email, password_stdin):
    """Create the admin USERNAME, or make the existing user USERNAME an admin.

    Either way the password is set anew: prompted for, or read from standard input.
    """
    require_current_schema()
    if not USERNAME_PATTERN.fullmatch(username):
        raise click.BadParameter(
            "use 1 to 30 letters, digits or underscores", param_hint="USERNAME"
        )
    password = read_new_password(password_stdin)
    with db.database.atomic():
        user = User.by_username(username).first()
        if user is None:
            user = User(username=username, email=(email or f"{username}@localhost").lower())
        elif email:
            user.email = email.lower()
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
    _, token = ApiToken.issue(user, name[:TOKEN_NAME_MAX_LENGTH])
    click.echo(token)


def unique_usernames(fake, count):
    """Return ``count`` Faker usernames made safe for USERNAME_PATTERN and not yet taken."""
    taken = {name.lower() for (name,) in User.select(User.username).tuples()}
    names = []
    while len(names) < count:
        name = re.sub(r"[^A-Za-z0-9_]", "_", fake.user_name())[:24]
        if name.lower() in taken:
            name = f"{name}_{random.randint(10, 99999)}"
        if name.lower() not in taken:
            taken.add(name.lower())
            names.append(name)
    return names


def insert_batches(model, rows, advance=lambda rows: None):
    """Insert ``rows`` (dicts) into ``model`` in batches, calling ``advance(n)`` after each."""
    for start in range(0, len(rows), SEED_BATCH_SIZE):
        batch = rows[start : start + SEED_BATCH_SIZE]
        model.insert_many(batch).on_conflict_ignore().execute()
        advance(len(batch))


def random_follows(ids):
    """Return relationship rows in which each of ``ids`` follows up to 10 others."""
    return [
        {"from_user": follower, "to_user": followed}
        for follower in ids
        for followed in random.sample(ids, min(len(ids), random.randint(0, 10)))
        if follower != followed
    ]


@app.cli.command("seed")
@click.option("--users", default=20, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--messages", default=200, show_default=True, type=click.IntRange(0, 1_000_000))
@click.option("--seed", "random_seed", type=int, help="Make the demo data repeatable.")
def seed(users, messages, random_seed):
    """Fill the database with demo users, messages and follows (Faker), in one transaction.

    Demo users cannot log in: they share one random, unknown password.
    """
    require_current_schema()
    fake = Faker()
    if random_seed is not None:
        Faker.seed(random_seed)
        random.seed(random_seed)
    now = datetime.datetime.now()
    unusable = make_password(secrets.token_hex(16))
    names = unique_usernames(fake, users)
    user_rows = [
        {
            "username": name,
            "email": f"{name.lower()}@example.com",
            "password": unusable,
            "join_date": now - datetime.timedelta(days=random.uniform(30, 365)),
        }
        for name in names
    ]
    with (
        db.database.atomic(),
        click.progressbar(length=users + messages, label="Seeding", file=sys.stderr) as bar,
    ):
        insert_batches(User, user_rows, bar.update)
        ids = [user.id for user in User.select(User.id).order_by(User.id.desc()).limit(users)]
        follows = random_follows(ids)
        insert_batches(Relationship, follows)
        message_rows = [
            {
                "user": random.choice(ids),
                "content": fake.sentence(nb_words=12)[:MESSAGE_MAX_LENGTH],
                "pub_date": now - datetime.timedelta(minutes=random.uniform(1, 43_200)),
            }
            for _ in range(messages)
        ]
        insert_batches(Message, message_rows, bar.update)
    click.echo(f"Added {users} users, {len(follows)} follows and {messages} messages.")


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
