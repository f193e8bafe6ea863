"""A lead per conversation, filled from what the chat learns, and the events it causes.

- ``record_turn`` (called once per routed turn, in the turn's transaction): the lead of the
  conversation (created on its first turn: ``lead.created``), its contact details, the listing
  ids the pricing classifier named, the listing search's criteria
  (``criteria_of``), the last contact; a change of anything but the last contact sends
  ``lead.updated``. An email or phone another lead already has merges this lead into that
  older one.
- ``appointment_event`` and ``handoff_event`` (beside the booking and handoff emails): the
  ``appointment.*`` and ``handoff.*`` events; a booking moves the lead to *viewing booked* and
  makes the realtor its owner when it has none (``lead.updated``).

"Hot" (``hot_q``): reachable (an email or phone), in touch within ``HOT_DAYS`` days, and
either a viewing booked, or the intent and a budget known, or pre-approved for a mortgage.
Those are the leads a realtor can call today about something concrete; the rule is ours.
"""

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from agent.crm import outbox
from agent.crm.models import Event, Lead, LeadConversation
from agent.rows import insert_rows, select_rows, update_row

logger = logging.getLogger(__name__)

HOT_DAYS = 14
CONTACT = ("name", "email", "phone")
CRITERIA = ("intent", "budget_min", "budget_max", "towns", "bedrooms", "timeline", "preapproved")
STAGE_ORDER = [s.value for s in Lead.Stage]
EARLY = (Lead.Stage.NEW, Lead.Stage.CONTACTED, Lead.Stage.QUALIFIED)


def hot_q(now: datetime) -> Q:
    """The filter of hot leads at ``now`` (the rule is in the module's docstring)."""
    reachable = ~Q(email="") | ~Q(phone="")
    concrete = (
        Q(stage=Lead.Stage.VIEWING_BOOKED)
        | (~Q(intent="") & (Q(budget_max__isnull=False) | Q(budget_min__isnull=False)))
        | Q(preapproved=True)
    )
    return reachable & concrete & Q(last_contact_at__gte=now - timedelta(days=HOT_DAYS))


# select_rows's rest of the conversation's lead.
LEAD_OF = (
    f"JOIN {LeadConversation._meta.db_table} c ON c.lead_id = t.id "
    "WHERE c.conversation_id = %s LIMIT 1"
)


# The UPDATE of the last contact of a conversation's lead, as a CTE named ``touched``;
# ``{source}`` adds a table to its FROM and ``{conversation}`` names the conversation's id.
_TOUCH = (
    f"touched AS (UPDATE {Lead._meta.db_table} l SET last_contact_at = %s, updated_at = %s "
    f"FROM {LeadConversation._meta.db_table} c{{source}} WHERE c.lead_id = l.id "
    "AND c.conversation_id = {conversation} RETURNING l.id)"
)
# select_rows's before and rest of ``lead_for(..., touch=True)``: the touch, then the read of
# the row it touched (as it was before: the caller sets the two).
TOUCH_LEAD = "WITH " + _TOUCH.format(source="", conversation="%s")
TOUCHED = "JOIN touched ON touched.id = t.id"
# The same touch beside a CTE named ``marked`` that returns a ``conversation_id``, and the join
# that reads the row it touched as alias ``l`` (``agent.chat.turn.mark_answered``, which marks
# the turn's message: one statement fewer a turn; the caller sets the two times).
TOUCH_MARKED = _TOUCH.format(source=", marked", conversation="marked.conversation_id")
TOUCHED_LEAD = f"LEFT JOIN {Lead._meta.db_table} l ON l.id = (SELECT id FROM touched)"


def lead_for(conversation, now: datetime, *, touch: bool = False) -> Lead:
    """The conversation's lead, created (with ``lead.created``) when it has none.

    Args:
        conversation: an ``agent.Conversation``.
        now: the current time, aware.
        touch: also set its ``last_contact_at`` (and ``updated_at``) to ``now``, stored in
            the same statement as the read (every turn does: one statement fewer).
    Returns:
        The ``Lead``.
    """
    # Raw, as every turn asks: the ORM's compiling of the join cost more CPU than running it.
    if touch:
        for found in select_rows(Lead, TOUCHED, [now, now, conversation.pk], before=TOUCH_LEAD):
            found.last_contact_at = found.updated_at = now
            return found
    else:
        for found in select_rows(Lead, LEAD_OF, [conversation.pk]):
            return found
    lead = Lead(
        name=conversation.visitor_name,
        email=conversation.visitor_email,
        phone=conversation.visitor_phone,
        first_contact_at=conversation.created_at or now,
        last_contact_at=now,
    )
    try:
        with transaction.atomic():  # raw, as every conversation's first turn asks
            insert_rows([lead])
            insert_rows([LeadConversation(lead=lead, conversation=conversation)])
    except IntegrityError:  # a concurrent turn of the conversation linked one first
        lead = select_rows(Lead, LEAD_OF, [conversation.pk])[0]
        if touch:
            lead.last_contact_at = now
            update_row(lead, ["last_contact_at", "updated_at"])
        return lead
    outbox.emit("lead.created", lead, lead_data(lead))
    return lead


