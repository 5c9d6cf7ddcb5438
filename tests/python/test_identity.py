"""SCIM and tokens through the Databricks Python SDK."""
import pytest
from databricks.sdk.errors import NotFound, PermissionDenied, ResourceAlreadyExists
from databricks.sdk.service import iam


def test_me_users_groups_and_tokens(tandem):
    w = tandem.client()
    assert w.current_user.me().user_name == "admin@tandem.local"

    u = w.users.create(user_name="py@example.com", display_name="Py")
    assert u.id
    with pytest.raises(ResourceAlreadyExists):
        w.users.create(user_name="py@example.com")
    names = {x.user_name for x in w.users.list()}
    assert {"admin@tandem.local", "py@example.com"} <= names
    found = list(w.users.list(filter='userName eq "py@example.com"'))
    assert [x.id for x in found] == [u.id]

    g = w.groups.create(display_name="py-group", members=[iam.ComplexValue(value=u.id)])
    assert [m.value for m in w.groups.get(g.id).members] == [u.id]

    t = w.tokens.create(comment="py", lifetime_seconds=600)
    assert t.token_value.startswith("dapi")
    assert any(i.token_id == t.token_info.token_id for i in w.tokens.list())
    w.tokens.delete(t.token_info.token_id)

    w.users.delete(u.id)
    with pytest.raises(NotFound):
        w.users.get(u.id)
