"""The shared driver (tandem_runtime.task --serve) with real Spark in local
mode: task processes attach to its JVM, run side by side with sessions of
their own, cannot stop it, add the same wheel to it one after another, and
the jobs of a task that ended are cancelled through the driver."""
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest

RUNTIME = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "internal", "pyruntime"))
SPARK = {"spark.master": "local[2]", "spark.ui.enabled": "false", "spark.driver.memory": "512m",
         "spark.sql.shuffle.partitions": "2"}


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = tmp_path_factory.mktemp("driver")
    (d / "standby.json").write_text(json.dumps({"app_name": "tandem-driver", "spark_conf": SPARK}))
    env = dict(os.environ, PYTHONPATH=RUNTIME)
    log = open(d / "driver.log", "w")
    p = subprocess.Popen([sys.executable, "-m", "tandem_runtime.task", "--serve", str(d)], env=env,
                         stdout=log, stderr=subprocess.STDOUT)
    gw = d / "gateway.json"
    deadline = time.time() + 180
    while not gw.exists():
        assert p.poll() is None, (d / "driver.log").read_text()[-3000:]
        assert time.time() < deadline, "the shared driver did not start"
        time.sleep(0.1)
    assert oct(gw.stat().st_mode & 0o777) == "0o600"
    g = json.loads(gw.read_text())
    gw.unlink()  # as the agent does: the secret stays in memory
    yield {"dir": d, "port": g["port"], "secret": g["secret"], "proc": p}
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def start_task(driver, tmp_path, name, spec):
    """Starts a task process attached to the driver, as the agent does."""
    td = tmp_path / name
    td.mkdir()
    spec = dict(spec, result_file=str(td / "result.json"))
    (td / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=RUNTIME, PYSPARK_GATEWAY_PORT=str(driver["port"]),
               PYSPARK_GATEWAY_SECRET=driver["secret"], TANDEM_DRIVER_SHARED=str(driver["dir"]),
               TANDEM_JOB_TAG="tandem-task-" + name, TANDEM_TASK_ID=name)
    p = subprocess.Popen([sys.executable, "-m", "tandem_runtime.task", str(td / "spec.json")], cwd=td, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, td


def finish(p, td, timeout=180):
    out, err = p.communicate(timeout=timeout)
    result = json.loads((td / "result.json").read_text())
    return p.returncode, out, err, result


def notebook(src):
    return {"kind": "notebook", "language": "PYTHON", "source_text": "# Databricks notebook source\n" + src}


def test_tasks_attach_side_by_side_with_sessions_of_their_own(driver, tmp_path):
    a = start_task(driver, tmp_path, "a", notebook(
        "import os, time\n"
        "assert 'PYSPARK_GATEWAY_SECRET' not in os.environ\n"
        "spark.range(10).createOrReplaceTempView('mine')\n"
        "spark.conf.set('spark.sql.shuffle.partitions', '7')\n"
        "time.sleep(3)\n"
        "dbutils.notebook.exit(str(spark.table('mine').count()) + ' ' + str(sc.startTime))\n"))
    b = start_task(driver, tmp_path, "b", notebook(
        "names = [t.name for t in spark.catalog.listTables()]\n"
        "dbutils.notebook.exit(','.join(names) + ' ' + spark.conf.get('spark.sql.shuffle.partitions') + ' ' + str(sc.startTime))\n"))
    ca, outa, erra, ra = finish(*a)
    cb, outb, errb, rb = finish(*b)
    assert ca == 0, erra[-3000:]
    assert cb == 0, errb[-3000:]
    count, start_a = ra["notebook_result"].split()
    views, partitions, start_b = rb["notebook_result"].split(" ")
    assert count == "10"
    assert views == "" and partitions == "2", rb  # a's view and conf are a's alone
    assert start_a == start_b  # one SparkContext


def test_a_task_cannot_stop_the_shared_context(driver, tmp_path):
    code, out, err, res = finish(*start_task(driver, tmp_path, "stops", notebook(
        "spark.range(3).count()\nspark.stop()\nsc.stop()\ndbutils.notebook.exit('stopped')\n")))
    assert code == 0, err[-3000:]
    code, out, err, res = finish(*start_task(driver, tmp_path, "after", notebook(
        "dbutils.notebook.exit(str(spark.range(5).count()))\n")))
    assert code == 0, err[-3000:]
    assert res["notebook_result"] == "5"


def make_wheel(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("sharedwheel/__init__.py",
                   "def main():\n"
                   "    from pyspark.sql import SparkSession\n"
                   "    s = SparkSession.builder.getOrCreate()\n"
                   "    f = lambda x: __import__('sharedwheel').double(x)\n"
                   "    print('sum', s.sparkContext.parallelize(range(4), 2).map(f).sum())\n"
                   "def double(x):\n    return 2 * x\n")
        z.writestr("sharedwheel-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: sharedwheel\nVersion: 0.1\n")


def test_the_same_wheel_in_task_after_task(driver, tmp_path):
    """The SparkContext outlives a task and refuses a second file of one name
    from another path: each task's wheel reaches the executors under a name
    given by its content."""
    whl = tmp_path / "sharedwheel-0.1-py3-none-any.whl"
    make_wheel(whl)
    for name in ("w1", "w2"):
        code, out, err, res = finish(*start_task(driver, tmp_path, name, {
            "kind": "wheel", "package_name": "sharedwheel", "entry_point": "main", "wheels": [str(whl)]}))
        assert code == 0, err[-3000:]
        assert "sum 12" in out, out


def test_the_jobs_of_a_killed_task_are_cancelled(driver, tmp_path):
    p, td = start_task(driver, tmp_path, "slow", notebook(
        "import time\n"
        "print('started', flush=True)\n"
        "spark.range(2).repartition(2).rdd.map(lambda x: time.sleep(600) or x).count()\n"))
    assert p.stdout.readline().strip() == "started"
    time.sleep(3)  # its job runs on the driver's executors
    p.kill()
    p.wait()
    (driver["dir"] / "cancel").mkdir(exist_ok=True)
    (driver["dir"] / "cancel" / "tandem-task-slow").touch()  # what the agent writes
    code, out, err, res = finish(*start_task(driver, tmp_path, "probe", notebook(
        "import time\n"
        "t = sc.statusTracker()\n"
        "deadline = time.time() + 60\n"
        "while t.getActiveJobsIds() and time.time() < deadline:\n"
        "    time.sleep(0.2)\n"
        "dbutils.notebook.exit(str(len(t.getActiveJobsIds())) + ' ' + str(spark.range(4).count()))\n")))
    assert code == 0, err[-3000:]
    assert res["notebook_result"] == "0 4"  # cancelled, and its slots are free again
    assert not (driver["dir"] / "cancel" / "tandem-task-slow").exists()