def criteria_of(conversation) -> dict:
    """What the listing search learnt of the visitor's wishes, as ``Lead`` field values
    (``budget_min``, ``budget_max``, ``towns``, ``bedrooms``), read from the conversation's
    stored search criteria (``Conversation.search``: ``listings.search.Criteria`` as a dict).

    The place a visitor searched is kept as written (a town or a neighbourhood), bounded by
    ``apply_criteria``. Intent, timeline and pre-approval come from the answers to the lead
    questions instead (``agent.crm.qualify``). Unknown keys and None values are ignored by
    ``apply_criteria``.
    """
    search = getattr(conversation, "search", None)
    if not isinstance(search, dict):
        return {}
    place = search.get("place")
    return {
        "budget_min": search.get("min_price"),
        "budget_max": search.get("max_price"),
        "bedrooms": search.get("min_bedrooms"),
        "towns": [place] if isinstance(place, str) and place.strip() else None,
    }


def apply_criteria(lead: Lead, criteria: dict) -> list[str]:
    """Set the lead's criteria fields from ``criteria`` (see ``criteria_of``); a value of
    None or an unknown key is ignored; towns are added to the known ones. Does not save.

    Returns:
        The names of the fields that changed.
    """
    changed = []
    for name in CRITERIA:
        value = criteria.get(name)
        if value is None:
            continue
        if name == "towns":
            value = list(dict.fromkeys([*lead.towns, *[str(t)[:100] for t in value][:20]]))
        if getattr(lead, name) != value:
            setattr(lead, name, value)
            changed.append(name)
    return changed


def record_turn(
    conversation, outcomes: list, now: datetime, answer: dict | None = None,
    touched: Lead | None = None,
) -> Lead:
    """Fill the conversation's lead with what this turn learnt; see the module docstring.

    Args:
        conversation: the ``agent.Conversation`` of the turn (its contact already saved).
        outcomes: the turn's ``agent.llm.fanout.Outcome`` list; a parsed output with a
            ``listing_id`` (the pricing classifier's) adds that listing to the lead.
        now: the current time, aware.
        answer: ``Lead`` field values the visitor's answer to a lead question gave
            (``agent.crm.qualify.read_answer``: intent, timeline, preapproved), or None.
        touched: the conversation's lead, its last contact already set to the turn's time
            in the turn's transaction (``TOUCH_MARKED``); None: read and touched here.
    Returns:
        The lead (the surviving one after a merge).
    """
    listing_ids = [getattr(o.output, "listing_id", None) for o in outcomes]
    lead = touched or lead_for(conversation, now, touch=True)  # its last contact is now
    changed = [n for n in CONTACT if getattr(conversation, f"visitor_{n}") not in ("", None)
               and getattr(lead, n) != getattr(conversation, f"visitor_{n}")]
    for name in changed:
        setattr(lead, name, getattr(conversation, f"visitor_{name}"))
    new_ids = [i for i in listing_ids if i and i not in lead.listing_ids]
    if new_ids:
        lead.listing_ids = [*lead.listing_ids, *new_ids][-50:]
        changed.append("listing_ids")
    changed += apply_criteria(lead, criteria_of(conversation))
    changed += apply_criteria(lead, answer or {})
    if changed:
        update_row(lead, [*dict.fromkeys(changed), "updated_at"])
    merged_from = None
    if "email" in changed or "phone" in changed:
        lead, merged_from = _merge(lead)
    if changed or merged_from:
        data = lead_data(lead) | {"changed": sorted(set(changed))}
        if merged_from:
            data["merged_lead_id"] = merged_from
        outbox.emit("lead.updated", lead, data)
    return lead


def _merge(lead: Lead) -> tuple[Lead, int | None]:
    """Merge ``lead`` into the oldest other lead with its email or phone, if any.

    Returns:
        (the surviving lead, the merged lead's id), or (``lead``, None) when none matched.
    """
    same = Q(email__iexact=lead.email) if lead.email else Q(pk__in=[])
    if lead.phone:
        same |= Q(phone=lead.phone)
    older = (
        Lead.objects.select_for_update().filter(same).exclude(pk=lead.pk)
        .order_by("created_at", "pk").first()
    )
    if older is None:
        return lead, None
    for name in (*CONTACT, *CRITERIA, "source_page", "owner_id"):
        if getattr(older, name) in ("", None, []):
            setattr(older, name, getattr(lead, name))
    older.listing_ids = list(dict.fromkeys([*older.listing_ids, *lead.listing_ids]))[-50:]
    older.first_contact_at = min(older.first_contact_at, lead.first_contact_at)
    older.last_contact_at = max(older.last_contact_at, lead.last_contact_at)
    older.stage = max(older.stage, lead.stage, key=STAGE_ORDER.index)
    older.save()
    LeadConversation.objects.filter(lead=lead).update(lead=older)
    Event.objects.filter(lead=lead).update(lead=older)  # its deliveries drain with older's
    merged = lead.pk
    lead.delete()
    logger.info("merged lead %s into lead %s (same email or phone)", merged, older.pk)
    return older, merged


