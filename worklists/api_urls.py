from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework import permissions
from rest_framework.routers import SimpleRouter

from .api import EntryViewSet, PatientViewSet
from .views.docs import api_docs

app_name = "api"
router = SimpleRouter()
router.register("worklists/patients", PatientViewSet, basename="patient")
router.register("worklists/entries", EntryViewSet, basename="entry")

urlpatterns = [
    # The schema is not patient data; any signed-in account or integration token may read it.
    path("schema/", SpectacularAPIView.as_view(permission_classes=[permissions.IsAuthenticated]), name="schema"),
    path("docs/", api_docs, name="docs"),
    *router.urls,
]
