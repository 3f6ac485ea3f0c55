#!/bin/bash
# Entry point of the orthanc container: wait until the portal's worker has rendered the
# configuration into the shared volume, then hand over to the image's own entry point.
#
# Orthanc is started on the configuration FOLDER (the argument, /etc/orthanc/), not on the
# /tmp/orthanc.json the image generates: POST /tools/reset re-reads its start-up path, so this is
# what makes a portal push take effect without restarting the container.
set -euo pipefail
config_dir="${1:?usage: wait-for-config.sh /etc/orthanc/}"
until [ -s "${config_dir%/}/orthanc.json" ]; do
    echo "waiting for the portal to render ${config_dir%/}/orthanc.json (push the deployment)" >&2
    sleep 1
done
exec /docker-entrypoint.sh "$@"
