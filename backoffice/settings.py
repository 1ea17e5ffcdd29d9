"""Django settings of the console, built from the cloud config named by $KIOSK_CLOUD_CONFIG
(`kiosk cloud console --config` sets it). Without one (checks, makemigrations) an in-memory
database and a throwaway secret are used."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import django_stubs_ext

from backoffice import CONFIG_ENV
from cloud_sync.settings import CloudConfig, load_config

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent


def _cloud_config() -> CloudConfig | None:
    path = os.environ.get(CONFIG_ENV)
    return load_config(Path(path)) if path else None


def database(url: str) -> dict[str, Any]:
    """`sqlite:///path` or `postgresql://user:pass@host:port/name` as a Django DATABASES entry."""
    if url.startswith(("postgresql://", "postgres://")):
        u = urlparse(url)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": u.path.lstrip("/"),
            "USER": unquote(u.username or ""),
            "PASSWORD": unquote(u.password or ""),
            "HOST": u.hostname or "",
            "PORT": str(u.port or ""),
        }
    # The console has writers on several threads (waitress, the webhook worker) and the CLI in
    # other processes: IMMEDIATE transactions wait for the lock instead of failing with "database
    # is locked" on a read-then-write, and WAL lets readers run beside a writer.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": url.removeprefix("sqlite:///"),
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }


def secret_key(path: Path) -> str:
    """The session-signing secret, made once (0600) and kept: sessions survive restarts."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


CLOUD = _cloud_config()
if CLOUD is not None:
    _db = database(CLOUD.console_database())
    _secret_file = CLOUD.console.secret_key_file or (
        Path(_db["NAME"]).parent / "console.secret"
        if _db["ENGINE"].endswith("sqlite3")
        else (CLOUD.path or Path("cloud.toml")).parent / "console.secret"
    )
    SECRET_KEY = secret_key(_secret_file)
    LOCKOUT_FAILURES = CLOUD.console.lockout_failures
    LOCKOUT_MINUTES = CLOUD.console.lockout_minutes
else:
    _db = database("sqlite:///:memory:")
    SECRET_KEY = secrets.token_urlsafe(50)
    LOCKOUT_FAILURES, LOCKOUT_MINUTES = 5, 15

DEBUG = False
ALLOWED_HOSTS = ["*"]  # served behind the operator's own reverse proxy or on localhost
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "backoffice.operators",  # first: its login template overrides the admin's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "auditlog",
    "import_export",
    "backoffice.members",
    "backoffice.audit",
    "backoffice.fleet",
    "backoffice.reports",
    "backoffice.api",
    "backoffice.webhooks",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here, not from a CDN
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # the admin's CSS/JS, no collectstatic step
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out users
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "backoffice.urls"
WSGI_APPLICATION = "backoffice.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ]
        },
    }
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"

STATIC_URL = "/static/"
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 8 * 3600  # one shift
CSRF_COOKIE_HTTPONLY = True

# django-axes: lock the account (by user name, from any address) after N wrong passwords.
AXES_FAILURE_LIMIT = LOCKOUT_FAILURES
AXES_COOLOFF_TIME = LOCKOUT_MINUTES / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["username"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "backoffice/locked_out.html"
AXES_VERBOSE = False
# Locking by address too (axes.W006) would lock a whole venue behind one NAT address after one
# operator's mistakes; a user name locked by failures is locked from every address already.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]

OTP_TOTP_ISSUER = "kiosk-edge console"
AUDITLOG_INCLUDE_ALL_MODELS = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

# django-import-export: importing needs members.import_member, exporting <app>.export_<model>.
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "import"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "export"
IMPORT_EXPORT_USE_TRANSACTIONS = True

# The REST API (backoffice.api): integration tokens only, JSON only, the OpenAPI 3 schema by
# drf-spectacular at /api/schema/ and its Swagger UI at /api/docs/.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["backoffice.api.auth.TokenAuth"],
    "DEFAULT_PERMISSION_CLASSES": ["backoffice.api.auth.Needs"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "backoffice.api.errors.handle",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "kiosk-edge back office API",
    "DESCRIPTION": "Members, cards, top-ups and refunds (Idempotency-Key), balances and the"
    " transaction feed. Money is integer minor units. Authenticate with an integration token:"
    " `Authorization: Bearer kt_...` (kiosk cloud integration add).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}
