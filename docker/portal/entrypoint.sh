#!/bin/sh
# Entry point of the portal image. Only the web container migrates, before gunicorn starts, so
# worker and beat (which wait for web to be healthy) always find the current schema.
set -eu
if [ "${1:-}" = "gunicorn" ]; then
    python manage.py migrate --noinput
fi
exec "$@"
