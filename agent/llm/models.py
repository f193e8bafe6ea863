"""The LLM side's rows: the endpoints classifiers call and the classifier configs staff edit,
with the cache of the enabled ones. Part of the ``agent`` app: ``agent.models`` imports them,
as Django looks for an app's models there."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import connection, models

from agent.llm.classifiers import Classifier
from agent.llm.client import Server
from agent.llm.guard import EndpointRefused, check_base_url, check_key_variable


class Endpoint(models.Model):
    """An LLM server that classifiers call: its URL, API style, where its key is, and how many
    calls it may have in flight from each app process."""

    class ApiStyle(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible chat completions (vLLM, OpenAI, llama.cpp, Ollama)"
        ANTHROPIC = "anthropic", "Anthropic Messages API"

    name = models.CharField(max_length=64, unique=True)
    base_url = models.URLField(
        blank=True,
        help_text="e.g. http://gpu-host:8000/v1 or https://api.anthropic.com/v1. "
        "Empty: the LLM_BASE_URL setting.",
    )
    api_style = models.CharField(max_length=16, choices=ApiStyle.choices, default=ApiStyle.OPENAI)
    api_key_env = models.CharField(
        "API key variable",
        max_length=64,
        blank=True,
        validators=[RegexValidator(r"^[A-Z_][A-Z0-9_]*$", "An environment variable name.")],
        help_text="The NAME of the environment variable holding the API key, never the key. "
        "Empty: no key.",
    )
    max_in_flight = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Calls in flight at once per app process. Empty: the LLM_MAX_IN_FLIGHT setting.",
    )

    class Meta:
        ordering = ["name"]
        # Endpoints and classifier configs decide where turns go and what the bot does.
        permissions = [("manage_llm", "Can change LLM endpoints and classifier configs")]

    def __str__(self):
        return self.name

    def clean(self):
        """Refuse a base URL or key variable the settings do not allow (``agent.llm.guard``)."""
        errors = {}
        for field, check in (("base_url", check_base_url), ("api_key_env", check_key_variable)):
            try:
                if getattr(self, field):
                    check(getattr(self, field))
            except EndpointRefused as exc:
                errors[field] = str(exc)
        if errors:
            raise ValidationError(errors)

    def as_server(self) -> Server:
        """The ``Server`` the LLM client calls, with the settings' defaults filled in."""
        return Server(
            base_url=self.base_url or settings.LLM_BASE_URL,
            api_style=self.api_style,
            api_key_env=self.api_key_env,
            max_in_flight=self.max_in_flight or settings.LLM_MAX_IN_FLIGHT,
        )


def validate_schema(value) -> None:
    """An answer schema must be a JSON-schema object with ``properties``."""
    if not isinstance(value, dict) or value.get("type") != "object":
        raise ValidationError('The schema must be a JSON object with "type": "object".')
    if not isinstance(value.get("properties"), dict) or not value["properties"]:
        raise ValidationError('The schema needs "properties".')


class ClassifierConfig(models.Model):
    """One classifier asked on every turn, as staff edit it in the admin.

    The router reads the names pricing, scheduling and listing_question; other names are asked
    and logged but never change a route. ``version`` goes up by one on every save of an
    existing row, and each ClassifierCall records the version it ran.
    """

    name = models.SlugField(max_length=64, unique=True)
    enabled = models.BooleanField(default=True)
    priority = models.PositiveIntegerField(
        default=100, help_text="Lower goes first: the router acts on the first classifier, in "
        "this order, that answers yes."
    )
    endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="classifiers")
    model = models.CharField(
        max_length=200, blank=True,
        help_text="Empty: the LLM_MODEL setting (or LLM_MODEL_<NAME> for the three built-in).",
    )
    system_prompt = models.TextField(help_text="{today} becomes e.g. \"Sunday, 2026-11-22\".")
    output_schema = models.JSONField(help_text="The JSON schema of the answer object.")
    max_tokens = models.PositiveIntegerField(
        default=64, validators=[MinValueValidator(1), MaxValueValidator(4096)]
    )
    temperature = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    version = models.PositiveIntegerField(default=1, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self):
        return f"{self.name} v{self.version}"

    def clean(self):
        try:
            validate_schema(self.output_schema)
        except ValidationError as exc:
            raise ValidationError({"output_schema": exc.messages}) from None

    def save(self, *args, **kwargs):
        if not self._state.adding:
            self.version += 1
        super().save(*args, **kwargs)

    def as_classifier(self) -> Classifier:
        """The ``Classifier`` the fan-out asks (endpoint must be loaded)."""
        return Classifier(
            name=self.name,
            instructions=self.system_prompt,
            schema=self.output_schema,
            model=self.model,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            version=self.version,
            server=self.endpoint.as_server(),
        )

    @classmethod
    def enabled_classifiers(cls, stamp: int | None = None) -> list[Classifier]:
        """The enabled classifiers in priority order, as the fan-out asks them.

        Kept per process until the configuration's version stamp moves (``config_stamp``;
        PostgreSQL moves it with any change to these rows or the endpoints', from any process,
        migration 0010), so a turn reads them without a query of the rows. No signals needed:
        the stamp sees the admin's saves and deletes, queryset updates and other processes.

        Args:
            stamp: the stamp the caller read (before this call, in the statement of other data);
                None reads it (one query).
                Inside a transaction the cache is not used: rows it changed, or a rolled-back
                change (tests), would otherwise be mixed with the stamp.
        Returns:
            A new list each call (the ``Classifier`` items are immutable).
        """
        if connection.in_atomic_block:
            return cls._read_enabled()
        if stamp is None:
            stamp = config_stamp()
        cached = _enabled_cache.get("entry")
        if cached is not None and cached[0] == stamp:
            return list(cached[1])
        classifiers = cls._read_enabled()
        _enabled_cache["entry"] = (stamp, tuple(classifiers))
        return classifiers

    @classmethod
    def _read_enabled(cls) -> list[Classifier]:
        rows = cls.objects.filter(enabled=True).select_related("endpoint")
        return [row.as_classifier() for row in rows.order_by("priority", "name")]


# ``enabled_classifiers``' answer: {"entry": (stamp, classifiers)}; one dict item, so reads and
# writes from several database threads are atomic under the GIL.
_enabled_cache: dict = {}

CONFIG_STAMP_SQL = "SELECT stamp FROM agent_config_version"  # migration 0010


def config_stamp() -> int:
    """The classifier configuration's version stamp (one query): a committed change moves it.
    Read it before the rows it guards, so the rows are at least as new as the stamp."""
    with connection.cursor() as cursor:
        cursor.execute(CONFIG_STAMP_SQL)
        return cursor.fetchone()[0]
