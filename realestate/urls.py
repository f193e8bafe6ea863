from django.contrib import admin
from django.urls import path

from agent.chat import views
from agent.staff import views as staff_views

urlpatterns = [
    path("", views.chat_page, name="chat"),
    # Staff screens inside the admin, with its login and look; before the admin's own URLs.
    path(
        "admin/handoffs/", admin.site.admin_view(staff_views.handoff_queue), name="handoff_queue"
    ),
    path(
        "admin/handoffs/<int:pk>/",
        admin.site.admin_view(staff_views.handoff_detail),
        name="handoff_detail",
    ),
    path("chat/session", views.chat_session, name="chat-session"),
    path("admin/", admin.site.urls),
    path("metrics", views.metrics, name="metrics"),
]
