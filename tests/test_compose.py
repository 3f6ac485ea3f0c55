"""docker-compose.yml, read as data: no Docker engine runs here, so these tests check what the
engine would be given — env names against what portal/settings.py reads, the volumes the worker
writes against the paths Orthanc reads, pinned images, published ports, one beat, the nginx front
— and run ``manage.py check --deploy`` with the environment the web container would get."""

import ast
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml
from cryptography.fernet import Fernet

from deployments.models import Deployment
from deployments.render import LUA_FILE, PLUGINS, render_deployment
from deployments.service import CommandService, service_for
from deployments.versions import DOCKER_IMAGE, DOCKER_IMAGE_ORTHANC, VULNERABILITIES, OrthancVersion, label
from portal.celery import deployment_queue
from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SETTINGS = ROOT / "portal" / "settings.py"
PORTAL_SERVICES = ("web", "worker", "beat", "hl7")
INTERNAL_SERVICES = ("orthanc", "postgres", "redis")
REQUIRED_IN_PRODUCTION = {"SECRET_KEY", "FIELD_ENCRYPTION_KEY"}
ENV_METHODS = {"str", "bool", "int", "float", "list", "tuple", "dict", "json", "url", "db", "db_url", "email_url",
               "cache", "cache_url", "search_url", "path", "get_value", "bytes"}  # fmt: skip


# ---------------------------------------------------------------- reading the files


def compose():
    return yaml.safe_load(COMPOSE.read_text())


def services():
    return compose()["services"]


def read_env_file(path):
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    values = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        values[key.strip()] = value.strip().strip("'\"")
    return values


def example_env():
    return read_env_file(ENV_EXAMPLE)


_VAR = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text, env):
    """Docker Compose's ${VAR}, ${VAR:-default}, ${VAR:?error}, $VAR and $$ substitution."""

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        value, op, arg = env.get(name), m.group("op") or "", m.group("arg") or ""
        unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return arg if unset else value
        if op.endswith("?"):
            assert not unset, f"compose would stop: {name} is not set ({arg})"
            return value
        if op.endswith("+"):
            return "" if unset else arg
        return value or ""

    return _VAR.sub(sub, text)


def compose_variables():
    """Every variable docker-compose.yml takes from .env."""
    return {m.group("braced") or m.group("bare") for m in _VAR.finditer(COMPOSE.read_text()) if m.group(0) != "$$"}


def environment_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def env_file_names(service):
    """Keys of the service's env_file(s); .env is never committed, .env.example stands in for it."""
    files = service.get("env_file") or []
    if isinstance(files, str | dict):
        files = [files]
    names = set()
    for item in files:
        path = item["path"] if isinstance(item, dict) else item
        path = ROOT / path
        if path.name == ".env":
            path = ENV_EXAMPLE
        names |= set(read_env_file(path))
    return names


