"""Secrets and global init scripts through the Databricks Python SDK, and
secrets through the legacy databricks-cli 0.18 as a user types it."""
import base64
import json
import os
import uuid

import pytest
from databricks.sdk.errors import (BadRequest, InvalidParameterValue, NotFound, PermissionDenied,
                                   ResourceAlreadyExists)
from databricks.sdk.service.workspace import AclPermission, ScopeBackendType


def _b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def _second_principal(tandem, w, name):
    """A non-admin service principal and a token for it (token management
    on behalf of a service principal, as an admin does it on Databricks)."""
    sp = w.service_principals.create(display_name=name)
    tok = w.token_management.create_obo_token(application_id=sp.application_id, comment=name)
    return sp, tandem.client(token=tok.token_value)


def _journal_and_log(tandem):
    """Everything the region wrote to its audit journal and its log."""
    data = b""
    for root, _, files in os.walk(os.path.join(tandem.data_dir, "audit", "journal")):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                data += fh.read()
    tandem.log.flush()
    with open(tandem.log.name, "rb") as fh:
        return data, fh.read()


def test_python_sdk_secrets_with_a_second_principal(tandem):
    w = tandem.client()
    w.secrets.create_scope("py-scope")
    with pytest.raises(ResourceAlreadyExists):
        w.secrets.create_scope("py-scope")
    w.secrets.put_secret("py-scope", "k", string_value="v1")
    w.secrets.put_secret("py-scope", "raw", bytes_value=_b64(b"\x00\xff"))
    assert base64.b64decode(w.secrets.get_secret("py-scope", "k").value) == b"v1"
    assert base64.b64decode(w.secrets.get_secret("py-scope", "raw").value) == b"\x00\xff"
    listed = list(w.secrets.list_secrets("py-scope"))
    assert [s.key for s in listed] == ["k", "raw"]
    assert all(s.last_updated_timestamp > 0 for s in listed)
    assert "py-scope" in [s.name for s in w.secrets.list_scopes()]

    sp, other = _second_principal(tandem, w, "py-secrets-robot")
    # Scope names are visible to every principal; contents are not.
    assert "py-scope" in [s.name for s in other.secrets.list_scopes()]
    with pytest.raises(PermissionDenied):
        list(other.secrets.list_secrets("py-scope"))
    with pytest.raises(PermissionDenied):
        other.secrets.get_secret("py-scope", "k")

    w.secrets.put_acl("py-scope", sp.application_id, AclPermission.READ)
    assert w.secrets.get_acl("py-scope", sp.application_id).permission == AclPermission.READ
    assert base64.b64decode(other.secrets.get_secret("py-scope", "k").value) == b"v1"
    with pytest.raises(PermissionDenied):
        other.secrets.put_secret("py-scope", "k", string_value="nope")

    w.secrets.put_acl("py-scope", sp.application_id, AclPermission.WRITE)
    other.secrets.put_secret("py-scope", "k", string_value="v2")
    other.secrets.delete_secret("py-scope", "raw")
    with pytest.raises(PermissionDenied):
        list(other.secrets.list_acls("py-scope"))
    with pytest.raises(PermissionDenied):
        other.secrets.delete_scope("py-scope")

    w.secrets.put_acl("py-scope", sp.application_id, AclPermission.MANAGE)
    acls = {a.principal: a.permission for a in other.secrets.list_acls("py-scope")}
    assert acls == {"admin@tandem.local": AclPermission.MANAGE, sp.application_id: AclPermission.MANAGE}

    w.secrets.delete_acl("py-scope", sp.application_id)
    with pytest.raises(NotFound):
        w.secrets.get_acl("py-scope", sp.application_id)
    with pytest.raises(PermissionDenied):
        other.secrets.get_secret("py-scope", "k")

    with pytest.raises(InvalidParameterValue):
        w.secrets.put_acl("py-scope", "nobody@example.com", AclPermission.READ)
    with pytest.raises(InvalidParameterValue):
        w.secrets.create_scope("bad scope")
    with pytest.raises(BadRequest):
        w.secrets.put_secret("py-scope", "k")  # neither string nor bytes
    with pytest.raises(InvalidParameterValue) as e:
        w.secrets.create_scope("kv", scope_backend_type=ScopeBackendType.AZURE_KEYVAULT)
    assert "not available yet" in str(e.value)
    with pytest.raises(NotFound):
        w.secrets.get_secret("py-scope", "missing")

    w.secrets.delete_secret("py-scope", "k")
    w.secrets.delete_scope("py-scope")
    with pytest.raises(NotFound):
        list(w.secrets.list_secrets("py-scope"))


