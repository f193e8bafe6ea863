from django.contrib import admin
from django.urls import path

from agent import views

urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("chat/session", views.chat_session, name="chat-session"),
    path("admin/", admin.site.urls),
]