def settings_env_names(source=None):
    """Environment names portal/settings.py reads, found in its syntax tree.

    Covers env("X"), env.<method>("X", ...), environ.Env().<method>("X"), keyword names of
    environ.Env(...), os.environ / os.getenv, and helpers that pass their parameter on to env
    (``_secret("SECRET_KEY", ...)``)."""
    tree = ast.parse(source if source is not None else SETTINGS.read_text())
    env_objects = {"env"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_env_constructor(node.value):
            env_objects |= {t.id for t in node.targets if isinstance(t, ast.Name)}

    def env_call_arg(call):
        """The first argument of a call that reads the environment, or None."""
        f = call.func
        reads = (
            (isinstance(f, ast.Name) and f.id in env_objects)
            or (isinstance(f, ast.Attribute) and f.attr in ENV_METHODS and _is_env_object(f.value, env_objects))
            or (isinstance(f, ast.Attribute) and f.attr == "getenv" and _dotted(f.value) == "os")
            or (isinstance(f, ast.Attribute) and f.attr in {"get", "setdefault"} and _dotted(f.value) == "os.environ")
        )
        return call.args[0] if reads and call.args else None

    names = set()
    helpers = {}  # function name -> index of the parameter it reads from the environment
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            arg = env_call_arg(node)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            if _is_env_constructor(node):
                names |= {kw.arg for kw in node.keywords if kw.arg}
        elif isinstance(node, ast.Subscript) and _dotted(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant):
                names.add(node.slice.value)
        elif isinstance(node, ast.FunctionDef):
            params = [a.arg for a in node.args.args]
            for inner in ast.walk(node):
                if isinstance(inner, ast.Call):
                    arg = env_call_arg(inner)
                    if isinstance(arg, ast.Name) and arg.id in params:
                        helpers[node.name] = params.index(arg.id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers:
            index = helpers[node.func.id]
            if len(node.args) > index and isinstance(node.args[index], ast.Constant):
                names.add(node.args[index].value)
    return names


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_env_constructor(node):
    return isinstance(node, ast.Call) and _dotted(node.func) in {"environ.Env", "Env"}


def _is_env_object(node, env_objects):
    return (
        (isinstance(node, ast.Name) and node.id in env_objects)
        or _is_env_constructor(node)
        or _dotted(node) == "environ.Env"
    )


def settings_literal(name):
    """The literal value assigned to a setting in settings.py, whatever branch assigns it."""
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"settings.py never assigns {name}")


def mounts(service):
    """{container path: (volume or host path, read_only)} of a service."""
    result = {}
    for item in service.get("volumes") or []:
        if isinstance(item, dict):
            result[item["target"]] = (item["source"], bool(item.get("read_only")))
        else:
            parts = item.split(":")
            source, target = parts[0], parts[1]
            result[target] = (source, len(parts) > 2 and "ro" in parts[2].split(","))
    return result


def volume_at(service, path):
    """(volume, read_only) of the mount holding ``path`` in the service (the deepest one)."""
    path = PurePosixPath(path)
    best = None
    for target, (source, ro) in mounts(service).items():
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            if best is None or len(target) > len(best[0]):
                best = (target, source, ro)
    return (best[1], best[2]) if best else (None, None)


def published_ports(service):
    targets = set()
    for item in service.get("ports") or []:
        if isinstance(item, dict):
            targets.add(int(item["target"]))
        else:
            targets.add(int(str(item).rsplit(":", 1)[-1].split("/")[0]))
    return targets


def nginx_conf():
    service = services()["nginx"]
    confs = [
        ROOT / source
        for target, (source, _) in mounts(service).items()
        if target == "/etc/nginx/nginx.conf" or (target.startswith("/etc/nginx/conf.d/") and target.endswith(".conf"))
    ]
    assert confs, "the nginx service mounts no configuration file from the repository"
    text = "\n".join(p.read_text() for p in confs)
    return re.sub(r"#.*", "", text)


# ---------------------------------------------------------------- (a) environment names


def test_the_settings_parser_finds_every_way_of_reading_the_environment():
    source = """
import os, environ
VAR = environ.Env().str("A", default="x")
env = environ.Env(B=(bool, False), C=(list, []))
other = environ.Env()
def _secret(name, make):
    return env.str(name, default="")
D = env("D"); E = env.int("E", default=1); F = env.db("F"); G = env.email_url("G"); H = other.bool("H")
I = _secret("I", None); J = os.environ.get("J"); K = os.getenv("K"); L = os.environ["L"]
M = {"m": env.float("M", default=1.0)}
"""
    assert settings_env_names(source) == set("ABCDEFGHIJKLM")


def test_every_env_name_a_portal_service_sets_is_read_by_the_settings():
    read = settings_env_names()
    # A sanity check of the parser itself: names the settings are known to read.
    assert {"DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DATABASE_URL", "EMAIL_URL", "PORTAL_VAR_DIR"} <= read
    for name in PORTAL_SERVICES:
        service = services()[name]
        set_names = set(environment_of(service)) | env_file_names(service)
        unread = sorted(set_names - read)
        assert not unread, f"{name} sets {unread}, which portal/settings.py never reads"


def test_every_name_the_settings_require_in_production_is_provided():
    for name in PORTAL_SERVICES:
        service = services()[name]
        env = environment_of(service)
        provided = set(env) | env_file_names(service)
        assert REQUIRED_IN_PRODUCTION <= provided, f"{name} lacks {REQUIRED_IN_PRODUCTION - provided}"
        # Production: DEBUG explicitly off, and the secrets come from .env, not from the file.
        assert env.get("DEBUG", "").lower() in {"0", "false", "off", "no"}, f"{name} must set DEBUG off"
        for secret in REQUIRED_IN_PRODUCTION:
            assert env.get(secret, "").startswith("${"), f"{name}: {secret} must come from .env"


def test_the_web_container_gets_the_production_settings_from_the_env_file():
    env = interpolate_service_env("web")
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["CELERY_BROKER_URL"].startswith("redis://") and "@redis:6379/" in env["CELERY_BROKER_URL"]
    for name in ("ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "EMAIL_URL"):
        assert env[name], f"{name} is empty"
    assert all(origin.startswith("https://") for origin in env["CSRF_TRUSTED_ORIGINS"].split(","))


def test_env_example_documents_every_compose_variable_with_a_placeholder():
    documented = example_env()
    used = compose_variables()
    assert not used - set(documented), f".env.example lacks {sorted(used - set(documented))}"
    assert not set(documented) - used, f".env.example documents unused {sorted(set(documented) - used)}"
    for name in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        assert "CHANGE_ME" in documented[name], f"{name} in .env.example must be a placeholder"
    assert "CHANGE_ME" in documented["EMAIL_URL"]
    assert ".env" in (ROOT / ".gitignore").read_text().split(), ".env must stay out of git"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and "secrets/" in ignored, "secrets must stay out of the image"


def interpolate_service_env(name):
    return {k: interpolate(v, example_env()) for k, v in environment_of(services()[name]).items()}


# ---------------------------------------------------------------- (b) shared volumes


@pytest.fixture
def rendered():
    fields = json.loads((ROOT / "docker" / "deployment.example.json").read_text())
    fields.pop("_comment", None)
    deployment = Deployment(**fields, service_password="example")  # noqa: S106
    plugins_dir = environment_of(services()["worker"])["ORTHANC_PLUGINS_DIR"]
    files = render_deployment(deployment, plugins_dir=plugins_dir)
    return deployment, json.loads(files["orthanc.json"])


def test_the_worker_writes_the_volumes_orthanc_reads_at_the_rendered_paths(rendered):
    deployment, config = rendered
    worker, orthanc = services()["worker"], services()["orthanc"]
    # Orthanc runs on its configuration folder (the single argument of the image's entry point).
    command = orthanc["command"]
    assert PurePosixPath(command[-1]) == PurePosixPath(deployment.config_dir), command
    for path in (deployment.config_dir, config["Worklists"]["Database"]):
        written, worker_ro = volume_at(worker, path)
        read, _ = volume_at(orthanc, path)
        assert written and written in compose()["volumes"], f"the worker has no named volume at {path}"
        assert not worker_ro, f"the worker mounts {path} read-only"
        assert read == written, f"at {path} the worker writes {written} but Orthanc reads {read}"
    assert config["Worklists"]["Database"] == deployment.worklists_dir
    # The Lua filter sits in the configuration volume; storage and index on Orthanc's own volume.
    for lua in config["LuaScripts"]:
        assert volume_at(orthanc, lua)[0] == volume_at(orthanc, deployment.config_dir)[0], lua
    for key in ("StorageDirectory", "IndexDirectory"):
        volume, ro = volume_at(orthanc, config[key])
        assert volume in compose()["volumes"] and not ro, f"{key} {config[key]} is not on a writable volume"
    assert config["LuaScripts"] == [f"{deployment.config_dir}/{LUA_FILE}"]


def test_the_rendered_deployment_matches_the_compose_services(rendered):
    deployment, config = rendered
    worker_cmd = interpolate(" ".join(services()["worker"]["command"]), example_env())
    slug = example_env()["DEPLOYMENT_SLUG"]
    assert deployment.slug == slug, "docker/deployment.example.json and .env.example disagree on the slug"
    queues = re.search(r"(?:-Q|--queues)[= ](\S+)", worker_cmd).group(1)
    assert set(queues.split(",")) == {"portal", deployment_queue(slug)}
    assert deployment.orthanc_url == f"http://orthanc:{config['HttpPort']}"
    assert config["RemoteAccessAllowed"] and config["AuthenticationEnabled"]
    # DICOM reaches Orthanc through nginx: every peer would have nginx's address.
    assert config["DicomCheckModalityHost"] is False
    assert f"server orthanc:{config['DicomPort']};" in nginx_conf()
    # The portal's worklist server runs in the image's Python plugin; its script is in the config volume.
    assert config["Plugins"] == [f"/usr/share/orthanc/plugins-available/{PLUGINS['python']}"]
    assert (
        volume_at(services()["orthanc"], config["PythonScript"])[0]
        == volume_at(services()["orthanc"], deployment.config_dir)[0]
    )


def test_the_deployment_start_command_checks_the_configuration_the_container_waits_for(rendered, tmp_path):
    deployment, _ = rendered
    service = service_for(deployment)
    assert isinstance(service, CommandService)
    wait_script = (ROOT / "docker" / "orthanc" / "wait-for-config.sh").read_text()
    assert 'orthanc.json"' in wait_script and "exec /docker-entrypoint.sh" in wait_script
    # The image copies the repository to /app (Dockerfile WORKDIR + COPY . .).
    start = [str(ROOT / PurePosixPath(service.start_argv[0]).relative_to("/app")), str(tmp_path)]
    stop = [str(ROOT / PurePosixPath(service.stop_argv[0]).relative_to("/app"))]
    assert service.start_argv[1:] == [deployment.config_dir]
    missing = subprocess.run(start, capture_output=True, text=True)
    assert missing.returncode == 1 and "orthanc.json is missing" in missing.stderr
    (tmp_path / "orthanc.json").write_text("{}")
    assert subprocess.run(start, capture_output=True).returncode == 0
    refused = subprocess.run(stop, capture_output=True, text=True)
    assert refused.returncode == 1 and "docker compose stop orthanc" in refused.stderr


# ---------------------------------------------------------------- (c) images, (d) ports, (e) beat


def test_every_image_is_pinned_to_a_tag():
    for name, service in services().items():
        image = service.get("image")
        assert image, f"{name} has no image (a built service still needs a tagged name)"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag and tag, f"{name}: {image} has no tag"
        assert tag != "latest" and "$" not in tag, f"{name}: {image} is not pinned"
    assert services()["orthanc"]["image"].startswith("orthancteam/orthanc:")
    base = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base and all(":" in b and not b.endswith(":latest") for b in base), base
    assert base[-1].startswith("python:3.11") and "slim" in base[-1]


def test_the_orthanc_image_is_the_one_the_audit_recommends_and_carries_every_published_fix():
    # The tag's Orthanc was read in orthanc-builder's release notes (versions.DOCKER_IMAGE_ORTHANC).
    assert services()["orthanc"]["image"] == DOCKER_IMAGE
    assert all(DOCKER_IMAGE_ORTHANC >= v.fixed_in for v in VULNERABILITIES)
    assert not OrthancVersion.of(label(DOCKER_IMAGE_ORTHANC)).vulnerabilities()


def test_only_nginx_publishes_ports():
    for name in INTERNAL_SERVICES:
        service = services()[name]
        assert not service.get("ports"), f"{name} publishes {service['ports']}"
        networks = service.get("networks") or ["default"]
        for network in networks:
            assert (compose().get("networks") or {}).get(network, {}).get("internal"), (
                f"{name} is on {network}, which is not internal"
            )
    for name in PORTAL_SERVICES:
        assert not services()[name].get("ports"), f"{name} publishes ports; nginx is the only front"
    assert {80, 443} <= published_ports(services()["nginx"])


def test_there_is_exactly_one_beat_with_the_database_scheduler():
    beats = [
        (name, s)
        for name, s in services().items()
        if "beat" in (s.get("command") if isinstance(s.get("command"), list) else str(s.get("command", "")).split())
    ]
    assert len(beats) == 1, f"beat services: {[n for n, _ in beats]}"
    name, beat = beats[0]
    assert (beat.get("deploy") or {}).get("replicas", 1) == 1
    assert "scale" not in beat
    command = " ".join(beat["command"])
    assert "django_celery_beat.schedulers:DatabaseScheduler" in command or (
        settings_literal("CELERY_BEAT_SCHEDULER") == "django_celery_beat.schedulers:DatabaseScheduler"
    )
    assert "worker" not in beat["command"]
    redis = " ".join(services()["redis"]["command"])
    assert "--appendonly yes" in redis


def test_every_service_has_a_healthcheck_and_web_checks_healthz():
    for name, service in services().items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    test = services()["web"]["healthcheck"]["test"]
    script = ROOT / "docker" / "portal" / PurePosixPath(test[-1]).name
    assert "/healthz" in script.read_text()
    for path in ("docker/portal/entrypoint.sh", "docker/orthanc/wait-for-config.sh"):
        assert os.access(ROOT / path, os.X_OK), f"{path} is not executable"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile and "collectstatic" in dockerfile
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in {"root", "0"}, "the portal image must not run as root"


# ---------------------------------------------------------------- (f) nginx


def test_nginx_redirects_to_https_and_proxies_web_with_the_forwarded_proto_header():
    conf = nginx_conf()
    header, value = settings_literal("SECURE_PROXY_SSL_HEADER")
    assert (header, value) == ("HTTP_X_FORWARDED_PROTO", "https")
    nginx_header = header.removeprefix("HTTP_").replace("_", "-")
    assert re.search(rf"proxy_set_header\s+{nginx_header}\s+\$scheme;", conf, re.I), conf
    assert re.search(r"server\s+web:8000;", conf) and "proxy_pass http://portal_web" in conf
    assert re.search(r"listen\s+443\s+ssl", conf) and re.search(r"return\s+301\s+https://", conf)
    # The certificate comes from the mounted secrets folder.
    cert_dir = next(t for t, (s, _) in mounts(services()["nginx"]).items() if "secrets" in s)
    assert re.search(rf"ssl_certificate\s+{re.escape(cert_dir)}/", conf)
    assert re.search(rf"ssl_certificate_key\s+{re.escape(cert_dir)}/", conf)
    # Orthanc's REST API only through the proxy, with the client's Authorization passed on.
    orthanc = re.search(r"location\s+/orthanc/\s*\{([^}]*)\}", conf)
    assert orthanc and "proxy_pass http://orthanc_rest/" in orthanc.group(1)
    assert re.search(r"proxy_set_header\s+Authorization\s+\$http_authorization;", orthanc.group(1))
    assert re.search(r"server\s+orthanc:8042;", conf)


# ---------------------------------------------------------------- check --deploy


def production_env(tmp_path):
    """The web container's environment from .env.example, with real secrets and a SQLite file."""
    env = interpolate_service_env("web")
    env.update(
        SECRET_KEY=secrets.token_urlsafe(60),
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        PORTAL_VAR_DIR=str(tmp_path / "var"),
        STATIC_ROOT=str(tmp_path / "static"),
        DJANGO_SETTINGS_MODULE="portal.settings",
        PATH=os.environ["PATH"],
    )
    assert env["DEBUG"] == "0"
    return env  # only the container's environment: nothing inherited from the test run


def manage(env, *args):
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_check_deploy_with_the_env_example_values_reports_no_issues(tmp_path):
    output = manage(production_env(tmp_path), "check", "--deploy")
    assert "System check identified no issues" in output, output
    assert "WARNING" not in output.upper(), output


def test_gunicorn_with_the_production_env_passes_the_healthcheck_and_trusts_only_the_proxy_scheme(tmp_path):
    env = production_env(tmp_path)
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")
    port = free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log = open(tmp_path / "gunicorn.log", "wb")  # closed in finally
    server = subprocess.Popen(
        [str(gunicorn), "portal.wsgi:application", "--config", "docker/portal/gunicorn.conf.py"]
        + ["--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        check = [sys.executable, str(ROOT / "docker" / "portal" / "healthcheck.py"), str(port)]
        try:
            wait_for(lambda: subprocess.run(check, env=env, capture_output=True).returncode == 0, timeout=30,
                     message="the web healthcheck to pass")  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{(tmp_path / 'gunicorn.log').read_text()}") from None
        host = env["ALLOWED_HOSTS"].split(",")[0]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        # Plain HTTP without the proxy's header: Django sends the browser to HTTPS.
        conn.request("GET", "/accounts/login/", headers={"Host": host})
        response = conn.getresponse()
        response.read()
        assert response.status == 301 and response.getheader("Location", "").startswith(f"https://{host}/")
        # What nginx sends: X-Forwarded-Proto https, and Django serves the page with HSTS.
        conn.request("GET", "/", headers={"Host": host, "X-Forwarded-Proto": "https"})
        response = conn.getresponse()
        response.read()
        assert response.status in (200, 302), response.status
        assert "max-age=" in (response.getheader("Strict-Transport-Security") or "")
        conn.close()
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()


# ---------------------------------------------------------------- the image


def dockerfile_instructions():
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_image_sets_only_env_names_the_settings_read_and_gunicorn_listens_where_nginx_sends():
    names = set()
    for line in dockerfile_instructions():
        if line.startswith("ENV "):
            names |= set(re.findall(r"(\w+)=", line))
    portal_names = {n for n in names if not n.startswith(("PYTHON", "PIP_"))}
    assert portal_names <= settings_env_names(), portal_names - settings_env_names()
    gunicorn = (ROOT / "docker" / "portal" / "gunicorn.conf.py").read_text()
    assert 'bind = "0.0.0.0:8000"' in gunicorn and re.search(r"server\s+web:8000;", nginx_conf())


def test_the_collectstatic_step_of_the_dockerfile_runs(tmp_path):
    """The build's collectstatic, with the throwaway environment the Dockerfile gives it."""
    run = next(line for line in dockerfile_instructions() if "collectstatic" in line)
    build_env = dict(re.findall(r"(\w+)=(\S+)", run.split("python manage.py collectstatic")[0]))
    assert build_env["DEBUG"] == "0"
    env = {
        **build_env,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'build.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "static"),
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PATH": os.environ["PATH"],
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The manifest whitenoise serves from in production (DEBUG off).
    assert (tmp_path / "static" / "staticfiles.json").exists()