def test_legacy_cli_secrets(tandem):
    w = tandem.client()
    x = w.users.create(user_name="cli-reader@example.com")
    marker = "cli-value-" + uuid.uuid4().hex
    tandem.cli("secrets", "create-scope", "--scope", "s", "--initial-manage-principal", "users")
    tandem.cli("secrets", "put", "--scope", "s", "--key", "k", "--string-value", marker)
    out = tandem.cli("secrets", "list", "--scope", "s").stdout
    assert "k" in out.split() and marker not in out
    tandem.cli("secrets", "put-acl", "--scope", "s", "--principal", x.user_name, "--permission", "READ")
    acls = tandem.cli("secrets", "list-acls", "--scope", "s").stdout
    rows = {tuple(line.split()) for line in acls.splitlines()}
    assert ("cli-reader@example.com", "READ") in rows and ("users", "MANAGE") in rows
    assert "READ" in tandem.cli("secrets", "get-acl", "--scope", "s", "--principal", x.user_name).stdout
    assert "s" in tandem.cli("secrets", "list-scopes").stdout.split()
    # The value was read once, as a notebook would, then the CLI cleans up.
    assert base64.b64decode(w.secrets.get_secret("s", "k").value).decode() == marker
    tandem.cli("secrets", "delete-acl", "--scope", "s", "--principal", x.user_name)
    tandem.cli("secrets", "delete", "--scope", "s", "--key", "k")
    tandem.cli("secrets", "delete-scope", "--scope", "s")
    r = tandem.cli("secrets", "list", "--scope", "s", check=False)
    assert r.returncode != 0 and "RESOURCE_DOES_NOT_EXIST" in (r.stdout + r.stderr)

    # Errors come back as Databricks errors, to a principal without rights too.
    tandem.cli("secrets", "create-scope", "--scope", "private")
    sp, _ = _second_principal(tandem, w, "cli-robot")
    tok = w.token_management.create_obo_token(application_id=sp.application_id, comment="cli").token_value
    r = tandem.cli("secrets", "list", "--scope", "private", token=tok, check=False)
    # The legacy CLI words every 403 this way, on Databricks too.
    assert r.returncode != 0 and "Authorization failed" in r.stdout + r.stderr
    r = tandem.cli("secrets", "put", "--scope", "private", "--key", "bad key", "--string-value", marker, check=False)
    assert r.returncode != 0 and "INVALID_PARAMETER_VALUE" in (r.stdout + r.stderr) and marker not in r.stdout + r.stderr
    tandem.cli("secrets", "delete-scope", "--scope", "private")

    # The value never reached the audit journal or the server log, though
    # the calls did (the legacy CLI sends its bodies as text/json).
    journal, log = _journal_and_log(tandem)
    records = [json.loads(line) for line in journal.splitlines() if line.strip()]
    puts = [r for r in records if r["operationName"] == "Microsoft.Databricks/secrets/putSecret"
            and r["properties"]["requestParams"].get("scope") == "s"]
    assert puts and all(r["properties"]["requestParams"] == {"scope": "s", "key": "k"} for r in puts)
    assert any(r["operationName"] == "Microsoft.Databricks/secrets/getSecret" for r in records)
    for form in (marker.encode(), _b64(marker).encode()):
        assert form not in journal and form not in log


def test_python_sdk_global_init_scripts(tandem):
    w = tandem.client()
    a = w.global_init_scripts.create("a", _b64("#!/bin/bash\necho a\n"), enabled=True)
    b = w.global_init_scripts.create("b", _b64("echo b"))
    c = w.global_init_scripts.create("c", _b64("echo c"), enabled=True, position=0)
    d = w.global_init_scripts.create("d", _b64("echo d"), position=42)

    def order():
        scripts = list(w.global_init_scripts.list())
        assert [s.position for s in scripts] == list(range(len(scripts)))
        return [s.name for s in scripts]

    assert order() == ["c", "a", "b", "d"]
    got = w.global_init_scripts.get(a.script_id)
    assert base64.b64decode(got.script).startswith(b"#!/bin/bash")
    assert got.enabled and got.position == 1 and got.created_by == "admin@tandem.local" and got.created_at > 0

    w.global_init_scripts.update(b.script_id, "b2", _b64("echo b2"), enabled=True, position=0)
    assert order() == ["b2", "c", "a", "d"]
    assert base64.b64decode(w.global_init_scripts.get(b.script_id).script) == b"echo b2"
    w.global_init_scripts.update(c.script_id, "c", _b64("echo c"), position=100)
    assert order() == ["b2", "a", "d", "c"]

    w.global_init_scripts.delete(a.script_id)
    assert order() == ["b2", "d", "c"]
    with pytest.raises(NotFound):
        w.global_init_scripts.get(a.script_id)

    _, other = _second_principal(tandem, w, "init-robot")
    with pytest.raises(PermissionDenied):
        list(other.global_init_scripts.list())
    with pytest.raises(PermissionDenied):
        other.global_init_scripts.create("x", _b64("echo x"))
    with pytest.raises(InvalidParameterValue):
        w.global_init_scripts.create("bad/name", _b64("echo"))

    for s in (b, c, d):
        w.global_init_scripts.delete(s.script_id)
    assert order() == []
