from django.urls import path

from . import views

app_name = "hl7"
urlpatterns = [
    path("", views.mapping_index, name="mappings"),
    path("new/", views.mapping_edit, name="mapping_create"),
    path("<int:pk>/", views.mapping_edit, name="mapping_edit"),
    path("<int:pk>/delete/", views.mapping_delete, name="mapping_delete"),
]
