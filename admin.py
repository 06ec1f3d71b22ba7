"""The admin at /admin/: flask-peewee's Admin with a ModelAdmin per model."""

from flask_peewee.admin import Admin
from flask_peewee.admin import ModelAdmin

from app import app
from auth import auth
from models import Message
from models import Note
from models import Relationship
from models import User


class UserAdmin(ModelAdmin):
    """Users, without the password hash in any list, form or export."""

    columns = ("username", "email", "join_date", "active", "admin")
    exclude = ("password",)
    export_exclude = ("password",)


admin = Admin(app, auth, branding="Chirp")
admin.register(User, UserAdmin)
admin.register(Message)
admin.register(Relationship)
admin.register(Note)
