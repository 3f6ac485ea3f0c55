"""Parts of the many-sites tests: a central Redis of our own (with ACL users, optionally TLS), a
throwaway CA made with openssl, and site agents (real Celery workers of one queue)."""

import ctypes
import hashlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import kombu.pools
import pytest
import redis

from deployments.agent_setup import AgentSetup, agent_username, redis_acl_rules, worker_command
from tests.backups.conftest import sshd  # noqa: F401  (a fixture: the backup target of an agent's backup)
from tests.conftest import ROOT, free_port, require_binary, test_database_url, wait_for
from tests.pgcluster import started_for_test


def make_certificates(folder: Path, *ips: str) -> dict:
    """A CA, and a server certificate for ``ips`` signed by it (a day long, made for this test)."""
    openssl = require_binary("openssl", "openssl")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert, ext = (
        folder / n for n in ("ca.key", "ca.pem", "redis.key", "redis.csr", "redis.pem", "ext")
    )
    # What Python 3.13's strict verification (VERIFY_X509_STRICT, Debian 13) requires of a server
    # certificate: the issuer's key identifier and the key usages, beside the addresses.
    ext.write_text(
        "subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips) + "\n"
        "authorityKeyIdentifier=keyid,issuer\nsubjectKeyIdentifier=hash\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )

    def run(*args):
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca,
        "-days",
        "1",
        "-subj",
        "/CN=portal test CA",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=central redis")
    run(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "1",
        "-extfile",
        ext,
    )
    return {"ca": ca, "cert": cert, "key": key}


class CentralRedis:
    """A redis-server of the test's own: its default user keeps every right (the portal's side),
    each site's agent gets an ACL user. ``prefix`` runs it elsewhere (``ip netns exec central``)."""

    def __init__(self, folder: Path, bind=("127.0.0.1",), tls=None, prefix=()):
        self.binary = require_binary("redis-server", "redis-server")
        self.folder, self.binds, self.tls, self.prefix = folder, list(bind), tls, list(prefix)
        self.bind = self.binds[0]  # where this test process (the portal's side) reaches it
        # The portal's own (default) user has a password, as in docker-compose.yml: Redis then
        # also accepts connections from outside its loopback.
        self.admin_password = uuid.uuid4().hex
        self.port = free_port()
        self.proc = None
        folder.mkdir(parents=True, exist_ok=True)

    def command(self):
        # Append-only with an fsync per write: the sites' waiting messages survive a restart.
        args = [self.binary, "--bind", *self.binds, "--dir", str(self.folder), "--save", "", "--appendonly", "yes"]
        args += ["--appendfsync", "always", "--aclfile", str(self.folder / "users.acl")]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(self.tls["cert"]), "--tls-key-file", str(self.tls["key"])]
            args += ["--tls-ca-cert-file", str(self.tls["ca"])]
        else:
            args += ["--port", str(self.port)]
        return self.prefix + args

    def start(self):
        acl = self.folder / "users.acl"
        if not acl.exists():
            digest = hashlib.sha256(self.admin_password.encode()).hexdigest()
            acl.write_text(f"user default on #{digest} ~* &* +@all\n")
        self.log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.ping, timeout=15, message=f"redis-server on {self.bind}:{self.port}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Redis flushes its append-only file and exits
            self.proc.wait(15)
        if self.proc:
            self.log.close()

    def url(self, user="", password="", host=None):
        auth = f"{user}:{password}@" if user else f":{self.admin_password}@"
        return f"{'rediss' if self.tls else 'redis'}://{auth}{host or self.bind}:{self.port}/0"

    def client(self, user="", password="", host=None):
        extra = {"ssl_ca_certs": str(self.tls["ca"]), "ssl_cert_reqs": ssl.CERT_REQUIRED} if self.tls else {}
        return redis.Redis.from_url(self.url(user, password, host), socket_connect_timeout=1, **extra)

    def ping(self):
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def add_agent(self, slug) -> AgentSetup:
        """The agent's ACL user, as manage.py site_agent_setup makes it, kept in the aclfile."""
        setup = AgentSetup.new(slug)
        client = self.client()
        client.execute_command("ACL", "SETUSER", agent_username(slug), *redis_acl_rules(slug, setup.redis_password))
        client.execute_command("ACL", "SAVE")
        return setup


