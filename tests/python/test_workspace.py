"""Workspace API through the Databricks Python SDK and the legacy CLI."""
import base64
import io
import json
import os

import pytest
from databricks.sdk.errors import BadRequest, DatabricksError, NotFound, ResourceAlreadyExists
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


def test_python_sdk_upload_download_as_databricks_own_tests_expect(tandem):
    """The expectations of the Databricks Python SDK's integration tests
    (tests/integration/test_workspace.py), run against Tandem."""
    w = tandem.client()
    home = f"/Users/{w.current_user.me().user_name}"

    # A .py uploaded with the default format is a notebook that keeps its name.
    notebook = f"{home}/notebook-x.py"
    w.workspace.upload(notebook, io.BytesIO(b"print(1)"))
    with w.workspace.download(notebook) as f:
        assert f.read() == b"# Databricks notebook source\nprint(1)"
    big = ("print(1)\n" * 1000).strip("\n")
    w.workspace.upload(notebook, io.BytesIO(big.encode()), overwrite=True)
    with w.workspace.download(notebook) as f:
        assert f.read() == f"# Databricks notebook source\n{big}".encode()

    # With AUTO, a .py without the header and a .txt are files, byte for byte.
    for name in ("file-x.py", "txt-x.txt"):
        w.workspace.upload(f"{home}/{name}", io.BytesIO(b"print(1)"), format=ImportFormat.AUTO)
        with w.workspace.download(f"{home}/{name}") as f:
            assert f.read() == b"print(1)"
        assert w.workspace.get_status(f"{home}/{name}").object_type == ObjectType.FILE

    # No extension: SOURCE needs the language.
    nb = f"{home}/notebook-no-ext"
    w.workspace.upload(nb, io.BytesIO(b"print(1)"), format=ImportFormat.SOURCE, language=Language.PYTHON)
    with w.workspace.download(nb) as f:
        assert f.read() == b"# Databricks notebook source\nprint(1)"
    # The SDK adds its own hint to INVALID_PARAMETER_VALUE from this call.
    with pytest.raises(DatabricksError, match="language is required") as e:
        w.workspace.upload(f"{home}/no-language", io.BytesIO(b"print(1)"), format=ImportFormat.SOURCE)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"

    # Recursive listing returns what is not a folder, at any depth.
    w.workspace.mkdirs(f"{home}/tree/sub")
    w.workspace.upload(f"{home}/tree/a.py", io.BytesIO(b"print(1)"))
    w.workspace.upload(f"{home}/tree/sub/b.py", io.BytesIO(b"print(2)"))
    assert sorted(o.path for o in w.workspace.list(f"{home}/tree", recursive=True)) == [
        f"{home}/tree/a.py", f"{home}/tree/sub/b.py"]

    for p in (notebook, f"{home}/file-x.py", f"{home}/txt-x.txt", nb):
        w.workspace.delete(p)
    w.workspace.delete(f"{home}/tree", recursive=True)


def test_python_sdk_source_jupyter_round_trip(tandem):
    w = tandem.client()
    w.workspace.mkdirs("/Shared/rt")
    src = ("# Databricks notebook source\nimport os\n\n# COMMAND ----------\n\n"
           "# MAGIC %md\n# MAGIC # Title\n# MAGIC\n# MAGIC text\n\n# COMMAND ----------\n\n# MAGIC %sql\n# MAGIC select 1")
    w.workspace.import_("/Shared/rt/nb", content=base64.b64encode(src.encode()).decode(),
                        format=ImportFormat.SOURCE, language=Language.PYTHON)
    exp = w.workspace.export("/Shared/rt/nb", format=ExportFormat.JUPYTER)
    assert exp.file_type == "ipynb"
    doc = json.loads(base64.b64decode(exp.content))
    assert [c["cell_type"] for c in doc["cells"]] == ["code", "markdown", "code"]
    assert "".join(doc["cells"][1]["source"]) == "# Title\n\ntext"
    w.workspace.import_("/Shared/rt/copy.ipynb", content=exp.content, format=ImportFormat.JUPYTER)
    back = w.workspace.export("/Shared/rt/copy", format=ExportFormat.SOURCE)
    assert back.file_type == "py"
    assert base64.b64decode(back.content).decode() == src
    with pytest.raises(BadRequest):
        w.workspace.import_("/Shared/rt/broken.ipynb", content=base64.b64encode(b"{not json").decode(),
                            format=ImportFormat.JUPYTER)
    w.workspace.delete("/Shared/rt", recursive=True)


