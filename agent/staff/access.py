"""Who may do what on the staff side: Django permissions, checked afresh, and staff sockets
closed when their user logs out or loses staff status.

Permissions (issue 13; the "Chat staff" group of migration ``agent.0011`` holds the three):

- ``agent.view_handoff`` (Django's default): see the handoff queue (names, emails, phones).
- ``agent.view_conversation`` (Django's default): read transcripts, also live on a handoff.
- ``agent.handle_handoff`` (``Handoff.Meta.permissions``): claim, release, resolve, reply.

Superusers hold every permission. The staff socket (``agent.staff.consumer``) reloads its user
from the database before each action (``staff_user``), so a user deactivated, demoted or
stripped of a permission is refused at their next frame; and each socket joins its user's group
(``user_group``), to which a logout, a save that leaves the user inactive or without staff
status, or a permission or group taken away sends ``{"type": "staff.close"}``
(``close_sockets_of``), so the socket ends then; the page's script reconnects, and the
connect checks the user afresh.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model, user_logged_out
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save

logger = logging.getLogger(__name__)

VIEW_QUEUE = "agent.view_handoff"
VIEW_TRANSCRIPTS = "agent.view_conversation"
HANDLE = "agent.handle_handoff"


def may(user, *perms: str) -> bool:
    """Whether ``user`` is an authenticated, active staff user holding every one of ``perms``
    (e.g. ``HANDLE``). Touches the database (the user's permissions) unless cached on it."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perms(perms)
    )


def staff_user(user_id, *perms: str):
    """The user ``user_id`` as the database has it now, if ``may(user, *perms)``, else None
    (unknown, inactive, not staff, or missing a permission). Call it off the event loop
    (``agent.dbgate.db_trip``)."""
    user = get_user_model().objects.filter(pk=user_id).first()
    return user if may(user, *perms) else None


def recheck(user_id, perm: str):
    """``(user, allowed)``: the user as ``staff_user(user_id, VIEW_QUEUE)`` reloads them (None
    when they are no longer active staff who may see the queue), and whether they hold
    ``perm`` too. One trip off the event loop, for each frame of a staff socket."""
    user = staff_user(user_id, VIEW_QUEUE)
    return user, user is not None and user.has_perm(perm)


def user_group(user_id) -> str:
    """The channel-layer group of one user's staff sockets."""
    return f"staff.user.{user_id}"


def close_sockets_of(user_id) -> None:
    """Close every staff socket of ``user_id``, on any worker, once the current transaction
    commits (so a socket that reconnects at once sees the change). A channel-layer failure is
    logged, never raised: a logout must not fail because Redis did."""

    def send():
        try:
            async_to_sync(get_channel_layer().group_send)(
                user_group(user_id), {"type": "staff.close"}
            )
        except Exception:
            logger.exception("could not close the staff sockets of user %s", user_id)

    transaction.on_commit(send)


def _on_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        close_sockets_of(user.pk)


def _on_user_saved(sender, instance, created, **kwargs) -> None:
    if not created and not (instance.is_active and instance.is_staff):
        close_sockets_of(instance.pk)


def _on_access_removed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    """A user's permissions or groups, or a group's permissions, lost some (``remove`` or
    ``clear``, as the admin's forms do): close the staff sockets of the users concerned."""
    if action not in ("post_remove", "post_clear"):
        return
    ids = [instance.pk] if not reverse else list(pk_set or ())
    if sender is Group.permissions.through:  # ids are groups
        ids = get_user_model().objects.filter(groups__in=ids).values_list("pk", flat=True)
    for user_id in set(ids):
        close_sockets_of(user_id)


def connect_signals() -> None:
    """Close a user's staff sockets on logout, when a save leaves them inactive or not staff,
    and when they or their group lose a permission (``AgentConfig.ready``)."""
    User = get_user_model()
    user_logged_out.connect(_on_logout, dispatch_uid="agent.staff.access.logout")
    post_save.connect(_on_user_saved, sender=User, dispatch_uid="agent.staff.access.user_saved")
    for through in (User.user_permissions.through, User.groups.through, Group.permissions.through):
        m2m_changed.connect(
            _on_access_removed, sender=through, dispatch_uid=f"agent.staff.access.{through}"
        )
