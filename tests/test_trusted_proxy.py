"""Behind a real nginx (Debian package) in front of a real gunicorn serving the portal: the login
lockout and the audit log see the client's address, X-Forwarded-For is believed only from the
configured proxy, and a client cannot lock out somebody else or hide behind a forged header.

The proxy connects to gunicorn from 127.0.0.2 (``proxy_bind``), the only trusted address; the
"clients" connect from 127.0.0.3 and 127.0.0.4 through nginx, and from 127.0.0.1 straight to
gunicorn."""

import http.client
import os
import re
import subprocess
import sys
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from axes.models import AccessAttempt
from django.conf import settings
from django.test import RequestFactory, override_settings

from deployments.models import Deployment
from portal.clientip import client_ip, parse_networks
from portal.models import AuditEntry
from tests.conftest import ROOT, free_port, require_binary, test_database_url, wait_for

PROXY, ATTACKER, VICTIM, DIRECT = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.1"
PASSWORD = "ada_admin-Pa55word!"  # tests/conftest.py's admin_user


def real_proxy_headers():
    """The proxy_set_header lines of the compose nginx's portal location, used as they are."""
    conf = (ROOT / "docker" / "nginx" / "nginx.conf").read_text()
    block = re.search(r"location / \{\s*proxy_pass http://portal_web;(.*?)\}", conf, re.S).group(1)
    lines = [line.strip() for line in block.splitlines() if line.strip().startswith("proxy_set_header")]
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in lines
    return "\n".join(lines)


NGINX_CONF = """
{user}
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_bind {proxy};
            {headers}
        }}
    }}
}}
"""


@pytest.fixture
def proxied_portal(tmp_path, transactional_db):
    """gunicorn (the compose web container's settings file) behind nginx, on free loopback ports."""
    nginx = require_binary("/usr/sbin/nginx", "nginx")
    gunicorn_port, nginx_port = free_port(), free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",  # the test users' password hasher
        "DATABASE_URL": test_database_url(),
        "DEBUG": "1",
        "TRUSTED_PROXIES": PROXY,
    }
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed at teardown
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--config", "docker/portal/gunicorn.conf.py",
         "--bind", f"127.0.0.1:{gunicorn_port}", "--workers", "1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "",  # workers must reach the temp folders
            tmp=tmp_path,
            port=nginx_port,
            upstream=gunicorn_port,
            proxy=PROXY,
            headers=real_proxy_headers(),
        )
    )
    proxy = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")])
    try:
        for port, name in ((gunicorn_port, "gunicorn"), (nginx_port, "nginx")):
            wait_for(lambda p=port: _answers(p), timeout=30, message=f"{name} on port {port}")
        yield {"nginx": nginx_port, "gunicorn": gunicorn_port}
    finally:
        for proc in (proxy, gunicorn):
            proc.terminate()
            proc.wait(15)
        log.close()


def _answers(port):
    try:
        return Browser(port).request("GET", "/accounts/login/")[0] == 200
    except OSError:
        return False


class Browser:
    """An HTTP client from a given loopback address, keeping its cookies."""

    def __init__(self, port, source=DIRECT, forwarded_for=None):
        self.port, self.source, self.forwarded_for = port, source, forwarded_for
        self.cookies = {}

    def request(self, method, path, form=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20, source_address=(self.source, 0))
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if self.forwarded_for:
            headers["X-Forwarded-For"] = self.forwarded_for
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode(errors="replace")
        finally:
            conn.close()
        for value in response.headers.get_all("Set-Cookie") or []:
            self.cookies.update({k: m.value for k, m in SimpleCookie(value).items()})
        return response.status, text

    def submit(self, page, action, form=None):
        """POST to ``action`` with the CSRF token of the form on ``page``, as a browser would."""
        html = self.request("GET", page)[1]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        return self.request("POST", action, {**(form or {}), "csrfmiddlewaretoken": token})[0]

    def login(self, username, password):
        return self.submit("/accounts/login/", "/accounts/login/", {"username": username, "password": password})


