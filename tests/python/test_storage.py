"""The storage account behind DBFS, through the Databricks Python SDK and the
legacy CLI against a real `tandem server` process: what a client writes comes
back whole, and no byte of it reaches the server's disk in clear."""
import io
import os


def _scan(root, marker):
    hits, files = [], 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            files += 1
            if marker in data:
                hits.append(p)
    return hits, files


def test_storage_admin_api_and_no_plaintext_on_disk(tandem, tmp_path):
    w = tandem.client()
    acct = w.api_client.do("GET", "/api/2.0/tandem/storage/account")
    assert acct["settings"]["redundancy"] == "LRS"
    assert acct["keys"]["key_source"] == "Microsoft.Storage"
    assert [c["state"] for c in acct["copies"]] == ["HEALTHY"] * 3

    acct = w.api_client.do("PATCH", "/api/2.0/tandem/storage/account", body={"redundancy": "GZRS"})
    assert acct["settings"]["redundancy"] == "GZRS"
    assert [c["name"] for c in acct["copies"]] == ["zone-1", "zone-2", "zone-3"]

    marker = b"PYTEST-PLAINTEXT-MARKER-" + os.urandom(8).hex().encode()
    data = (marker + b"\n") * 50000
    w.dbfs.upload("/storage/marker.txt", io.BytesIO(data), overwrite=True)
    with w.dbfs.download("/storage/marker.txt") as f:
        assert f.read() == data

    src = tmp_path / "cli.txt"
    src.write_bytes(marker * 10)
    tandem.cli("fs", "cp", str(src), "dbfs:/storage/cli.txt")
    assert tandem.cli("fs", "cat", "dbfs:/storage/cli.txt").stdout.encode() == marker * 10

    hits, files = _scan(os.path.join(tandem.data_dir, "storage"), marker)
    assert files >= 6, "the copies are not where the test looks"
    assert hits == []

    geo = w.api_client.do("GET", "/api/2.0/tandem/storage/geo-replication")
    assert "backlog" in geo
