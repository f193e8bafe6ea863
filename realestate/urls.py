from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import path

from agent.chat import views
from agent.staff import views as staff_views
from listings import callpage, feeds
from listings import views as listing_views

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
    path("chat/labels", views.chat_labels, name="chat-labels"),
    path("admin/", admin.site.urls),
    path("metrics", views.metrics, name="metrics"),
    path("listings/", listing_views.listing_list, name="listing-list"),
    path("listings/<str:listing_id>/", listing_views.listing_detail, name="listing-detail"),
    # A realtor's private calendar feed, and a visitor's signed link to cancel or move a call.
    path("calendar/<str:token>.ics", feeds.calendar_feed, name="calendar-feed"),
    path("call/<str:token>/", callpage.call_page, name="call-link"),
]
# Uploaded photos, served by Django only with DEBUG (static() adds nothing otherwise).
urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