def test_failed_logins_through_the_proxy_lock_out_only_the_client_that_made_them(proxied_portal, admin_user):
    # The attacker also claims to be the victim: the header is the client's own words.
    attacker = Browser(proxied_portal["nginx"], ATTACKER, forwarded_for=VICTIM)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attacker.login("ada_admin", "wrong-password") == 200
    assert attacker.login("ada_admin", "wrong-password") == 429, "the limit's failure locks out"
    assert attacker.login("ada_admin", PASSWORD) == 429, "the attacker's address is locked out"

    victim = Browser(proxied_portal["nginx"], VICTIM)
    assert victim.login("ada_admin", PASSWORD) == 302, "somebody else's failures lock nobody else out"
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}


def test_a_forwarded_for_header_sent_straight_to_gunicorn_is_not_believed(proxied_portal, admin_user):
    forger = Browser(proxied_portal["gunicorn"], DIRECT, forwarded_for="203.0.113.7")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        forger.login("ada_admin", "wrong-password")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {DIRECT}
    # Changing the header does not get the forger out of the lockout either.
    forger.forwarded_for = "198.51.100.9"
    assert forger.login("ada_admin", PASSWORD) == 429


def test_the_audit_log_records_the_address_of_the_client_behind_the_proxy(proxied_portal, admin_user):
    deployment = Deployment.objects.create(
        name="Proxied", slug="proxied", orthanc_url="http://127.0.0.1:9", service_password="x" * 24, config_dir="/x"
    )
    admin = Browser(proxied_portal["nginx"], VICTIM, forwarded_for="192.0.2.66")
    assert admin.login("ada_admin", PASSWORD) == 302
    page = f"/deployments/{deployment.slug}/security/"
    assert admin.submit(page, f"{page}audit/") == 302
    entry = AuditEntry.objects.get(summary="live security audit requested")
    assert entry.ip == VICTIM


# ---------------------------------------------------------------- the rule itself


def address_of(remote, forwarded=None, trusted=()):
    meta = {"REMOTE_ADDR": remote} | ({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {})
    with override_settings(TRUSTED_PROXY_NETWORKS=parse_networks(trusted)):
        return client_ip(RequestFactory().get("/", **meta))


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "expected"),
    [
        ("10.0.0.5", "203.0.113.7", [], "10.0.0.5"),  # no proxy configured: no header believed
        ("10.0.0.9", "203.0.113.7", ["10.0.0.5"], "10.0.0.9"),  # not from the proxy
        ("10.0.0.5", "203.0.113.7", ["10.0.0.5"], "203.0.113.7"),
        ("10.0.0.5", "1.1.1.1, 203.0.113.7", ["10.0.0.5"], "203.0.113.7"),  # right-most untrusted hop
        ("10.0.0.5", "203.0.113.7, 10.0.1.2", ["10.0.0.0/16"], "203.0.113.7"),  # a chain of trusted proxies
        ("10.0.0.5", "", ["10.0.0.5"], "10.0.0.5"),
        ("10.0.0.5", "junk, 10.0.1.2", ["10.0.0.0/16"], "10.0.1.2"),  # garbage: stop at the last known hop
        ("10.0.0.5", "2001:db8::1", ["10.0.0.5"], "2001:db8::1"),
    ],
)
def test_the_client_address_is_the_right_most_hop_not_a_trusted_proxy(remote, forwarded, trusted, expected):
    assert address_of(remote, forwarded, trusted) == expected


def test_trusted_proxies_that_are_not_addresses_are_refused_at_start():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES: 'nginx' is not an IP address"):
        parse_networks(["nginx"])


def test_compose_trusts_exactly_the_nginx_addresses():
    compose = yaml.safe_load(Path(ROOT / "docker-compose.yml").read_text())
    nginx = {net["ipv4_address"] for net in compose["services"]["nginx"]["networks"].values()}
    trusted = set(compose["x-portal"]["environment"]["TRUSTED_PROXIES"].split(","))
    assert trusted == nginx
    assert "AXES_PROXY_COUNT" not in compose["x-portal"]["environment"]
