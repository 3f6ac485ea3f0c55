"""A query string no search can hold (a NUL, which PostgreSQL refuses in any text) answers 400
naming the parameter, on every page and API endpoint. Found by the fuzzer on PostgreSQL:
``?station=%00`` on the entries API answered 500."""

import pytest
from django.urls import reverse


@pytest.mark.parametrize(
    "name, query",
    [
        ("api:entry-list", "station=US%00"),
        ("api:patient-list", "q=M%00"),
        ("worklists:index", "q=%00"),
        ("worklists:patient_lookup", "family_name=Ma%00"),
        ("backups:schedule_create", "deployment=%00"),
    ],
)
def test_a_nul_in_a_query_parameter_answers_400_naming_the_parameter(admin_client, name, query):
    response = admin_client.get(f"{reverse(name)}?{query}")

    assert response.status_code == 400
    parameter = query.split("=")[0]
    assert f"'{parameter}'" in response.content.decode() and "U+0000" in response.content.decode()


def test_a_query_string_without_nul_is_read_as_before(admin_client):
    response = admin_client.get(reverse("api:entry-list"), {"station": "US1", "q": "Müller\t"})

    assert response.status_code == 200
