"""Conversation logs: every visitor message, every reply with its route, every classifier call."""

import uuid
from contextlib import nullcontext

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from agent.rows import records

# The PostgreSQL text-search configuration of message search. The GIN index on Message is built
# with it, so changing it needs a migration of that index.
SEARCH_CONFIG = "english"


def message_search_vector() -> SearchVector:
    """The tsvector of ``Message.text``, exactly as the GIN index ``message_text_search`` holds
    it, so a query filtering on it uses the index."""
    return SearchVector("text", config=SEARCH_CONFIG)


class Route(models.TextChoices):
    """What the router decided for a turn, kept on the reply and sent to the client."""

    PRICE = "price", "Price given"
    PRICE_UNKNOWN_LISTING = "price_unknown_listing", "Price: unknown listing"
    PRICE_NEEDS_LISTING = "price_needs_listing", "Price: asked for listing"
    BOOKING = "booking", "Call booked"
    BOOKING_UNAVAILABLE = "booking_unavailable", "Booking: slot unavailable"
    BOOKING_NEEDS_TIME = "booking_needs_time", "Booking: asked for time"
    BOOKING_CANCELLED = "booking_cancelled", "Call cancelled"
    BOOKING_NOT_FOUND = "booking_not_found", "Cancel/move: no upcoming call"
    BOOKING_LIMIT = "booking_limit", "Booking: too many upcoming calls"
    CONTACT_SAVED = "contact_saved", "Contact details saved"
    LISTING_SEARCH = "listing_search", "Listings found"
    LISTING_SEARCH_NONE = "listing_search_none", "Search: nothing matched"
    LISTING_SEARCH_NEEDS_CRITERIA = "listing_search_needs_criteria", "Search: asked for criteria"
    LISTING_FACTS = "listing_facts", "Listing facts given"
    LISTING_FACTS_NEEDS_LISTING = "listing_facts_needs_listing", "Facts: asked for listing"
    LISTING_FACTS_UNKNOWN_LISTING = "listing_facts_unknown_listing", "Facts: unknown listing"
    FAIR_HOUSING = "fair_housing", "Neighbourhood people question handed off"
    HANDOFF = "handoff", "Listing question handed off"
    FALLBACK = "fallback", "Fallback to a human"
    STAFF = "staff", "For staff (conversation claimed)"
    BUSY = "busy", "Busy: answer delayed (the process was at capacity)"
    QUALIFY_ANSWER = "qualify_answer", "Lead question answered"


