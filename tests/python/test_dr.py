"""Disaster recovery seen by the official clients: the Python SDK and the
legacy databricks-cli keep the workspace URL (the router) through a planned
failover and a failback started with `tandem dr`, and find everything they
wrote in the region that serves afterwards."""
import base64
import io
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import PortRewritingProxy


class Deployment:
    def __init__(self, data_dir):
        self.dir = str(data_dir)
        self.bin = os.environ.get("TANDEM_BIN", "bin/tandem")
        self.log = open(os.path.join(self.dir, "up.log"), "w")
        self.proc = subprocess.Popen([self.bin, "up", "--data-dir", os.path.join(self.dir, "d"), "--listen", "127.0.0.1:0"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.file = os.path.join(self.dir, "d", "deployment.json")
        deadline = time.time() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("tandem up exited; see " + self.log.name)
            try:
                with open(self.file) as f:
                    d = json.load(f)
                if d["router"].get("pid"):
                    break
            except (OSError, ValueError, KeyError):
                pass
            if time.time() > deadline:
                raise RuntimeError("tandem up did not start; see " + self.log.name)
            time.sleep(0.2)
        self.host = d["router"]["url"]
        self.ca_file = d["router"]["ca_file"]
        self.token = d["admin_token"]
        self.proxy = PortRewritingProxy(int(self.host.rsplit(":", 1)[1]))

    def client(self):
        from databricks.sdk import WorkspaceClient
        os.environ["REQUESTS_CA_BUNDLE"] = self.ca_file
        return WorkspaceClient(host=self.host, token=self.token, auth_type="pat")

    def dr(self, *args):
        r = subprocess.run([self.bin, "dr", *args, "--deployment", self.file, "--json"], capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"tandem dr {' '.join(args)}: {r.stdout}{r.stderr}"
        return json.loads(r.stdout)

    def cli(self, *args):
        home = os.path.join(self.dir, "cli-home")
        os.makedirs(home, exist_ok=True)
        env = dict(os.environ, DATABRICKS_HOST=self.host, DATABRICKS_TOKEN=self.token, REQUESTS_CA_BUNDLE=self.ca_file,
                   SSL_CERT_FILE=self.ca_file, HOME=home, HTTPS_PROXY=f"http://127.0.0.1:{self.proxy.port}",
                   DATABRICKS_CONFIG_FILE=os.path.join(self.dir, "no-such-config"))
        env.pop("NO_PROXY", None)
        env.pop("no_proxy", None)
        r = subprocess.run([os.path.join(sys.prefix, "bin", "databricks"), *args], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"databricks {' '.join(args)}: {r.stdout}{r.stderr}"
        return r.stdout

    def stop(self):
        self.proxy.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    d = Deployment(tmp_path_factory.mktemp("dr"))
    yield d
    d.stop()


def test_clients_keep_the_workspace_url_through_failover_and_failback(deployment):
    from databricks.sdk.service import compute, jobs, workspace

    w = deployment.client()
    assert w.current_user.me().user_name == "admin@tandem.local"
    w.workspace.mkdirs("/Shared/dr")
    w.workspace.upload("/Shared/dr/etl.py", io.BytesIO(b"# Databricks notebook source\nprint('etl')\n"),
                       format=workspace.ImportFormat.SOURCE, language=workspace.Language.PYTHON)
    notebook_id = w.workspace.get_status("/Shared/dr/etl.py").object_id
    source = w.workspace.download("/Shared/dr/etl.py", format=workspace.ExportFormat.SOURCE).read()
    assert b"print('etl')" in source
    # A DBFS file of several blocks: its contents are storage-account blobs,
    # carried by the account's geo-replication, not the change log.
    data = os.urandom(2 * 1024 * 1024 + 123)
    w.dbfs.upload("/dr/input.bin", io.BytesIO(data), overwrite=True)
    w.secrets.create_scope("dr")
    w.secrets.put_secret("dr", "password", string_value="s3cret-value")
    job = w.jobs.create(name="nightly", max_concurrent_runs=2,
                        schedule=jobs.CronSchedule(quartz_cron_expression="0 0 3 * * ?", timezone_id="UTC",
                                                   pause_status=jobs.PauseStatus.UNPAUSED),
                        tasks=[jobs.Task(task_key="t", notebook_task=jobs.NotebookTask(notebook_path="/Shared/dr/etl.py"),
                                         new_cluster=compute.ClusterSpec(num_workers=1))])

    report = deployment.dr("failover", "--planned")
    assert report["outcome"] == "succeeded" and report["lost_changes"] == 0 and report["to"] == "secondary"
    # The verification's smoke job ran a Spark count in the new active region
    # (or, on a busy machine, was still starting its cluster when the
    # verification stopped waiting for it); it never failed.
    assert "TERMINATED SUCCESS" in report["smoke"] or "not waited for" in report["smoke"], report["smoke"]

    # The same client, the same URL: everything is there, with the same ids
    # and the same bytes.
    assert w.workspace.get_status("/Shared/dr/etl.py").object_id == notebook_id
    assert w.workspace.download("/Shared/dr/etl.py", format=workspace.ExportFormat.SOURCE).read() == source
    assert w.dbfs.download("/dr/input.bin").read() == data
    assert base64.b64decode(w.secrets.get_secret("dr", "password").value) == b"s3cret-value"
    got = w.jobs.get(job.job_id).settings
    assert got.max_concurrent_runs == 2 and got.schedule.pause_status == jobs.PauseStatus.UNPAUSED
    w.workspace.mkdirs("/Shared/dr/written-during-the-outage")
    w.workspace.upload("/Shared/dr/outage.py", io.BytesIO(b"# Databricks notebook source\nprint('outage')\n"),
                       format=workspace.ImportFormat.SOURCE, language=workspace.Language.PYTHON)
    outage_id = w.workspace.get_status("/Shared/dr/outage.py").object_id
    outage_source = w.workspace.download("/Shared/dr/outage.py", format=workspace.ExportFormat.SOURCE).read()
    w.dbfs.upload("/dr/outage.txt", io.BytesIO(b"written in the secondary"), overwrite=True)
    # The legacy CLI too.
    assert "written-during-the-outage" in deployment.cli("workspace", "ls", "/Shared/dr")

    report = deployment.dr("failback")
    assert report["outcome"] == "succeeded" and report["to"] == "primary" and report["epoch_after"] == 3
    names = [o.path for o in w.workspace.list("/Shared/dr")]
    assert "/Shared/dr/written-during-the-outage" in names
    # What was written during the outage came back with the failback.
    assert w.workspace.get_status("/Shared/dr/outage.py").object_id == outage_id
    assert w.workspace.download("/Shared/dr/outage.py", format=workspace.ExportFormat.SOURCE).read() == outage_source
    assert w.dbfs.download("/dr/outage.txt").read() == b"written in the secondary"
    assert w.dbfs.download("/dr/input.bin").read() == data

    status = deployment.dr("status")
    assert status["primary"]["role"] == "active" and status["secondary"]["role"] == "passive"
    assert status["router"]["active_region"] == "primary"
