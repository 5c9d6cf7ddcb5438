"""Entry point of a task on a cluster's driver:

    python -m tandem_runtime.task SPEC.json
    python -m tandem_runtime.task --serve DIR

(or through spark-submit in client mode). The spec names what to run and
how; the result file receives the notebook's exit value, the task values
it set, or the error and its trace. The exit status is 0 on success.

With --serve the process is the shared driver of an all-purpose cluster:
it starts the driver's JVM and SparkContext (DIR/standby.json), hands the
JVM's gateway to the agent (DIR/gateway.json, read and removed by the
agent) and then serves task processes, which attach to that JVM instead of
starting their own (the agent gives them the gateway in their environment),
as notebooks attach to a Databricks cluster's driver. Each task still has a
Python process of its own, and a SparkSession of its own on the shared
SparkContext; its jobs carry the tag tandem-task-<id>, which the agent
cancels (DIR/cancel/<tag>) when the task's process ends."""

import time

_STARTED_MS = int(time.time() * 1000)  # when the task's process reached Python code

import importlib
import importlib.metadata
import json
import os
import runpy
import shutil
import signal
import sys
import traceback

from . import redact
from .client import Client
from .dbutils import DBUtils, NotebookExit
from .display import display
from .notebook import Runner, run_sql

MAX_RESULT = 5 * 1024 * 1024  # notebook exit values beyond this are truncated


def install_wheels(spec, base="site"):
    """Makes the task's wheel libraries importable: each wheel (a zip) is
    unpacked in the task's directory and put on sys.path, as an installer
    would lay it out, so packages with compiled modules work too and their
    entry points are found. Returns zip copies of the wheels, for the
    executors."""
    import hashlib
    import zipfile

    shared = os.environ.get("TANDEM_DRIVER_SHARED")
    paths = []
    for i, whl in enumerate(spec.get("wheels") or []):
        dest = os.path.abspath(os.path.join(base, str(i)))
        with zipfile.ZipFile(whl) as z:
            z.extractall(dest)
        sys.path.insert(0, dest)
        # PySpark ships .zip, .egg and .jar files to the executors' path,
        # not .whl: a wheel is a zip, so it goes under that name.
        as_zip = os.path.abspath(os.path.join(base, f"{i}-{os.path.basename(whl)[:-4]}.zip"))
        if shared:
            # On the shared driver the SparkContext outlives the task, and
            # it refuses a second file of one name from another path: the
            # executors' copy is named by its content, in the driver's own
            # directory, so every task with this wheel adds the same file.
            with open(whl, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:16]
            os.makedirs(os.path.join(shared, "pyfiles"), exist_ok=True)
            as_zip = os.path.join(shared, "pyfiles", f"{digest}-{os.path.basename(whl)[:-4]}.zip")
            if not os.path.exists(as_zip):
                shutil.copyfile(whl, as_zip + ".tmp")
                os.replace(as_zip + ".tmp", as_zip)
        else:
            shutil.copyfile(whl, as_zip)
        paths.append(as_zip)
    if paths:
        importlib.invalidate_caches()
    return paths


def _attach(spec):
    """Returns a SparkSession of its own on the shared driver's SparkContext,
    through the JVM gateway the agent named in the environment."""
    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    gateway = launch_gateway()  # connects: PYSPARK_GATEWAY_PORT is set
    # The gateway's secret is the task's way into the driver; it goes no
    # further than this process (not to subprocesses, not to the task's
    # view of its environment).
    os.environ.pop("PYSPARK_GATEWAY_SECRET", None)
    os.environ.pop("PYSPARK_GATEWAY_PORT", None)
    jvm = gateway.jvm
    jsc = jvm.org.apache.spark.api.java.JavaSparkContext.fromSparkContext(jvm.org.apache.spark.SparkContext.getOrCreate())
    sc = SparkContext(gateway=gateway, jsc=jsc)
    # Stopping the shared SparkContext would end every task on the driver:
    # a task's stop() only detaches it, as on a Databricks cluster.
    sc.stop = lambda: None
    spark = SparkSession(sc).newSession()  # temporary views and SQL conf of its own
    spark.stop = lambda: None
    tag = os.environ.get("TANDEM_JOB_TAG")
    if tag:
        sc.addJobTag(tag)
    sc.setLocalProperty("spark.job.description", os.environ.get("TANDEM_TASK_ID", os.path.basename(os.getcwd())))
    return spark


def spark_session(spec):
    from pyspark.sql import SparkSession

    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        return _attach(spec)

    b = SparkSession.builder.appName(spec.get("app_name") or "tandem-task")
    conf = dict(spec.get("spark_conf") or {})
    jars = [os.path.abspath(j) for j in spec.get("jars") or []]
    if jars:
        conf["spark.jars"] = ",".join(filter(None, [conf.get("spark.jars", "")] + jars))
    for k, v in conf.items():
        b = b.config(k, v)
    # With intra-cluster encryption the agent hands the cluster's RPC
    # secret in the environment. A standalone driver must have it in its
    # configuration; PySpark would put configuration given before the JVM
    # starts on the JVM's command line, so the JVM is started first and
    # the secret reaches it over the gateway: in no file and no command
    # line.
    secret = os.environ.pop("_SPARK_AUTH_SECRET", None)
    if secret:
        from pyspark import SparkContext

        SparkContext._ensure_initialized()
        b = b.config("spark.authenticate.secret", secret)
    return b.getOrCreate()


class _Timeout(BaseException):
    pass


