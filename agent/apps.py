from django.apps import AppConfig


class AgentConfig(AppConfig):
    """The LLM side: classifiers, fan-out, router, chat consumer and conversation logs."""

    name = "agent"
    verbose_name = "Chat"

    def ready(self):
        from agent.live import count_drops
        from agent.staff.access import connect_signals
        from realestate import dbpool

        count_drops()
        connect_signals()
        dbpool.install()
