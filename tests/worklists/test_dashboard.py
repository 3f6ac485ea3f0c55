"""The dashboard line and the deployment page's worklist panel."""

import datetime
from pathlib import Path

from django.template.loader import render_to_string
from django.utils import timezone

from tests.worklists.conftest import make_entry
from worklists.dashboard import deployment_panel_context, summary
from worklists.sync import worklist_sync


def test_the_dashboard_line_counts_today_in_the_list_and_pending(wl_deployment):
    make_entry(wl_deployment)
    make_entry(wl_deployment)
    worklist_sync(wl_deployment.pk)
    make_entry(wl_deployment)
    make_entry(wl_deployment, status="CANCELLED")

    assert summary(wl_deployment) == "3 scheduled today, 2 in the machines' list, 1 pending"


def test_the_panel_warns_about_too_many_files_foreign_files_and_a_station_that_misreads(wl_deployment, settings):
    settings.WORKLISTS_FOLDER_WARN_FILES = 2
    folder = Path(wl_deployment.worklist_folder)
    (folder / "ris-1.wl").write_bytes(b"x")
    for _ in range(2):
        make_entry(wl_deployment)
    worklist_sync(wl_deployment.pk)
    # Forced to UTF-8 while US2 shows only Latin-1: US2 would show MÃ¼ller.
    wl_deployment.default_encoding = "Utf8"

    context = deployment_panel_context(wl_deployment)
    html = render_to_string("worklists/_deployment_panel.html", context)

    assert context["worklist_files"] == 3 and context["worklist_too_many"]
    assert context["worklist_foreign"] == ["ris-1.wl"]
    assert 'id="worklist-too-many"' in html and "ris-1.wl" in html
    assert 'id="worklist-encoding"' in html and "US2 receives UTF-8 answers, which a Latin-1 machine misreads" in html
    wl_deployment.default_encoding = "auto"
    html = render_to_string("worklists/_deployment_panel.html", deployment_panel_context(wl_deployment))
    assert 'id="worklist-encoding"' not in html
    assert "Answers leave in Latin-1: this deployment sends Latin-1 because US2 shows only Latin-1." in html
    assert "US1 receives Latin-1 answers: names for it are limited to Latin-1 letters" in html


def test_an_entry_whose_images_arrived_counts_neither_in_the_list_nor_pending(wl_deployment):
    make_entry(wl_deployment)
    make_entry(wl_deployment, status="IN_PROGRESS", study_arrived_at=timezone.now() - datetime.timedelta(minutes=1))
    worklist_sync(wl_deployment.pk)

    assert summary(wl_deployment) == "2 scheduled today, 1 in the machines' list, 0 pending"
