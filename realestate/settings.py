"""Settings, read from environment variables only.

Every variable is listed with its default in ``.env.example`` and in README.md. A bad value
raises ``ImproperlyConfigured`` at start-up, naming the variable. Defaults are safe for a local
run; with DEBUG off, the public local SECRET_KEY stops start-up, and ``manage.py check
--deploy`` refuses DEBUG and plain HTTP in production.
"""

from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
import phonenumbers
from django.core.exceptions import ImproperlyConfigured

from realestate.env import (
    env_bool,
    env_emails,
    env_float,
    env_hosts,
    env_hours,
    env_int,
    env_names,
    env_networks,
    env_origins,
    env_rate_limits,
    env_str,
    env_url,
    env_weekdays,
)

BASE_DIR = Path(__file__).resolve().parent.parent

LOCAL_SECRET_KEY = "django-insecure-local-only-never-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", LOCAL_SECRET_KEY)
DEBUG = env_bool("DEBUG", False)
if SECRET_KEY == LOCAL_SECRET_KEY and not DEBUG:
    raise ImproperlyConfigured(
        "SECRET_KEY is unset (or the public local key) while DEBUG is off: set it to a long "
        "random value, e.g. python -c \"import secrets; print(secrets.token_urlsafe(50))\" "
        "(the local tools, make run and make test, set one of their own)"
    )
ALLOWED_HOSTS = [
    host.strip()
    for host in env_str("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "csp",
    "procrastinate.contrib.django",
    "agent.apps.AgentConfig",
    "listings.apps.ListingsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "realestate.urls"
ASGI_APPLICATION = "realestate.asgi.application"
# Unset: one process with an in-memory channel layer; set: app processes share it through Redis.
REDIS_URL = env_str("REDIS_URL")
# Frames one socket's channel may hold in Redis; 1,000 only fills behind a stuck worker (bench/).
CHANNEL_CAPACITY = env_int("CHANNEL_CAPACITY", 1000, minimum=10)
if REDIS_URL:
    if urlsplit(REDIS_URL).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(
            f"REDIS_URL must be a redis://, rediss:// or unix:// URL, not {REDIS_URL!r}"
        )
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis, closing the sockets when Redis fails (they reconnect and rejoin)
            "BACKEND": "agent.live.ChatChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": CHANNEL_CAPACITY, "prefix": "chat"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "agent.live.LocalChannelLayer"}}

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
            ],
        },
    },
]

# Unset: the embedded PostgreSQL of .pgdata/ that `make run` (realestate.dev.devdb) starts.
DATABASE_URL = env_str(
    "DATABASE_URL", f"postgresql://postgres@/realestate?host={BASE_DIR / '.pgdata'}"
)
# Connections per process from psycopg's pool; 0 turns the pool off (e.g. behind PgBouncer).
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 10, minimum=0)
# Seconds a request waits for a free pooled connection before it fails (PoolTimeout).
DB_POOL_TIMEOUT = env_float("DB_POOL_TIMEOUT", 10, minimum=0.1)
# Threads running the chat's database trips per process; 0: channels' one database thread.
DB_TRIP_THREADS = env_int("DB_TRIP_THREADS", 4, minimum=0)
# Seconds a thread keeps its connection without the pool; 0 with it, as ASGI needs (bench/).
CONN_MAX_AGE = env_int("CONN_MAX_AGE", 0, minimum=0)
if DB_POOL_MAX_SIZE and CONN_MAX_AGE:
    raise ImproperlyConfigured(
        "CONN_MAX_AGE must be 0 while the connection pool is on (DB_POOL_MAX_SIZE > 0)"
    )
try:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=CONN_MAX_AGE, conn_health_checks=True
        )
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must be a postgresql:// URL")
if DB_POOL_MAX_SIZE:
    # Connections checked as they are lent (conn_health_checks; a round trip only when the
    # socket shows the server spoke, realestate/dbpool.py); reconnect_timeout 10 s, not
    # psycopg_pool's 300, brings the app back at once after an outage (bench/README.md).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DB_POOL_MAX_SIZE),
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": DB_POOL_TIMEOUT,
        "reconnect_timeout": 10,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AGENCY_TIMEZONE = env_str("AGENCY_TIMEZONE", "America/New_York")
try:
    ZoneInfo(AGENCY_TIMEZONE)