def test_legacy_cli_workspace(tandem, tmp_path):
    src = tmp_path / "etl.py"
    src.write_text("print('etl')\n")
    tandem.cli("workspace", "mkdirs", "/Shared/cli")
    tandem.cli("workspace", "import", "-l", "PYTHON", "-f", "SOURCE", str(src), "/Shared/cli/etl")
    out = tandem.cli("workspace", "ls", "/Shared/cli").stdout
    assert "etl" in out
    r = tandem.cli("workspace", "import", "-l", "PYTHON", "-f", "SOURCE", str(src), "/Shared/cli/etl", check=False)
    assert r.returncode != 0 and "RESOURCE_ALREADY_EXISTS" in (r.stdout + r.stderr)
    tandem.cli("workspace", "import", "-o", "-l", "PYTHON", "-f", "SOURCE", str(src), "/Shared/cli/etl")
    dest = tmp_path / "back.py"
    tandem.cli("workspace", "export", "/Shared/cli/etl", str(dest))
    assert dest.read_text() == "# Databricks notebook source\nprint('etl')"
    # Exporting into a folder names the file after the notebook and its language.
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    tandem.cli("workspace", "export", "-f", "JUPYTER", "/Shared/cli/etl", str(outdir))
    assert json.loads((outdir / "etl.py").read_text())["cells"][0]["source"] == ["print('etl')"]

    tree = tmp_path / "tree"
    (tree / "lib").mkdir(parents=True)
    (tree / "main.py").write_text("# Databricks notebook source\nprint('main')\n")
    (tree / "lib" / "q.sql").write_text("-- Databricks notebook source\nselect 1\n")
    (tree / "lib" / "nb.ipynb").write_text(json.dumps({
        "cells": [{"cell_type": "code", "source": ["x = 1\n", "y = 2"], "metadata": {}, "outputs": [], "execution_count": None}],
        "metadata": {"language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}))
    tandem.cli("workspace", "import_dir", str(tree), "/Shared/cli/tree")
    rows = sorted(line.split() for line in tandem.cli("workspace", "ls", "-l", "/Shared/cli/tree/lib").stdout.splitlines())
    assert rows == [["NOTEBOOK", "nb", "PYTHON"], ["NOTEBOOK", "q", "SQL"]]
    out_dir = tmp_path / "exported"
    tandem.cli("workspace", "export_dir", "/Shared/cli/tree", str(out_dir))
    assert (out_dir / "main.py").read_text() == "# Databricks notebook source\nprint('main')"
    assert (out_dir / "lib" / "q.sql").read_text() == "-- Databricks notebook source\nselect 1"
    assert (out_dir / "lib" / "nb.py").read_text() == "# Databricks notebook source\nx = 1\ny = 2"

    r = tandem.cli("workspace", "ls", "/Shared/nope", check=False)
    assert r.returncode != 0 and "RESOURCE_DOES_NOT_EXIST" in (r.stdout + r.stderr)
    r = tandem.cli("workspace", "rm", "/Shared/cli", check=False)
    assert r.returncode != 0 and "DIRECTORY_NOT_EMPTY" in (r.stdout + r.stderr)
    tandem.cli("workspace", "rm", "-r", "/Shared/cli")
    r = tandem.cli("workspace", "ls", "/Shared/cli", check=False)
    assert r.returncode != 0 and "RESOURCE_DOES_NOT_EXIST" in (r.stdout + r.stderr)
