"""The MPPS datasets kept for the audit stay within the size limit, their largest values left out
with a note of their size; smaller datasets are kept whole."""

from pydicom.dataset import Dataset

from worklists.interfaces.mpps.datasets import as_json


def _report(comments_bytes):
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepID = "PPS1"
    ds.CommentsOnThePerformedProcedureStep = "x" * comments_bytes
    return ds


def test_a_dataset_within_the_limit_is_kept_whole():
    data, shortened = as_json(_report(100), limit=4096)
    assert not shortened
    assert data["00400280"]["Value"] == ["x" * 100]
    assert data["00400252"]["Value"] == ["COMPLETED"]


def test_a_dataset_past_the_limit_loses_its_largest_value_and_keeps_the_rest():
    import json

    data, shortened = as_json(_report(1000), limit=600)
    assert shortened
    assert len(json.dumps(data)) <= 600
    assert data["00400280"] == {
        "vr": "ST",
        "omitted": f"{len(json.dumps({'vr': 'ST', 'Value': ['x' * 1000]}))} bytes",
    }
    assert data["00400252"]["Value"] == ["COMPLETED"] and data["00400253"]["Value"] == ["PPS1"]