except (ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(
        f"AGENCY_TIMEZONE must be an IANA zone like America/New_York, not {AGENCY_TIMEZONE!r}"
    ) from None
TIME_ZONE = AGENCY_TIMEZONE
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = True
# The languages visitors chat in (catalogues in locale/; English needs none); staff screens too.
LANGUAGES = [("en", "English"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]  # the gettext catalogues, compiled by `make install`

# Hours and days when realtors take calls, in the agency's time zone.
BUSINESS_HOURS = env_hours("BUSINESS_HOURS", "09:00-17:00")
BUSINESS_DAYS = env_weekdays("BUSINESS_DAYS", "mon,tue,wed,thu,fri")
CALL_MINUTES = env_int("CALL_MINUTES", 30, minimum=5)  # a new realtor's call length
# A call starts at least this many minutes from now, and at most this many days ahead.
BOOKING_LEAD_MINUTES = env_int("BOOKING_LEAD_MINUTES", 60, minimum=0)
BOOKING_HORIZON_DAYS = env_int("BOOKING_HORIZON_DAYS", 60, minimum=1)
# Upcoming calls one conversation, or one email or phone, may hold; a visitor needs one or two.
BOOKING_MAX_UPCOMING = env_int("BOOKING_MAX_UPCOMING", 2, minimum=1)
# Region for phone numbers written without a country code (ISO 3166 code, e.g. US, GB).
PHONE_REGION = env_str("PHONE_REGION", "US").upper()
if PHONE_REGION not in phonenumbers.SUPPORTED_REGIONS:
    raise ImproperlyConfigured(f"PHONE_REGION must be a region code like US, not {PHONE_REGION!r}")

# Hours and days when staff answer handoffs (default: the business hours), told to visitors.
STAFF_HOURS = env_hours("STAFF_HOURS", env_str("BUSINESS_HOURS", "09:00-17:00"))
STAFF_DAYS = env_weekdays("STAFF_DAYS", env_str("BUSINESS_DAYS", "mon,tue,wed,thu,fri"))

# Who gets `manage.py notify_overdue_handoffs`'s email about a handoff queued too long; "": off.
HANDOFF_ALERT_EMAIL = env_emails("HANDOFF_ALERT_EMAIL")
HANDOFF_ALERT_MINUTES = env_float("HANDOFF_ALERT_MINUTES", 10, minimum=1)
# The site's address, for links in emails.
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000")
# Days a signed cancel/move link in a booking email works (listings/links.py).
APPOINTMENT_LINK_DAYS = env_int("APPOINTMENT_LINK_DAYS", 90, minimum=1)
# Agency-local hour when each realtor gets the day's agenda by email (listings/reminders.py).
AGENDA_HOUR = env_int("AGENDA_HOUR", 7, minimum=0)
if AGENDA_HOUR > 23:
    raise ImproperlyConfigured("AGENDA_HOUR must be an hour, 0 to 23")

# Outgoing email (bookings, handoff alerts): on the console unless EMAIL_HOST names SMTP.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10, minimum=1)  # seconds
DEFAULT_FROM_EMAIL = SERVER_EMAIL = env_str("DEFAULT_FROM_EMAIL", "chat@localhost")

# The LLM server: any OpenAI-compatible /v1/chat/completions (vLLM, OpenAI, llama.cpp, Ollama).
LLM_BASE_URL = env_url("LLM_BASE_URL", "http://127.0.0.1:8001/v1")
LLM_API_KEY = env_str("LLM_API_KEY")
# Variables an endpoint may take its key from: no other variable's value is sent (README.md).
LLM_KEY_VARIABLES = env_names("LLM_KEY_VARIABLES", "LLM_API_KEY")
if set(LLM_KEY_VARIABLES) & {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "EMAIL_HOST_PASSWORD"}:
    raise ImproperlyConfigured("LLM_KEY_VARIABLES must not name the app's own secrets")
# Hosts an endpoint may call, no others (default: LLM_BASE_URL's), so no row sends turns away.
LLM_ALLOWED_HOSTS = env_hosts("LLM_ALLOWED_HOSTS", (urlsplit(LLM_BASE_URL).hostname,))
if urlsplit(LLM_BASE_URL).hostname not in LLM_ALLOWED_HOSTS:
    raise ImproperlyConfigured("LLM_ALLOWED_HOSTS must include the host of LLM_BASE_URL")
LLM_MODEL = env_str("LLM_MODEL", "Qwen/Qwen2.5-7B-Instruct")
# Seconds from the visitor's message to the reply: every call, retry and wait comes out of it.
TURN_BUDGET = env_float("TURN_BUDGET", 2.5, minimum=0.1)
# Calls in flight per LLM server and process: 48 turns x 6 classifiers (bench/README.md).
LLM_MAX_IN_FLIGHT = env_int("LLM_MAX_IN_FLIGHT", 288, minimum=1)
# Turns whose classifier calls run at once per process (288 LLM slots / 6 classifiers); 0: no cap.
TURN_MAX_OPEN = env_int("TURN_MAX_OPEN", 48, minimum=0)
# Seconds a turn waits for one of those before the visitor is told "busy" (it goes on waiting).
TURN_QUEUE_TIMEOUT = env_float("TURN_QUEUE_TIMEOUT", 3.0, minimum=0.1)
# New chat sockets get HTTP 503 (nginx tries the next worker) while this many turns of the
# process wait for one of those slots; 0: never (agent.chat.capacity.saturated).
CHAT_SHED_WAITING = env_int("CHAT_SHED_WAITING", 16, minimum=0)
# Retries of one classifier call after a connection error, 429 or 5xx (within TURN_BUDGET).
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 3, minimum=0)
# shared_prefix: context first, for vLLM's prefix cache; system_first: as in the tutorial.
LLM_PROMPT_LAYOUT = env_str("LLM_PROMPT_LAYOUT", "shared_prefix")
if LLM_PROMPT_LAYOUT not in ("shared_prefix", "system_first"):
    raise ImproperlyConfigured(
        f"LLM_PROMPT_LAYOUT must be shared_prefix or system_first, not {LLM_PROMPT_LAYOUT!r}"
    )
CLASSIFIER_MODELS = {
    "pricing": env_str("LLM_MODEL_PRICING", LLM_MODEL),
    "scheduling": env_str("LLM_MODEL_SCHEDULING", LLM_MODEL),
    "listing_question": env_str("LLM_MODEL_LISTING_QUESTION", LLM_MODEL),
}

# Days after its last message `manage.py purge_conversations` anonymises a conversation.
RETENTION_DAYS = env_int("RETENTION_DAYS", 365, minimum=1)
# Other sites' origins whose pages may embed the chat widget, besides ALLOWED_HOSTS.
CHAT_ALLOWED_ORIGINS = env_origins("CHAT_ALLOWED_ORIGINS")
# Seconds a conversation token works after it was issued (14 days, Django's session age).
CHAT_TOKEN_MAX_AGE = env_int("CHAT_TOKEN_MAX_AGE", 14 * 24 * 3600, minimum=60)
# LLM calls a socket's, and a client address's, turns may make (README.md, Abuse limits).
CHAT_RATE_LIMIT_CONNECTION = env_rate_limits("CHAT_RATE_LIMIT_CONNECTION", "60/minute")
CHAT_RATE_LIMIT_IP = env_rate_limits("CHAT_RATE_LIMIT_IP", "600/minute")
# Open chat sockets per client address and app process (0: no cap); a visitor has one a tab.
CHAT_MAX_SOCKETS_PER_IP = env_int("CHAT_MAX_SOCKETS_PER_IP", 20, minimum=0)
# Bytes of a websocket message or frame runserver's daphne reads; a valid chat frame is < 25 KB.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = 32 * 1024
# Proxies in front that append to X-Forwarded-For; the client is the Nth address from its end.
TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0, minimum=0)
# Addresses that may read /metrics besides staff; not loopback, which a local proxy makes public.
METRICS_ALLOWED_IPS = env_networks("METRICS_ALLOWED_IPS", "")