def _with_timeout(seconds, fn):
    if not seconds or seconds <= 0:
        return fn()

    def alarm(*_):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(seconds))
    try:
        return fn()
    except _Timeout:
        raise TimeoutError(f"the notebook ran longer than {seconds} seconds")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run(spec):
    """Runs the task described by spec and returns the result document."""
    redact.install()
    # Task code can tell how long its start took (bench/jobs-real reads it).
    os.environ.setdefault("TANDEM_RUNTIME_START_MS", str(_STARTED_MS))
    client = Client.from_spec(spec)
    wheels = install_wheels(spec)
    spark = spark_session(spec)
    for whl in wheels:
        spark.sparkContext.addPyFile(whl)  # the executors import it too
    result = {}

    def fetch(path):
        if spec.get("notebooks") and path in spec["notebooks"]:
            nb = spec["notebooks"][path]
            return nb["source"], nb.get("language", "PYTHON")
        st = client.workspace_status(path)
        return client.workspace_source(path), st.get("language", "PYTHON")

    def new_namespace(dbutils):
        return {"__name__": "__main__", "spark": spark, "sc": spark.sparkContext, "dbutils": dbutils,
                "display": display, "displayHTML": print, "sql": spark.sql}

    def run_notebook(path, timeout, arguments):
        child = dict(spec, widgets={k: str(v) for k, v in arguments.items()})
        dbu = DBUtils(child, client, run_notebook)
        ns = new_namespace(dbu)
        src, lang = fetch(path)
        try:
            _with_timeout(timeout, lambda: Runner(ns, spark, fetch, display).run_source(src, lang, path))
        except NotebookExit as e:
            return e.value
        return ""

    dbutils = DBUtils(spec, client, run_notebook)
    kind = spec["kind"]
    try:
        if kind == "notebook":
            ns = new_namespace(dbutils)
            source = spec.get("source_text")
            if source is None:
                with open(spec["source"]) as f:
                    source = f.read()
            try:
                Runner(ns, spark, fetch, display).run_source(source, spec.get("language", "PYTHON"), spec.get("notebook_path", ""))
            except NotebookExit as e:
                value = redact.scrub(e.value)
                if len(value.encode()) > MAX_RESULT:
                    value = value.encode()[:MAX_RESULT].decode(errors="ignore")
                    result["truncated"] = True
                result["notebook_result"] = value
        elif kind == "python":
            sys.argv = [spec["source"]] + list(spec.get("args") or [])
            runpy.run_path(spec["source"], init_globals={"spark": spark, "dbutils": dbutils, "display": display}, run_name="__main__")
        elif kind == "sql":
            text = spec.get("source_text")
            if text is None:
                with open(spec["source"]) as f:
                    text = f.read()
            run_sql(spark, text, spec.get("widgets") or {}, display)
        elif kind == "wheel":
            run_wheel(spec)
        else:
            raise ValueError(f"unknown task kind {kind!r}")
    except SystemExit as e:
        if e.code not in (None, 0):
            raise
    finally:
        if dbutils.jobs.taskValues.values:
            result["task_values"] = dbutils.jobs.taskValues.values
    return result


def _all_entry_points():
    eps = importlib.metadata.entry_points()
    if isinstance(eps, dict):  # Python 3.10 and 3.11: groups by name
        return [ep for group in eps.values() for ep in group]
    return list(eps)


def run_wheel(spec):
    """Calls a wheel's entry point: a console script of the package, or a
    function of the package module, with the task's parameters as argv."""
    pkg, entry = spec["package_name"], spec["entry_point"]
    args = list(spec.get("args") or [])
    for k, v in (spec.get("named") or {}).items():
        args.append(f"--{k}={v}")
    sys.argv = [pkg] + args
    for ep in _all_entry_points():
        if ep.name == entry and (ep.dist is None or ep.dist.name.replace("-", "_").lower() == pkg.replace("-", "_").lower()):
            return ep.load()()
    mod = importlib.import_module(pkg.replace("-", "_"))
    fn = getattr(mod, entry, None)
    if fn is None:
        raise ValueError(f"no entry point {entry!r} in package {pkg!r}")
    return fn()


def main(argv):
    if len(argv) != 2:
        print("usage: python -m tandem_runtime.task SPEC.json", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        spec = json.load(f)
    result_file = spec.get("result_file")
    status = 0
    try:
        result = run(spec)
    except BaseException as e:  # noqa: B902 - every failure is reported
        status = 1
        trace = redact.scrub("".join(traceback.format_exception(type(e), e, e.__traceback__)))
        result = {"error": redact.scrub(f"{type(e).__name__}: {e}"), "error_trace": trace}
        sys.stderr.write(trace)
    if result_file:
        tmp = result_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f)
        os.replace(tmp, result_file)
    sys.stdout.flush()
    sys.stderr.flush()
    return status


def serve(d, poll=0.1):
    """The shared driver: starts the SparkContext of standby.json, hands its
    gateway to the agent, then cancels the jobs of tasks that ended until
    it is stopped."""
    with open(os.path.join(d, "standby.json")) as f:
        conf = json.load(f)
    spark = spark_session(conf)
    sc = spark.sparkContext
    params = sc._gateway.gateway_parameters
    gw = os.path.join(d, "gateway.json")
    fd = os.open(gw + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"port": params.port, "secret": params.auth_token}, f)
    os.replace(gw + ".tmp", gw)
    print("tandem: the shared driver is ready", flush=True)
    cancel = os.path.join(d, "cancel")
    os.makedirs(cancel, exist_ok=True)
    while True:
        for tag in sorted(os.listdir(cancel)):
            try:
                sc.cancelJobsWithTag(tag)
            except Exception as e:  # noqa: BLE001 - the driver serves on
                print(f"tandem: cancelling the jobs of {tag}: {e}", file=sys.stderr, flush=True)
            os.remove(os.path.join(cancel, tag))
        time.sleep(poll)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        sys.exit(serve(sys.argv[2]))
    sys.exit(main(sys.argv))
