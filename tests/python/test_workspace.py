"""Workspace API through the Databricks Python SDK and the legacy CLI."""
import base64
import io
import os

import pytest
from databricks.sdk.errors import NotFound, ResourceAlreadyExists
from databricks.sdk.service.workspace import ImportFormat, Language, ExportFormat, ObjectType

NB = "# Databricks notebook source\nprint('hi')\n\n# COMMAND ----------\n\nx = 1\n"


def test_python_sdk_workspace(tandem):
    w = tandem.client()
    w.workspace.mkdirs("/Shared/py/sub")
    w.workspace.upload("/Shared/py/nb.py", io.BytesIO(NB.encode()), format=ImportFormat.SOURCE, language=Language.PYTHON)
    st = w.workspace.get_status("/Shared/py/nb.py")
    assert st.object_type == ObjectType.NOTEBOOK and st.language == Language.PYTHON
    with w.workspace.download("/Shared/py/nb.py") as f:
        # Stored as cells: exported without a newline after the last line, as Databricks does.
        assert f.read().decode() == NB.rstrip("\n")
    exp = w.workspace.export("/Shared/py/nb.py", format=ExportFormat.JUPYTER)
    assert b'"cells"' in base64.b64decode(exp.content)
    w.workspace.import_("/Shared/py/data.txt", content=base64.b64encode(b"plain").decode(), format=ImportFormat.AUTO)
    names = sorted(o.path for o in w.workspace.list("/Shared/py"))
    assert names == ["/Shared/py/data.txt", "/Shared/py/nb.py", "/Shared/py/sub"]
    with pytest.raises(ResourceAlreadyExists):
        w.workspace.import_("/Shared/py/data.txt", content=base64.b64encode(b"x").decode(), format=ImportFormat.AUTO)
    w.workspace.delete("/Shared/py", recursive=True)
    with pytest.raises(NotFound):
        w.workspace.get_status("/Shared/py/nb.py")


def test_legacy_cli_workspace(tandem, tmp_path):
    src = tmp_path / "etl.py"
    src.write_text("print('etl')\n")
    tandem.cli("workspace", "mkdirs", "/Shared/cli")
    tandem.cli("workspace", "import", "-l", "PYTHON", "-f", "SOURCE", str(src), "/Shared/cli/etl")
    out = tandem.cli("workspace", "ls", "/Shared/cli").stdout
    assert "etl" in out
    dest = tmp_path / "back.py"
    tandem.cli("workspace", "export", "/Shared/cli/etl", str(dest))
    assert dest.read_text().startswith("# Databricks notebook source")
    assert "print('etl')" in dest.read_text()

    tree = tmp_path / "tree"
    (tree / "lib").mkdir(parents=True)
    (tree / "main.py").write_text("# Databricks notebook source\nprint('main')\n")
    (tree / "lib" / "q.sql").write_text("-- Databricks notebook source\nselect 1\n")
    tandem.cli("workspace", "import_dir", str(tree), "/Shared/cli/tree")
    listing = tandem.cli("workspace", "ls", "-l", "/Shared/cli/tree/lib").stdout
    assert "q" in listing
    out_dir = tmp_path / "exported"
    tandem.cli("workspace", "export_dir", "/Shared/cli/tree", str(out_dir))
    assert (out_dir / "main.py").read_text().strip().endswith("print('main')")
    assert (out_dir / "lib" / "q.sql").exists()

    r = tandem.cli("workspace", "ls", "/Shared/nope", check=False)
    assert r.returncode != 0 and "RESOURCE_DOES_NOT_EXIST" in (r.stdout + r.stderr)
    tandem.cli("workspace", "rm", "-r", "/Shared/cli")
    r = tandem.cli("workspace", "ls", "/Shared/cli", check=False)
    assert r.returncode != 0
