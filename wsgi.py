"""Entry point for gunicorn: ``gunicorn wsgi:app``."""

from webhook_app import create_app

app = create_app()
