"""Secrets and global init scripts through the Python SDK and the legacy CLI."""
import base64

import pytest
from databricks.sdk.errors import NotFound, PermissionDenied


def test_python_sdk_secrets_and_init_scripts(tandem):
    w = tandem.client()
    w.secrets.create_scope("py-scope")
    w.secrets.put_secret("py-scope", "k", string_value="v1")
    assert base64.b64decode(w.secrets.get_secret("py-scope", "k").value) == b"v1"
    assert [s.key for s in w.secrets.list_secrets("py-scope")] == ["k"]
    w.secrets.delete_scope("py-scope")
    with pytest.raises(NotFound):
        list(w.secrets.list_secrets("py-scope"))

    s = w.global_init_scripts.create("setup", base64.b64encode(b"#!/bin/bash\necho hi\n").decode(), enabled=True)
    assert [x.name for x in w.global_init_scripts.list()] == ["setup"]
    assert base64.b64decode(w.global_init_scripts.get(s.script_id).script).startswith(b"#!/bin/bash")
    w.global_init_scripts.delete(s.script_id)


def test_legacy_cli_secrets(tandem):
    tandem.cli("secrets", "create-scope", "--scope", "cli-scope", "--initial-manage-principal", "users")
    tandem.cli("secrets", "put", "--scope", "cli-scope", "--key", "token", "--string-value", "abc123")
    out = tandem.cli("secrets", "list", "--scope", "cli-scope").stdout
    assert "token" in out and "abc123" not in out
    tandem.cli("secrets", "put-acl", "--scope", "cli-scope", "--principal", "admins", "--permission", "READ")
    acls = tandem.cli("secrets", "list-acls", "--scope", "cli-scope").stdout
    assert "admins" in acls and "users" in acls
    assert "cli-scope" in tandem.cli("secrets", "list-scopes").stdout
    tandem.cli("secrets", "delete", "--scope", "cli-scope", "--key", "token")
    tandem.cli("secrets", "delete-scope", "--scope", "cli-scope")
    r = tandem.cli("secrets", "list", "--scope", "cli-scope", check=False)
    assert r.returncode != 0 and "RESOURCE_DOES_NOT_EXIST" in (r.stdout + r.stderr)
