"""DBFS through the Databricks Python SDK and the legacy CLI."""
import hashlib
import io
import os

import pytest
from databricks.sdk.errors import NotFound


def test_python_sdk_dbfs(tandem):
    w = tandem.client()
    data = os.urandom(3 * 1024 * 1024 + 77)
    w.dbfs.upload("/py/big.bin", io.BytesIO(data), overwrite=True)
    with w.dbfs.download("/py/big.bin") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    assert w.dbfs.get_status("/py/big.bin").file_size == len(data)
    w.dbfs.mkdirs("/py/dir/sub")
    names = sorted(f.path for f in w.dbfs.list("/py"))
    assert names == ["/py/big.bin", "/py/dir"]
    w.dbfs.move_("/py/big.bin", "/py/dir/moved.bin")
    w.dbfs.delete("/py", recursive=True)
    with pytest.raises(NotFound):
        w.dbfs.get_status("/py/dir/moved.bin")


def test_legacy_cli_fs(tandem, tmp_path):
    big = tmp_path / "big.bin"
    data = os.urandom(2 * 1024 * 1024 + 5)
    big.write_bytes(data)
    tandem.cli("fs", "mkdirs", "dbfs:/cli/in")
    tandem.cli("fs", "cp", str(big), "dbfs:/cli/in/big.bin")
    out = tandem.cli("fs", "ls", "dbfs:/cli/in").stdout
    assert "big.bin" in out
    back = tmp_path / "back.bin"
    tandem.cli("fs", "cp", "dbfs:/cli/in/big.bin", str(back))
    assert back.read_bytes() == data
    # Copying over an existing file needs --overwrite.
    r = tandem.cli("fs", "cp", str(big), "dbfs:/cli/in/big.bin", check=False)
    assert r.returncode != 0 and "exists" in (r.stdout + r.stderr).lower()
    tandem.cli("fs", "cp", "--overwrite", str(big), "dbfs:/cli/in/big.bin")
    tandem.cli("fs", "mv", "dbfs:/cli/in/big.bin", "dbfs:/cli/out/big.bin")
    assert "big.bin" in tandem.cli("fs", "ls", "dbfs:/cli/out").stdout
    tandem.cli("fs", "rm", "-r", "dbfs:/cli")
    r = tandem.cli("fs", "ls", "dbfs:/cli", check=False)
    assert r.returncode != 0