def appointment_event(event_type: str, appointment, now: datetime | None = None, **extra) -> None:
    """Emit ``appointment.booked``/``cancelled``/``moved`` for a chat's appointment in the
    current transaction; a booking also updates the lead (stage, owner).

    Args:
        event_type: the event type.
        appointment: the ``listings.Appointment`` (for ``moved``: the new one).
        now: the current time, aware (None: the clock's), for a lead created now.
        extra: more ``data`` keys, e.g. ``moved_from`` (the old appointment's data).
    """
    now = now or timezone.now()
    lead = lead_for(appointment.conversation, now) if appointment.conversation_id else None
    if lead is not None and event_type != "appointment.cancelled":
        changed = []
        if lead.stage in EARLY:
            lead.stage = Lead.Stage.VIEWING_BOOKED
            changed.append("stage")
        if lead.owner_id is None:
            lead.owner_id = appointment.realtor_id
            changed.append("owner")
        if changed:
            lead.save(update_fields=["stage", "owner", "updated_at"])
            outbox.emit("lead.updated", lead, lead_data(lead) | {"changed": changed})
    outbox.emit(event_type, lead, {"appointment": appointment_data(appointment), **extra})


def handoff_event(event_type: str, handoff, now: datetime | None = None) -> None:
    """Emit ``handoff.queued`` or ``handoff.resolved`` in the current transaction (``now``:
    the current time for a lead created now; None: the clock's)."""
    lead = lead_for(handoff.conversation, now or timezone.now())
    outbox.emit(event_type, lead, {"handoff": {
        "id": handoff.pk,
        "conversation": str(handoff.conversation_id),
        "reason": handoff.reason,
        "status": handoff.status,
        "created_at": _iso(handoff.created_at),
        "resolved_at": _iso(handoff.resolved_at),
    }})


def lead_data(lead: Lead) -> dict:
    """A lead as webhooks carry it (docs/webhooks.md): every field, the owner as
    ``{"id", "name"}`` or None, and its conversations' ids."""
    return {
        "id": lead.pk,
        "name": lead.name,
        "email": lead.email,
        "phone": lead.phone,
        "intent": lead.intent,
        "budget_min": lead.budget_min,
        "budget_max": lead.budget_max,
        "towns": lead.towns,
        "bedrooms": lead.bedrooms,
        "timeline": lead.timeline,
        "preapproved": lead.preapproved,
        "listing_ids": lead.listing_ids,
        "source_page": lead.source_page,
        "stage": lead.stage,
        "owner": {"id": lead.owner.pk, "name": str(lead.owner)} if lead.owner_id else None,
        "first_contact_at": _iso(lead.first_contact_at),
        "last_contact_at": _iso(lead.last_contact_at),
        "conversations": [str(c) for c in _conversation_ids(lead.pk)],
    }


def _conversation_ids(lead_id) -> list:
    # Raw, as a turn's lead.updated asks: the ORM's compiling cost more than the query.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT conversation_id FROM {LeadConversation._meta.db_table} WHERE lead_id = %s",
            [lead_id],
        )
        return [row[0] for row in cursor.fetchall()]


def appointment_data(appointment) -> dict:
    """An appointment as webhooks carry it: times in UTC ISO 8601, the realtor, the listing's
    6-digit id or None, the visitor's contact."""
    return {
        "id": appointment.pk,
        "status": appointment.status,
        "starts_at": _iso(appointment.starts_at),
        "ends_at": _iso(appointment.ends_at),
        "realtor": {"id": appointment.realtor_id, "name": str(appointment.realtor)},
        "listing_id": appointment.listing.listing_id if appointment.listing_id else None,
        "conversation": str(appointment.conversation_id) if appointment.conversation_id else None,
        "visitor": {
            "name": appointment.visitor_name,
            "email": appointment.visitor_email,
            "phone": appointment.visitor_phone,
        },
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def forget(now: datetime, days: int) -> int:
    """Retention for the CRM room (``agent.ops.retention.purge`` calls it): blank the contact
    details of leads none of whose conversations is left un-anonymised, and delete events
    (and their deliveries, held ones included) older than ``days`` days, since their
    payloads carry contact details.

    Returns:
        The number of leads blanked.
    """
    live = LeadConversation.objects.filter(
        lead=OuterRef("pk"), conversation__anonymised_at__isnull=True
    )
    stale = Lead.objects.exclude(Exists(live)).exclude(name="", email="", phone="")
    blanked = stale.update(name="", email="", phone="")
    Event.objects.filter(created_at__lt=now - timedelta(days=days)).delete()
    return blanked
