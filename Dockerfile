# The portal image: web (gunicorn), worker and beat (celery) all run from it (docker-compose.yml).
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORTAL_VAR_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles

# ssh + rsync: backup jobs run by the worker; curl-free healthchecks use Python.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends openssh-client rsync \
    && rm -rf /var/lib/apt/lists/*

# uid/gid 999 = the "orthanc" user of the orthancteam/orthanc image, so both containers agree on
# who owns the shared configuration and worklist volumes.
RUN groupadd --system --gid 999 portal \
    && useradd --system --uid 999 --gid portal --home-dir /app --shell /usr/sbin/nologin portal

WORKDIR /app
COPY requirements.txt .
RUN pip install --requirement requirements.txt

COPY . .
# collectstatic needs importable production settings; these throwaway values never reach runtime.
RUN DEBUG=0 \
    SECRET_KEY=collectstatic-only-not-a-secret-collectstatic-only-not-a-secret \
    FIELD_ENCRYPTION_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
    python manage.py collectstatic --noinput \
    && rm -f /tmp/collectstatic.sqlite3

# Mount points of the volumes shared with Orthanc, created here owned by the portal user so a
# fresh named volume starts with that ownership (Docker copies it from the first image mounting it).
RUN mkdir -p /app/var /etc/orthanc /var/lib/orthanc/worklists \
    && chown portal:portal /app/var /etc/orthanc /var/lib/orthanc/worklists \
    && chmod 0755 /etc/orthanc /var/lib/orthanc/worklists

USER portal
EXPOSE 8000
ENTRYPOINT ["/app/docker/portal/entrypoint.sh"]
CMD ["gunicorn", "portal.wsgi:application", "--config", "/app/docker/portal/gunicorn.conf.py"]