@pytest.fixture
def central_redis_factory(tmp_path):
    started = []

    def make(**kwargs):
        server = CentralRedis(tmp_path / f"redis-{len(started)}", **kwargs)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


class Agent:
    def __init__(self, proc, log: Path):
        self.proc, self.log = proc, log

    def output(self):
        return self.log.read_text(errors="replace")


@pytest.fixture
def agent_factory(transactional_db, tmp_path):
    """Site agents: `celery worker -Q deployment.<slug>` with the agent's environment, started
    with a prefix (``ip netns exec site-a``) where the test puts the site elsewhere."""
    agents = []

    def start(setup: AgentSetup, broker_url, prefix=(), ca_file="", env=None):
        log = tmp_path / f"agent-{setup.slug}-{uuid.uuid4().hex[:6]}.log"
        environ = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "1",
            "DATABASE_URL": test_database_url(),
            "PORTAL_AGENT_QUEUE": setup.queue,
            "CELERY_BROKER_URL": broker_url,
            "CELERY_BROKER_SSL_CA": str(ca_file),
            **(env or {}),
        }
        command = worker_command(setup.queue)
        command = [*prefix, sys.executable, "-m", *command, "-n", f"agent-{setup.slug}-{uuid.uuid4().hex[:6]}@site"]
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT)
        agent = Agent(proc, log)
        agents.append(agent)
        wait_for(lambda: "ready." in agent.output() or proc.poll() is not None, timeout=30, message="site agent")
        if proc.poll() is not None:
            pytest.fail(f"the site agent exited:\n{agent.output()[-3000:]}", pytrace=False)
        return agent

    yield start
    for agent in agents:
        if agent.proc.poll() is None:
            agent.proc.terminate()
            try:
                agent.proc.wait(15)
            except subprocess.TimeoutExpired:
                agent.proc.kill()
                agent.proc.wait(10)


@pytest.fixture
def portal_broker(monkeypatch):
    """Points the portal's own Celery app (this test process: the web app and beat) at a central
    Redis of the test's, and back afterwards."""
    from portal.celery import app

    before = (app.conf.broker_url, app.conf.broker_use_ssl)

    def forget_pools():
        # kombu keeps one pool per broker in a process-wide registry: closing one without clearing
        # the registry would hand the next test a closed pool.
        kombu.pools.reset()
        app._after_fork()

    def use(url, ca_file=None):
        forget_pools()
        app.conf.broker_url = url
        monkeypatch.setenv("CELERY_BROKER_URL", url)  # Celery reads it before its own setting
        app.conf.broker_use_ssl = (
            {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca_file)} if ca_file else None
        )
        app._after_fork()

    yield use
    forget_pools()
    app.conf.broker_url, app.conf.broker_use_ssl = before


CLONE_NEWNET = 0x40000000