class Conversation(models.Model):
    """One visitor's chat. The visitor's Django session (or their widget token) names it; it
    holds nothing of the session, whose key would let a reader act as the visitor."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    visitor_name = models.CharField(max_length=200, blank=True)
    visitor_email = models.EmailField(blank=True)
    visitor_phone = models.CharField(max_length=32, blank=True)
    last_seq = models.PositiveIntegerField(default=0, editable=False)
    # When ``purge_conversations`` removed its texts and contact details (null: never).
    anonymised_at = models.DateTimeField(null=True, blank=True, editable=False)
    offer = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="Call times last offered to the visitor: "
        '{"action": "book"|"move", "slots": ["<UTC ISO datetime>", ...]}, or {} when none.',
    )
    search = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="The visitor's listing-search criteria so far (listings.search.Criteria as "
        "a dict), carried to the next search turn; {} when none.",
    )
    language = models.CharField(
        max_length=7,
        choices=settings.LANGUAGES,
        default="en",
        db_index=True,
        help_text="The language the bot writes in: the widget page's or the browser's at first, "
        "then the one the visitor writes in (agent.chat.language).",
    )
    qualification = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="The lead questions asked (agent.crm.qualify): "
        '{"asked": {"<fact>": times}, "pending": "<fact>", "after": <seq>}; {} when none.',
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        created = timezone.localtime(self.created_at) if self.created_at else None
        return f"Conversation {str(self.id)[:8]} ({created:%Y-%m-%d %H:%M})"


class MessageManager(models.Manager):
    """Message storage: the conversation's ``seq`` numbering and the visitor-message dedup,
    kept here so the turn and staff code store messages the same way."""

    def store(self, conversation_id, role: str, text: str, **fields) -> "Message":
        """Store a message with the conversation's next ``seq``.

        Args:
            conversation_id: the conversation's UUID.
            role: a ``Message.Role``.
            text: the message text.
            fields: other Message fields (``route``, ``latency_ms``, ``author``, ...).
        Returns:
            The stored message (its ``conversation`` is loaded on first access).
        Raises:
            Conversation.DoesNotExist: no such conversation.
        """
        return self._append(conversation_id, role, text, **fields)[0]  # one statement: atomic

    def store_visitor(
        self, conversation_id, text: str, client_id: str | None = None, page_listing: str = "",
        *, then: tuple[str, list] | None = None,
    ):
        """Store a visitor's message unless one with the same ``client_id`` is already stored.

        Args:
            conversation_id: the conversation's UUID.
            text: the visitor's text, already validated.
            client_id: the id the client gave the message (up to 64 characters), or None.
            page_listing: the 6-digit ID of the listing on the visitor's screen, or "".
            then: ``(sql, params)`` of a read in the same statement, as ``_append`` takes it
                (``agent.chat.turn.store_and_prepare``'s history): one round trip fewer.
        Returns:
            ``(message, created)``; ``created`` is False when ``client_id`` repeats an earlier
            message of the conversation, which is returned instead, so a resend makes no turn.
            With ``then``: ``(message, created, rows)``, ``rows`` being what ``then`` read,
            the message's row first ([] for a resend).
        Raises:
            Conversation.DoesNotExist: no such conversation.
        """
        # The append is one statement: in autocommit it needs no BEGIN and COMMIT of its own
        # (two round trips a message); in a caller's transaction, a savepoint keeps it usable.
        savepoint = transaction.atomic() if connection.in_atomic_block else nullcontext()
        try:
            with savepoint:
                message, rows = self._append(
                    conversation_id, Message.Role.USER, text, client_id=client_id,
                    page_listing=page_listing, then=then,
                )
                return (message, True, rows) if then else (message, True)
        except IntegrityError:
            if client_id is None:
                raise
        # A resend: the unique (conversation, client_id) constraint refused it, and the
        # transaction, seq number included, was rolled back.
        message = self.get(conversation_id=conversation_id, client_id=client_id)
        return (message, False, []) if then else (message, False)

    def after(self, conversation_id, after: int = 0) -> list["Message"]:
        """The conversation's messages whose ``seq`` is greater than ``after``, by seq."""
        return list(self.filter(conversation_id=conversation_id, seq__gt=after))

    def _append(
        self, conversation_id, role: str, text: str, then: tuple[str, list] | None = None,
        **fields,
    ) -> tuple["Message", list]:
        """Take the conversation's next ``seq`` and insert the message, in the caller's
        transaction, in one statement.

        Its ``UPDATE ... RETURNING`` both locks the conversation row until the transaction
        ends, so concurrent messages get consecutive numbers, and gives the new number to the
        INSERT beside it (a locking SELECT, an UPDATE and an INSERT before; bench/queries.py).
        Raw SQL: the ORM's compiling of the INSERT cost more CPU than running it (issue 16).

        Args:
            then: ``(sql, params)``: the statement's own SELECT instead of ``SELECT id, seq
                FROM stored``; ``stored`` is the inserted row (``id``, ``seq``,
                ``conversation_id``). Its first row must be ``(id, seq, ...)`` of the message
                (order by seq descending: the message's is the conversation's highest).
        Returns:
            ``(message, rows)``: the stored message, and every row the statement read.
        """
        message = Message(conversation_id=conversation_id, seq=0, role=role, text=text, **fields)
        columns, row = records([message], skip=("seq",))
        table = Message._meta.db_table
        read, params = then or ("SELECT id, seq FROM stored", [])
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH next AS (UPDATE {Conversation._meta.db_table} "
                "SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq), "
                f"stored AS (INSERT INTO {table} (seq, {columns}) SELECT next.last_seq, {columns} "
                f"FROM next, jsonb_populate_recordset(NULL::{table}, %s) "
                f"RETURNING id, seq, conversation_id) {read}",
                [conversation_id, row, *params],
            )
            rows = cursor.fetchall()
        if not rows or rows[0][0] is None:
            raise Conversation.DoesNotExist(f"no conversation {conversation_id}")
        message.id, message.seq = rows[0][:2]
        message._state.adding, message._state.db = False, connection.alias
        return message, rows


class Message(models.Model):
    """A message in a conversation, numbered by ``seq`` (1, 2, 3, ...) within it.

    Assistant messages carry the turn's ``route`` and ``latency_ms``: milliseconds from storing
    the visitor's message to storing the reply. A visitor message sent while staff held the
    conversation has route ``staff`` (no classifier saw it). A staff message has its ``author``
    and the first name the visitor saw, ``author_name``, kept should the user be renamed or deleted.
    A visitor message the bot answered has ``answered_at``; one whose turn was run again after
    its worker died has ``resumed_at`` (``agent.chat.orphans``).
    """

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        STAFF = "staff"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    route = models.CharField(max_length=32, choices=Route.choices, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # The id the visitor's client gave the message, so a resend never makes a second turn.
    client_id = models.CharField(max_length=64, null=True, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    author_name = models.CharField(max_length=150, blank=True)
    # A visitor message's turn (agent.chat.turn.finish_turn, agent.chat.orphans): when the bot
    # answered it, set in the transaction that stores the reply, so a reply and this mark come
    # together or not at all (a message for staff has route "staff" instead); and when a socket
    # ran the turn again because nothing answered it in time (its worker died). Null: not yet.
    answered_at = models.DateTimeField(null=True, blank=True, editable=False)
    resumed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A visitor message: the listing on the visitor's screen when they sent it (the widget's
    # data-listing), "" when none. An assistant message: the listing cards it showed
    # (agent.chat.homes.card), sent as the frame's "listings"; null when none.
    page_listing = models.CharField(max_length=6, blank=True, default="")
    listings = models.JSONField(null=True, blank=True, editable=False)

    objects = MessageManager()

    class Meta:
        ordering = ["conversation_id", "seq"]  # no join to order by the FK
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_seq_unique"),
            models.UniqueConstraint(
                fields=["conversation", "client_id"], name="message_client_id_unique"
            ),
        ]
        indexes = [GinIndex(message_search_vector(), name="message_text_search")]

    def __str__(self):
        return f"#{self.seq} {self.role}: {self.text[:60]}"

    def as_frame(self) -> dict:
        """The websocket frame for this message: type, role, text, seq, the route of an
        assistant message, the staff member's first name (``name``) of a staff message, and
        the client's ``id`` of a visitor message that had one, and the ``listings`` cards of an
        assistant message that showed some."""
        frame = {"type": "message", "role": self.role, "text": self.text, "seq": self.seq}
        if self.role == self.Role.ASSISTANT:
            frame["route"] = self.route
            if self.listings:
                frame["listings"] = self.listings
        if self.role == self.Role.STAFF:
            frame["name"] = self.author_name
        if self.client_id:
            frame["id"] = self.client_id
        return frame


class ClassifierCall(models.Model):
    """One classifier's call in one turn, linked to the visitor message it classified.

    ``output`` is the parsed answer (null when the call gave none), ``raw_output`` the model's
    text as received, ``status`` how the call ended, ``error`` why it failed (empty when it
    was cancelled because the route was already known). ``latency_ms`` is the call's wall time
    and ``wait_ms`` the part of it spent waiting for a slot on its server, in milliseconds;
    ``retries`` counts attempts after the first; ``classifier_version`` is the version of the
    ClassifierConfig it ran (0: the built-in defaults).
    """

    class Status(models.TextChoices):
        OK = "ok"
        ERROR = "error"
        TIMEOUT = "timeout"
        CANCELLED = "cancelled"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="classifier_calls")
    classifier = models.CharField(max_length=64)
    classifier_version = models.PositiveIntegerField(default=0)
    model = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OK)
    output = models.JSONField(null=True, blank=True)
    raw_output = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField()
    wait_ms = models.PositiveIntegerField(default=0)
    retries = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["message_id", "classifier"]

    def __str__(self):
        return f"{self.classifier} on message #{self.message.seq}"


