from django.urls import path

from . import views

app_name = "backups"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("schedules/new/", views.schedule_create, name="schedule_create"),
    path("schedules/<int:pk>/", views.schedule_detail, name="schedule"),
    path("schedules/<int:pk>/edit/", views.schedule_edit, name="schedule_edit"),
    path("schedules/<int:pk>/delete/", views.schedule_delete, name="schedule_delete"),
    path("schedules/<int:pk>/run/", views.schedule_run, name="schedule_run"),
    path("schedules/<int:pk>/test-connection/", views.test_connection, name="test_connection"),
    path("schedules/<int:pk>/pin-host-key/", views.pin_host_key, name="pin_host_key"),
    path("keys/<slug:slug>/", views.ssh_key, name="ssh_key"),
    path("keys/<slug:slug>/generate/", views.ssh_key_generate, name="ssh_key_generate"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/verify/", views.run_verify, name="run_verify"),
    path("runs/<int:pk>/restore/", views.run_restore, name="run_restore"),
]
