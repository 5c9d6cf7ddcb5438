"""Clusters and instance pools through the Python SDK and the legacy CLI,
on real instances (tandem agent processes running Apache Spark)."""
import json
import os
import signal
import time

import pytest
from databricks.sdk.errors import NotFound, InvalidParameterValue
from databricks.sdk.service import compute

SPARK_CONF = {"spark.executor.memory": "512m", "spark.driver.memory": "512m"}


@pytest.fixture(autouse=True, scope="module")
def _kill_instances(tandem):
    """Instances outlive their control plane by design: end them with the
    module."""
    yield
    root = os.path.join(tandem.data_dir, "instances")
    for d in os.listdir(root) if os.path.isdir(root) else []:
        try:
            with open(os.path.join(root, d, "agent.pid")) as f:
                os.killpg(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def test_python_sdk_pool_cluster_events(tandem):
    w = tandem.client()
    # Spark 4 is built for Scala 2.13 only (the SDK looks for 2.12 unless told).
    version = w.clusters.select_spark_version(latest=True, scala="2.13")
    assert version.endswith("-scala2.13")
    assert "Apache Spark 4.1" in [v.name for v in w.clusters.spark_versions().versions if v.key == version][0]
    assert w.clusters.select_node_type(local_disk=True) == "tandem.small"

    pool = w.instance_pools.create(instance_pool_name="py-pool", node_type_id="tandem.small",
                                   min_idle_instances=1, max_capacity=3)
    deadline = time.time() + 60
    while w.instance_pools.get(pool.instance_pool_id).stats.idle_count != 1:
        assert time.time() < deadline, "the pool never had an idle instance"
        time.sleep(0.5)

    cl = w.clusters.create_and_wait(cluster_name="py", spark_version=version, instance_pool_id=pool.instance_pool_id,
                                    num_workers=1, spark_conf=SPARK_CONF)
    assert cl.state == compute.State.RUNNING
    assert cl.driver.instance_id and len(cl.executors) == 1
    types = [e.type for e in w.clusters.events(cl.cluster_id, order=compute.GetEventsOrder.ASC)]
    assert types[0] == compute.EventType.CREATING and compute.EventType.RUNNING in types
    assert [c.cluster_id for c in w.clusters.list()] == [cl.cluster_id]

    with pytest.raises(InvalidParameterValue):
        w.clusters.create(cluster_name="bad", spark_version="no-such-version", node_type_id="tandem.small")

    w.clusters.delete_and_wait(cl.cluster_id)
    assert w.clusters.get(cl.cluster_id).termination_reason.code == compute.TerminationReasonCode.USER_REQUEST
    w.clusters.permanent_delete(cl.cluster_id)
    with pytest.raises(NotFound):
        w.clusters.get(cl.cluster_id)
    w.instance_pools.delete(pool.instance_pool_id)


def test_legacy_cli_clusters_and_pools(tandem):
    out = tandem.cli("clusters", "list-node-types").stdout
    assert "tandem.small" in out and "tandem.medium" in out
    assert "-scala2.13" in tandem.cli("clusters", "spark-versions").stdout

    pool = json.loads(tandem.cli("instance-pools", "create", "--json", json.dumps(
        {"instance_pool_name": "cli-pool", "node_type_id": "tandem.small"})).stdout)
    assert "cli-pool" in tandem.cli("instance-pools", "list").stdout

    spec = {"cluster_name": "cli", "spark_version": "4.1.x-scala2.13", "node_type_id": "tandem.small",
            "num_workers": 0, "spark_conf": SPARK_CONF}
    cid = json.loads(tandem.cli("clusters", "create", "--json", json.dumps(spec)).stdout)["cluster_id"]
    deadline = time.time() + 60
    while json.loads(tandem.cli("clusters", "get", "--cluster-id", cid).stdout)["state"] != "RUNNING":
        assert time.time() < deadline, "the cluster never ran"
        time.sleep(0.5)
    events = json.loads(tandem.cli("clusters", "events", "--cluster-id", cid, "--output", "JSON").stdout)
    assert "RUNNING" in [e["type"] for e in events["events"]]
    tandem.cli("clusters", "delete", "--cluster-id", cid)
    deadline = time.time() + 60
    while json.loads(tandem.cli("clusters", "get", "--cluster-id", cid).stdout)["state"] != "TERMINATED":
        assert time.time() < deadline, "the cluster never terminated"
        time.sleep(0.5)
    tandem.cli("clusters", "permanent-delete", "--cluster-id", cid)
    r = tandem.cli("clusters", "get", "--cluster-id", cid, check=False)
    assert r.returncode != 0 and "RESOURCE_DOES_NOT_EXIST" in r.stdout + r.stderr
    tandem.cli("instance-pools", "delete", "--instance-pool-id", pool["instance_pool_id"])
