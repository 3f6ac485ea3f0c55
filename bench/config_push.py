"""Benchmark: from a saved change to Orthanc serving the new configuration.

A real Orthanc (Debian package), Redis and a Celery worker on the deployment's queue. Each
round changes a setting, records the revision as the settings page does, and measures until
Orthanc answers with the new configuration (the push's own probe). Goal: p95 under 5 s.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, setup_django, start_redis, start_worker, summary  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 20))


def main():
    var = setup_django("config-push")
    redis_proc, broker = start_redis(var)
    os.environ["CELERY_BROKER_URL"] = broker
    from django.conf import settings

    settings.CELERY_BROKER_URL = broker
    from portal.celery import app

    app.conf.broker_url = broker

    from django.db import transaction

    from deployments.demo import local_deployment, make_folders
    from deployments.models import ConfigRevision
    from deployments.orthanc import OrthancClient, OrthancError
    from deployments.push import deployment_push, revision_create
    from deployments.render import probe_of
    from deployments.service import service_for

    deployment = local_deployment(var / "orthanc", name="Bench clinic", slug="bench")
    deployment.save()
    make_folders(deployment)
    # The first configuration, written and started directly.
    revision_create(deployment, reason="initial")
    service = service_for(deployment)
    from deployments.push import write_files

    write_files(Path(deployment.config_dir), deployment.revisions.get().files)
    service.start()
    deployment_push(deployment.pk)
    worker = start_worker([deployment.queue], broker, var / "worker.log")
    client = OrthancClient.for_deployment(deployment, timeout=2)
    times = []
    try:
        for n in range(ROUNDS):
            deployment.limit_find_results = 200 + n
            started = time.monotonic()
            with transaction.atomic():
                deployment.save()
                revision = revision_create(deployment, reason=f"bench {n}")
            probe = probe_of(revision.files)
            while True:
                try:
                    client.request("GET", "/system", headers={"X-Portal-Probe": probe})
                    break
                except OrthancError:
                    time.sleep(0.02)
                if time.monotonic() - started > 60:
                    raise SystemExit(f"round {n}: Orthanc did not serve the new configuration in 60 s")
            times.append(time.monotonic() - started)
            while not ConfigRevision.objects.filter(pk=revision.pk, state="applied").exists():
                time.sleep(0.02)  # let the worker record it before the next save
        summary(f"config push, save -> Orthanc serving it ({ROUNDS} pushes, worker over Redis)", times)
        print(f"goal: p95 under 5000 ms -> {'met' if percentile(times, 95) < 5 else 'NOT met'}")
    finally:
        worker.terminate()
        worker.wait(20)
        service.stop()
        redis_proc.terminate()


if __name__ == "__main__":
    main()