class Handoff(models.Model):
    """A conversation waiting for a person: queued, then claimed by staff, then resolved.

    A release puts a claimed handoff back in the queue; ``claimed_at`` stays the first claim.
    The lifecycle is in ``agent.staff.handoffs``.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        CLAIMED = "claimed"
        RESOLVED = "resolved"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="handoffs"
    )
    message = models.ForeignKey(
        Message,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The visitor message that caused the handoff.",
    )
    reason = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    alerted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the overdue email went out (it goes once)."
    )
    version = models.PositiveIntegerField(
        default=1,
        editable=False,
        help_text="1 when queued, one more at each claim, release and resolve (under the row's "
        "lock): staff screens apply a queue_change only if it is newer than what they hold.",
    )

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]
        permissions = [("handle_handoff", "Can claim, release, resolve and answer handoffs")]

    def __str__(self):
        return f"Handoff {self.pk} ({self.status})"


# The LLM side's rows and the leads and webhooks live in their own rooms (agent/llm/,
# agent/crm/); Django finds an app's models in agent.models.
from agent.crm.models import (  # noqa: E402, F401
    Delivery,
    Event,
    Lead,
    LeadConversation,
    WebhookEndpoint,
)
from agent.llm.models import (  # noqa: E402, F401
    CONFIG_STAMP_SQL,
    ClassifierConfig,
    Endpoint,
    config_stamp,
    validate_schema,
)
