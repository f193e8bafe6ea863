"""Leads and CRM webhooks (issue 15): ``models`` (Lead, WebhookEndpoint, Event, Delivery),
``leads`` (a lead filled from what the chat learns), ``outbox`` (events written in the change's
transaction), ``signing`` and ``urls`` (how deliveries are signed and where they may go),
``delivery`` (the HTTP send, retried by the task queue, ``agent.tasks``) and ``admin``."""
