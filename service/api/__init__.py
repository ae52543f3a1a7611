"""HTTP transport of skimserve (FastAPI): app factory in app.py, routes in routes.py, schemas, errors."""
from .app import app_from_env, create_app

__all__ = ["create_app", "app_from_env"]
