from django.urls import path

from .views import entries, imports, machine

app_name = "worklists"
urlpatterns = [
    path("", entries.index, name="index"),
    path("new/", entries.entry_create, name="create"),
    path("<int:pk>/edit/", entries.entry_edit, name="edit"),
    path("<int:pk>/status/", entries.entry_status, name="status"),
    path("patients/lookup/", entries.patient_lookup, name="patient_lookup"),
    path("machine/", machine.machine_view, name="machine"),
    path("import/", imports.csv_upload, name="import"),
    path("sync/<slug:slug>/", entries.sync_now, name="sync_now"),
]
