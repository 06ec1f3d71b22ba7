"""The ceiling: the smallest Flask app, served by the same gunicorn as Chirp in each
benchmark run. Chirp's pages are measured against what this costs (bench/run.py)."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    """Hello, World: no database, no session, no template."""
    return "Hello, World!"
