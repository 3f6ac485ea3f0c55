"""Every URL of the portal, for every role: 200, 302 to the login page, or 403."""

import importlib
import pkgutil

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

import tests.permissions as permissions
from deployments.models import Deployment
from portal.roles import ADMIN, SCHEDULER, VIEWER


def _matrix():
    merged = {}
    for info in pkgutil.iter_modules(permissions.__path__):
        module = importlib.import_module(f"tests.permissions.{info.name}")
        overlap = merged.keys() & module.MATRIX.keys()
        assert not overlap, f"URL names in two matrix modules: {overlap}"
        merged.update(module.MATRIX)
    return merged


MATRIX = _matrix()


def _url_names(patterns=None, namespace=""):
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from _url_names(p.url_patterns, ns)
        elif isinstance(p, URLPattern) and p.name:
            yield f"{namespace}{p.name}"


def test_every_url_of_the_portal_has_a_row_in_the_permission_matrix():
    names = set(_url_names())
    missing = sorted(names - MATRIX.keys())
    stale = sorted(MATRIX.keys() - names)
    assert not missing, f"add these URLs to tests/permissions/: {missing}"
    assert not stale, f"these rows name no URL any more: {stale}"


class World:
    """One object of each kind a URL can point at, made fresh for each request."""

    def __init__(self, django_user_model):
        self.users = {}
        for role, username in ((ADMIN, "ada_admin"), (SCHEDULER, "sam_scheduler"), (VIEWER, "vic_viewer")):
            user = User.objects.create_user(username, password="x-Pa55word-x")
            user.groups.add(Group.objects.get(name=role))
            self.users[role] = user
        self.admin, self.scheduler, self.viewer = (self.users[r] for r in (ADMIN, SCHEDULER, VIEWER))
        self.deployment = Deployment.objects.create(
            name="Matrix clinic",
            slug="matrix",
            orthanc_url="http://127.0.0.1:9",
            service_password="x" * 24,
            config_dir="/nonexistent/config",
            service_kind=Deployment.ServiceKind.NONE,
        )
        for hook in WORLD_HOOKS:
            hook(self)

    def resolve(self, path):
        value = self
        for part in path.split("."):
            value = getattr(value, part)
        return value


# Apps add objects their URLs need: a function taking the World.
WORLD_HOOKS = []
for info in pkgutil.iter_modules(permissions.__path__):
    module = importlib.import_module(f"tests.permissions.{info.name}")
    WORLD_HOOKS.extend(getattr(module, "WORLD_HOOKS", []))


@pytest.mark.parametrize("name", sorted(MATRIX))
@pytest.mark.parametrize("role", ["anonymous", "admin", "scheduler", "viewer"])
def test_each_role_gets_the_expected_status_on_each_url(name, role, db, django_user_model):
    row = MATRIX[name]
    world = World(django_user_model)
    url = reverse(name, kwargs={k: world.resolve(v) for k, v in row.kwargs.items()})
    client = Client()
    if role != "anonymous":
        client.force_login(getattr(world, role))

    response = getattr(client, row.method)(url, row.data)

    expected = getattr(row, role)
    assert response.status_code == expected, f"{role} {row.method.upper()} {url}: {response.status_code}"
    if role == "anonymous" and expected == 302 and name not in ("logout",):
        assert response.url.startswith(reverse("login")), f"{url} sends anonymous visitors to {response.url}"
