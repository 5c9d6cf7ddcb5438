"""The task runtime (tandem_runtime) with real Spark in local mode: notebooks
with magics, widgets, dbutils against a real Tandem server, redaction of
secrets, task values, SQL and Python files."""
import base64
import json
import os
import subprocess
import sys

import pytest
from databricks.sdk.service.workspace import ImportFormat, Language

RUNTIME = os.path.join(os.path.dirname(__file__), "..", "..", "internal", "pyruntime")
SPARK = {"spark.master": "local[1]", "spark.ui.enabled": "false", "spark.driver.memory": "512m",
         "spark.sql.shuffle.partitions": "2"}


def run_task(tmp_path, spec):
    spec = dict(spec, spark_conf=SPARK, result_file=str(tmp_path / "result.json"))
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=os.path.abspath(RUNTIME))
    r = subprocess.run([sys.executable, "-m", "tandem_runtime.task", str(path)], env=env,
                       capture_output=True, text=True, timeout=300)
    result = json.loads((tmp_path / "result.json").read_text())
    return r, result


def api(tandem):
    return {"base_url": tandem.host, "token": tandem.token, "ca_file": tandem.ca_file}


NOTEBOOK = """# Databricks notebook source
dbutils.widgets.text("n", "3")
n = int(dbutils.widgets.get("n"))
df = spark.range(n).selectExpr("id", "id * id as sq")
display(df)

# COMMAND ----------

# MAGIC %md
# MAGIC ## A note that is not run

# COMMAND ----------

# MAGIC %sql
# MAGIC select sum(id) as total from range(10)

# COMMAND ----------

pw = dbutils.secrets.get("rt", "pw")
print("the password is", pw)
dbutils.fs.put("dbfs:/rt/out.txt", "rows=" + str(df.count()), True)
dbutils.jobs.taskValues.set("rows", df.count())
dbutils.notebook.exit("done with " + str(n) + " rows; pw=" + pw)
print("never printed")
"""


def test_notebook_with_widgets_sql_secrets_fs_and_exit(tandem, tmp_path):
    w = tandem.client()
    w.secrets.create_scope("rt")
    w.secrets.put_secret("rt", "pw", string_value="hunter2-secret")
    r, result = run_task(tmp_path, {"kind": "notebook", "source_text": NOTEBOOK, "language": "PYTHON",
                                    "widgets": {"n": "4"}, "run_id": 1, "api": api(tandem)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert result["notebook_result"] == "done with 4 rows; pw=[REDACTED]"
    assert result["task_values"] == {"rows": 4}
    lines = [l.replace(" ", "") for l in r.stdout.splitlines()]
    assert "|id|sq|" in lines and "|3|9|" in lines, r.stdout
    assert "|total|" in lines and "|45|" in lines, r.stdout
    assert "the password is [REDACTED]" in r.stdout
    assert "hunter2-secret" not in r.stdout + r.stderr
    assert "never printed" not in r.stdout
    with w.dbfs.download("/rt/out.txt") as f:
        assert f.read() == b"rows=4"


def test_failure_reports_error_and_trace(tandem, tmp_path):
    src = "# Databricks notebook source\nx = 1\n\n# COMMAND ----------\n\nraise ValueError('bad input ' + str(x))\n"
    r, result = run_task(tmp_path, {"kind": "notebook", "source_text": src, "language": "PYTHON"})
    assert r.returncode == 1
    assert result["error"] == "ValueError: bad input 1"
    assert "Traceback" in result["error_trace"] and "bad input" in result["error_trace"]


def test_notebook_run_percent_run_and_task_values(tandem, tmp_path):
    w = tandem.client()
    w.workspace.mkdirs("/Shared/rt")
    w.workspace.import_("/Shared/rt/lib", language=Language.PYTHON, format=ImportFormat.SOURCE,
                        content=base64.b64encode(b"# Databricks notebook source\ndef square(x):\n    return x * x\n").decode())
    w.workspace.import_("/Shared/rt/child", language=Language.PYTHON, format=ImportFormat.SOURCE,
                        content=base64.b64encode(b"# Databricks notebook source\ndbutils.notebook.exit(str(int(dbutils.widgets.get('x')) + 1))\n").decode())
    main = """# Databricks notebook source
# MAGIC %run ./lib

# COMMAND ----------

out = dbutils.notebook.run("./child".replace("./", "/Shared/rt/"), 60, {"x": 41})
up = dbutils.jobs.taskValues.get(taskKey="prepare", key="n", default=0)
dbutils.notebook.exit(f"{square(3)} {out} {up}")
"""
    r, result = run_task(tmp_path, {"kind": "notebook", "source_text": main, "language": "PYTHON",
                                    "notebook_path": "/Shared/rt/main", "api": api(tandem), "run_id": 2,
                                    "task_values": {"prepare": {"n": 7}}})
    assert r.returncode == 0, r.stderr[-3000:]
    assert result["notebook_result"] == "9 42 7"


def test_sql_and_python_file_tasks(tandem, tmp_path):
    r, result = run_task(tmp_path, {"kind": "sql", "language": "SQL", "widgets": {"lim": "3"},
                                    "source_text": "-- a comment; with a semicolon\ncreate temp view v as select id from range(100);\nselect count(*) as c from v where id < :lim;"})
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [l.replace(" ", "") for l in r.stdout.splitlines()]
    assert "|c|" in lines and "|3|" in lines, r.stdout
    script = tmp_path / "job.py"
    script.write_text("import sys\nprint('args', sys.argv[1:])\nprint('count', spark.range(5).count())\n")
    r, result = run_task(tmp_path, {"kind": "python", "source": str(script), "args": ["--day", "2026-11-24"]})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "args ['--day', '2026-11-24']" in r.stdout and "count 5" in r.stdout
