"""DBFS through the Databricks Python SDK and the legacy databricks-cli 0.18,
as users drive them, against a real `tandem server`."""
import hashlib
import io
import os
import time

import pytest
from databricks.sdk.errors import BadRequest, DatabricksError, NotFound, ResourceAlreadyExists


def sha(b):
    return hashlib.sha256(b).hexdigest()


def test_python_sdk_dbfs(tandem):
    w = tandem.client()
    data = os.urandom(3 * 1024 * 1024 + 77)
    w.dbfs.upload("/py/big.bin", io.BytesIO(data))
    with w.dbfs.download("dbfs:/py/big.bin") as f:
        assert sha(f.read()) == sha(data)
    assert w.dbfs.get_status("/py/big.bin").file_size == len(data)

    # Overwrite only when asked; the error is the SDK's ResourceAlreadyExists.
    with pytest.raises(ResourceAlreadyExists):
        w.dbfs.upload("/py/big.bin", io.BytesIO(b"other"))
    w.dbfs.upload("/py/big.bin", io.BytesIO(b"other"), overwrite=True)
    with w.dbfs.download("/py/big.bin") as f:
        assert f.read() == b"other"

    w.dbfs.mkdirs("/py/dir/sub")
    assert w.dbfs.exists("/py/dir/sub")
    listing = {f.path: f for f in w.dbfs.list("/py")}
    assert sorted(listing) == ["/py/big.bin", "/py/dir"]
    assert listing["/py/dir"].is_dir and listing["/py/big.bin"].file_size == 5
    # A file lists as itself.
    assert [f.path for f in w.dbfs.list("/py/big.bin")] == ["/py/big.bin"]

    w.dbfs.move_("/py/big.bin", "/py/dir/moved.bin")
    assert not w.dbfs.exists("/py/big.bin")
    with w.dbfs.download("/py/dir/moved.bin") as f:
        assert f.read() == b"other"

    # The raw API's errors, as the SDK raises them.
    with pytest.raises(DatabricksError) as e:
        w.api_client.do("POST", "/api/2.0/dbfs/delete", body={"path": "/py"})
    assert e.value.error_code == "IO_ERROR" and isinstance(e.value, BadRequest)
    with pytest.raises(DatabricksError) as e:
        w.dbfs.read("/py/dir/moved.bin", length=2 * 1024 * 1024)
    assert e.value.error_code == "MAX_READ_SIZE_EXCEEDED"
    with pytest.raises(DatabricksError) as e:
        w.dbfs.mkdirs("/py/../etc")
    assert e.value.error_code == "INVALID_PARAMETER_VALUE" and ".." in str(e.value)

    w.dbfs.delete("/py", recursive=True)
    with pytest.raises(NotFound):
        w.dbfs.get_status("/py/dir/moved.bin")


def test_restore_points_through_the_api(tandem):
    w = tandem.client()
    w.dbfs.upload("/rp/a.txt", io.BytesIO(b"good"))
    time.sleep(0.02)
    good = int(time.time() * 1000)
    time.sleep(0.02)
    w.dbfs.upload("/rp/a.txt", io.BytesIO(b"corrupted"), overwrite=True)
    w.dbfs.upload("/rp/junk.txt", io.BytesIO(b"junk"))

    versions = w.api_client.do("GET", "/api/2.0/tandem/dbfs/versions", query={"path": "/rp/a.txt"})["versions"]
    assert [v["file_size"] for v in versions] == [9, 4] and versions[0]["current"]

    r = w.api_client.do("POST", "/api/2.0/tandem/dbfs/restore", body={"path": "dbfs:/rp", "timestamp": good})
    assert r["restored_paths"] == 2
    with w.dbfs.download("/rp/a.txt") as f:
        assert f.read() == b"good"
    assert not w.dbfs.exists("/rp/junk.txt")


def test_legacy_cli_fs(tandem, tmp_path, monkeypatch):
    # Work in a directory of the user's, with relative local paths, as typed.
    monkeypatch.chdir(tmp_path)
    data = os.urandom(2 * 1024 * 1024 + 5)
    (tmp_path / "big.bin").write_bytes(data)

    tandem.cli("fs", "cp", "./big.bin", "dbfs:/tmp/big.bin")
    assert "big.bin" in tandem.cli("fs", "ls", "dbfs:/tmp").stdout
    # ls -l of a file shows the file and its exact size.
    long = tandem.cli("fs", "ls", "-l", "dbfs:/tmp/big.bin").stdout
    assert "file" in long and str(len(data)) in long and "big.bin" in long

    tandem.cli("fs", "cp", "dbfs:/tmp/big.bin", "./back.bin")
    assert sha((tmp_path / "back.bin").read_bytes()) == sha(data)

    # Copying over an existing file needs --overwrite; the file is kept.
    (tmp_path / "new.bin").write_bytes(b"new contents")
    r = tandem.cli("fs", "cp", "./new.bin", "dbfs:/tmp/big.bin", check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "RESOURCE_ALREADY_EXISTS" in out, out
    assert tandem.cli("fs", "cat", "dbfs:/tmp/big.bin", check=False).stdout != "new contents"
    tandem.cli("fs", "cp", "--overwrite", "./new.bin", "dbfs:/tmp/big.bin")
    assert tandem.cli("fs", "cat", "dbfs:/tmp/big.bin").stdout == "new contents"

    tandem.cli("fs", "mkdirs", "dbfs:/tmp/dir/sub")
    tandem.cli("fs", "mv", "dbfs:/tmp/big.bin", "dbfs:/tmp/dir/big.bin")
    assert "big.bin" in tandem.cli("fs", "ls", "dbfs:/tmp/dir").stdout
    assert "big.bin" not in tandem.cli("fs", "ls", "dbfs:/tmp").stdout

    # A recursive copy skips files that exist, which it recognises by the
    # 400 RESOURCE_ALREADY_EXISTS.
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    tandem.cli("fs", "cp", "-r", "./tree", "dbfs:/tmp/tree")
    again = tandem.cli("fs", "cp", "-r", "./tree", "dbfs:/tmp/tree").stdout
    assert "already exists. Skip." in again
    assert tandem.cli("fs", "cat", "dbfs:/tmp/tree/sub/b.txt").stdout == "b"

    # rm of a folder needs -r.
    r = tandem.cli("fs", "rm", "dbfs:/tmp", check=False)
    assert r.returncode != 0 and "IO_ERROR" in r.stdout + r.stderr
    tandem.cli("fs", "rm", "-r", "dbfs:/tmp")
    r = tandem.cli("fs", "ls", "dbfs:/tmp", check=False)
    assert r.returncode != 0 and "RESOURCE_DOES_NOT_EXIST" in r.stdout + r.stderr