class LoopbackForward:
    """Listens on 127.0.0.1:<port> inside a namespace and forwards each connection to
    127.0.0.1:<port> of this process's own: the suite's PostgreSQL, on this machine's loopback, for
    the agents in the sites' namespaces (the namespaces separate the network, not the database)."""

    def __init__(self, namespace, port):
        self.port = port
        self.listener = self._listen_in(namespace, port)
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _listen_in(namespace, port):
        # setns changes the calling thread only: a short-lived thread makes the listening socket
        # there, and the socket stays in that namespace; this process's other threads do not move.
        libc = ctypes.CDLL(None, use_errno=True)
        made = {}

        def inside():
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {namespace}")
                listener = socket.socket()
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", port))
                listener.listen(64)
                made["socket"] = listener
            except OSError as exc:
                made["error"] = exc
            finally:
                os.close(fd)

        thread = threading.Thread(target=inside)
        thread.start()
        thread.join()
        if "error" in made:
            raise made["error"]
        return made["socket"]

    def _serve(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed: the test is over
            try:
                upstream = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def loopback_database_port():
    """The port of the suite's PostgreSQL when it is on this machine's loopback, else None."""
    from django.db import connection

    db = connection.settings_dict
    if "postgresql" not in db["ENGINE"] or (db["HOST"] or "127.0.0.1") not in ("127.0.0.1", "localhost"):
        return None
    return int(db["PORT"] or 5432)


class Network:
    """Network namespaces joined by veth links, all made by this test and removed after it:

        root (this process: the portal's web and beat) ── central (Redis) ──┬── site a (Orthanc, agent)
                                                                            └── site b (Orthanc, agent)

    Each link is its own /30 of a 10.x.y.0/28 not otherwise used on this machine; nothing routes
    between links, so each site speaks only to the central namespace."""

    def __init__(self):
        self.ip = require_binary("ip", "iproute2")
        self.tag = uuid.uuid4().hex[:6]
        self.namespaces, self.root_links, self.forwards = [], [], []
        self.net = self._free_net()
        self.ns = {name: f"pt{self.tag}{name[0]}" for name in ("central", "a", "b")}
        self.veth = {}  # (from, to) → interface name in "from"
        self.addr = {}  # (from, to) → address of "from" on that link

    def _free_net(self):
        used = subprocess.run([self.ip, "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
        for _ in range(100):
            x, y = uuid.uuid4().bytes[:2]
            net = f"10.{200 + x % 50}.{y}"
            if f" {net}." not in used:
                return net
        pytest.fail("no free 10.x.y.0/28 for the test's links")

    def run(self, *args, ns=None):
        prefix = [self.ip, "netns", "exec", self.ns[ns]] if ns else []
        subprocess.run([*prefix, self.ip, *args], check=True, capture_output=True)

    def prefix(self, name):
        return [self.ip, "netns", "exec", self.ns[name]]

    def build(self):
        for name in ("central", "a", "b"):
            self.run("netns", "add", self.ns[name])
            self.namespaces.append(self.ns[name])
            self.run("link", "set", "lo", "up", ns=name)
        self._link("root", "central", 0)
        self._link("central", "a", 4)
        self._link("central", "b", 8)
        port = loopback_database_port()
        if port is not None:  # the agents reach the suite's PostgreSQL at 127.0.0.1 of their own site
            self.forwards += [LoopbackForward(self.ns[site], port) for site in ("a", "b")]

    def _link(self, left, right, base):
        a, b = f"v{self.tag}{left[0]}{right[0]}", f"v{self.tag}{right[0]}{left[0]}"
        self.run("link", "add", a, "type", "veth", "peer", "name", b)
        if left == "root":
            self.root_links.append(a)
        else:
            self.run("link", "set", a, "netns", self.ns[left])
        self.run("link", "set", b, "netns", self.ns[right])
        for end, name, host in ((left, a, base + 1), (right, b, base + 2)):
            ns = None if end == "root" else end
            self.run("addr", "add", f"{self.net}.{host}/30", "dev", name, ns=ns)
            self.run("link", "set", name, "up", ns=ns)
            self.veth[(end, right if end == left else left)] = name
            self.addr[(end, right if end == left else left)] = f"{self.net}.{host}"

    def cut(self, site):
        """The site's line goes dark at the central end (as a failed uplink would)."""
        self.run("link", "set", self.veth[("central", site)], "down", ns="central")

    def restore(self, site):
        self.run("link", "set", self.veth[("central", site)], "up", ns="central")

    def remove(self):
        for forward in self.forwards:
            forward.close()
        for ns in self.namespaces:
            # Processes the test started there should be gone already; end any left by their pid.
            pids = subprocess.run([self.ip, "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            subprocess.run([self.ip, "netns", "del", ns], capture_output=True)
        for link in self.root_links:  # gone with its peer's namespace; this is in case it was not
            subprocess.run([self.ip, "link", "del", link], capture_output=True)


@pytest.fixture
def network():
    if os.geteuid() != 0:
        pytest.fail("the many-sites tests build network namespaces: run them as root", pytrace=False)
    net = Network()
    try:
        net.build()
        yield net
    finally:
        net.remove()


@pytest.fixture
def postgres_cluster():
    """A throwaway PostgreSQL cluster whose superuser ``portal`` is the central portal's own role."""
    cluster = started_for_test("portal", password=True, prefix="portal-test-agent-pg-")
    try:
        cluster.create_db("portal")
        yield {"port": cluster.port, "password": cluster.password, "url": cluster.url("portal")}
    finally:
        cluster.remove()
