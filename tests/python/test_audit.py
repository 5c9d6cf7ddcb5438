"""Audit records of calls made with the Databricks Python SDK, read back
through the query API and the storage account, as an admin would."""
import base64
import json
import time

import pytest
from databricks.sdk.errors import InvalidParameterValue


def _records(w, **query):
    out, token = [], None
    while True:
        q = dict(query)
        if token:
            q["page_token"] = token
        page = w.api_client.do("GET", "/api/2.0/tandem/audit/records", query=q)
        out += page["records"]
        token = page.get("next_page_token")
        if not token:
            return out


def _wait_for(fn, timeout=20):
    deadline = time.time() + timeout
    while True:
        got = fn()
        if got or time.time() > deadline:
            return got
        time.sleep(0.2)


def test_sdk_calls_are_answerable_and_delivered_in_azure_form(tandem):
    w = tandem.client()
    w.api_client.do("PUT", "/api/2.0/tandem/diagnostic-settings/files", body={
        "logs": [{"category": "accounts", "enabled": True}], "storage_account": {}})
    u = w.users.create(user_name="audited@example.com")

    recs = _wait_for(lambda: _records(w, operation_name="Microsoft.Databricks/accounts/add", q="audited@example.com"))
    assert len(recs) == 1
    r = recs[0]
    assert r["identity"] == {"email": "admin@tandem.local", "subjectName": None}
    assert r["properties"]["requestParams"]["userName"] == "audited@example.com"
    assert u.id in r["properties"]["response"]["result"]
    assert "databricks-sdk-py" in r["properties"]["userAgent"]

    # The storage account holds the same record in Azure's wire form. It
    # encrypts what it holds, so read it as its admin does, through the
    # storage API.
    def read_blob(name):
        data, offset = b"", 0
        while True:
            got = w.api_client.do("GET", "/api/2.0/tandem/storage/objects/read",
                                  query={"name": name, "offset": offset, "length": 1 << 20})
            chunk = base64.b64decode(got["data"])
            data += chunk
            offset += len(chunk)
            if len(chunk) < (1 << 20):
                return data

    def on_disk():
        listing = w.api_client.do("GET", "/api/2.0/tandem/storage/objects/list", query={"prefix": "insights-logs-accounts/"})
        for obj in listing["objects"]:
            if not obj["name"].endswith("PT1H.json"):
                continue
            for line in read_blob(obj["name"]).decode().splitlines():
                rec = json.loads(line)
                if rec["properties"]["logId"] == r["properties"]["logId"]:
                    return rec
    wire = _wait_for(on_disk)
    assert wire, "record not delivered to the storage account"
    assert json.loads(wire["identity"])["email"] == "admin@tandem.local"
    assert json.loads(wire["properties"]["requestParams"])["userName"] == "audited@example.com"

    with pytest.raises(InvalidParameterValue):
        w.api_client.do("GET", "/api/2.0/tandem/audit/records", query={"start_time": "yesterday"})
