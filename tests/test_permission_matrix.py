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


# ------------------------------------------------------------------ own site / other site

# What only an account that works for every site may do (portal/sites.py require_global).
GLOBAL_ONLY = {
    "staff_list",
    "staff_create",
    "staff_edit",
    "staff_reset_password",
    "metrics_token",
    "deployments:create",
}
# Objects of no site: the same for every account.
SITELESS_OBJECTS = {"viewer.pk", "api_token.pk"}


class SiteWorld:
    """The World's objects made again for a second site, and one account of each role that works
    for the first site only."""

    def __init__(self, world):
        from portal.models import SiteAccess

        self.users, self.viewer, self.scheduler, self.admin = world.users, world.viewer, world.scheduler, world.admin
        self.deployment = Deployment.objects.create(
            name="Other clinic",
            slug="other",
            orthanc_url="http://127.0.0.1:9",
            service_password="y" * 24,
            config_dir="/nonexistent/other-config",
            service_kind=Deployment.ServiceKind.NONE,
        )
        for hook in WORLD_HOOKS:
            hook(self)
        self.limited = {}
        for role in (ADMIN, SCHEDULER, VIEWER):
            user = User.objects.create_user(f"limited_{role.lower()}", password="x-Pa55word-x")
            user.groups.add(Group.objects.get(name=role))
            access = SiteAccess.objects.create(user=user, all_sites=False)
            access.deployments.set([world.deployment])
            self.limited[role.lower()] = user

    resolve = World.resolve


def limited_expectation(name, role, site):
    """The status an account of ``role`` limited to the first site gets."""
    row = MATRIX[name]
    expected = getattr(row, role)
    if expected == 403:
        return 403  # the role's permission is checked first
    if name in GLOBAL_ONLY:
        return 403
    if name == "api_token_revoke":
        return 404  # the world's token is another account's: a limited account revokes only its own
    site_bound = any(path not in SITELESS_OBJECTS for path in row.kwargs.values())
    return 404 if site_bound and site == "other" else expected


@pytest.mark.parametrize("name", sorted(MATRIX))
@pytest.mark.parametrize("role", ["admin", "scheduler", "viewer"])
@pytest.mark.parametrize("site", ["own", "other"])
def test_an_account_limited_to_one_site_reaches_its_site_and_finds_nothing_of_another(
    name, role, site, db, django_user_model
):
    row = MATRIX[name]
    world = World(django_user_model)
    other = SiteWorld(world)
    objects = world if site == "own" else other
    kwargs = {k: (world if v in SITELESS_OBJECTS else objects).resolve(v) for k, v in row.kwargs.items()}
    client = Client()
    client.force_login(other.limited[role])

    response = getattr(client, row.method)(reverse(name, kwargs=kwargs), row.data)

    expected = limited_expectation(name, role, site)
    assert response.status_code == expected, f"limited {role}, {site} site, {name}: {response.status_code}"
    if response.status_code in (200,) and site == "own" and not row.kwargs:
        # A list or page of every site: nothing of the other site shows.
        assert b"Other clinic" not in response.content, f"{name} shows the other site to a limited {role}"
