"""The REST API at /api/: flask-peewee's RestAPI with one resource per model."""

from flask_peewee.rest import RestAPI

from app import app

api = RestAPI(app)