# Webhooks (agent/crm/): true allows http and loopback/private addresses (local runs, tests).
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", DEBUG)
# Seconds a receiver has to answer one delivery before it counts as failed.
WEBHOOK_TIMEOUT = env_float("WEBHOOK_TIMEOUT", 10, minimum=0.1)
# Backoff: first wait (s), doubling up to the cap (s), for this many hours before pausing.
WEBHOOK_RETRY_FIRST = env_float("WEBHOOK_RETRY_FIRST", 10, minimum=0.01)
WEBHOOK_RETRY_MAX_WAIT = env_float("WEBHOOK_RETRY_MAX_WAIT", 3600, minimum=0.01)
WEBHOOK_RETRY_HOURS = env_float("WEBHOOK_RETRY_HOURS", 24, minimum=0.0001)
# Seconds without a worker heartbeat (sent every 10 s) before its running jobs are retried.
TASKS_STALLED_SECONDS = env_float("TASKS_STALLED_SECONDS", 60, minimum=0)

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Uploaded listing photos and their thumbnails; in production a storage backend (docs/deploy.md).
MEDIA_ROOT = env_str("MEDIA_ROOT", str(BASE_DIR / "media"))
MEDIA_URL = "media/"

# Behind TLS in production: secure cookies, HSTS and redirects (``check --deploy`` asks for them).
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if HTTPS else 0
# HSTS for every subdomain, and browsers' preload list: opt-ins, they bind sites beyond this one.
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS and env_bool("HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = HTTPS and env_bool("HSTS_PRELOAD", False)
if SECURE_HSTS_PRELOAD and not SECURE_HSTS_INCLUDE_SUBDOMAINS:
    raise ImproperlyConfigured(
        "HSTS_PRELOAD needs HSTS_INCLUDE_SUBDOMAINS=true: the preload list takes only those"
    )
# check --deploy's reminders of the two opt-ins above (security.W005, W021), chosen off here.
SILENCED_SYSTEM_CHECKS = [
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None

# The app's own pages (chat page, staff screens, admin) run only scripts, styles and sockets of
# this origin, and no page may frame them; see README.md, Security.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "httpx": {"level": "WARNING"},  # one INFO line per LLM call is too much
        # Its INFO line about a dropped message must reach agent.live.CountDrops at any level.
        "channels_redis": {"level": "INFO"},
        "procrastinate": {"level": "WARNING"},  # an INFO line per job deferred or run
    },
}
