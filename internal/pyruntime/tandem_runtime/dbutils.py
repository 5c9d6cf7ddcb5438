"""dbutils for Tandem tasks: fs, secrets, widgets, notebook and
jobs.taskValues, with Databricks' names and behaviour."""

import json
import os
import shutil
from collections import namedtuple

from .client import APIError, dbfs_path, local_path
from . import redact

FileInfo = namedtuple("FileInfo", ["path", "name", "size", "modificationTime"])


class NotebookExit(BaseException):
    """Raised by dbutils.notebook.exit: ends the notebook with a value.

    A BaseException, so a notebook's own `except Exception` does not stop it."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


class InputWidgetNotDefined(Exception):
    pass


def _need_client(client):
    if client is None:
        raise RuntimeError("This task has no access to the workspace API (no api in the task spec).")
    return client


class FS:
    def __init__(self, client):
        self._client = client

    def _c(self):
        return _need_client(self._client)

    def ls(self, path):
        local = local_path(path)
        if local:
            out = []
            for name in sorted(os.listdir(local)):
                p = os.path.join(local, name)
                st = os.stat(p)
                out.append(FileInfo("file:" + p + ("/" if os.path.isdir(p) else ""), name + ("/" if os.path.isdir(p) else ""),
                                    0 if os.path.isdir(p) else st.st_size, int(st.st_mtime * 1000)))
            return out
        out = []
        for f in self._c().dbfs_list(dbfs_path(path)):
            name = f["path"].rstrip("/").split("/")[-1] + ("/" if f.get("is_dir") else "")
            out.append(FileInfo("dbfs:" + f["path"] + ("/" if f.get("is_dir") else ""), name,
                                f.get("file_size", 0), f.get("modification_time", 0)))
        return out

    def head(self, path, maxBytes=65536):
        local = local_path(path)
        if local:
            with open(local, "rb") as f:
                return f.read(maxBytes).decode(errors="replace")
        return self._c().dbfs_read_all(dbfs_path(path), limit=maxBytes).decode(errors="replace")

    def put(self, path, contents, overwrite=False):
        data = contents.encode() if isinstance(contents, str) else contents
        local = local_path(path)
        if local:
            if os.path.exists(local) and not overwrite:
                raise FileExistsError(f"{path} already exists")
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "wb") as f:
                f.write(data)
            return True
        self._c().dbfs_write(dbfs_path(path), data, overwrite=overwrite)
        return True

    def mkdirs(self, path):
        local = local_path(path)
        if local:
            os.makedirs(local, exist_ok=True)
            return True
        self._c().call("POST", "/api/2.0/dbfs/mkdirs", body={"path": dbfs_path(path)})
        return True

    def rm(self, path, recurse=False):
        local = local_path(path)
        if local:
            if os.path.isdir(local):
                if recurse:
                    shutil.rmtree(local)
                else:
                    os.rmdir(local)
            else:
                os.remove(local)
            return True
        try:
            self._c().call("POST", "/api/2.0/dbfs/delete", body={"path": dbfs_path(path), "recursive": recurse})
        except APIError as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        return True

    def _read(self, path):
        local = local_path(path)
        if local:
            with open(local, "rb") as f:
                return f.read()
        return self._c().dbfs_read_all(dbfs_path(path))

    def _is_dir(self, path):
        local = local_path(path)
        if local:
            return os.path.isdir(local)
        return self._c().dbfs_status(dbfs_path(path)).get("is_dir", False)

    def cp(self, src, dst, recurse=False):
        if self._is_dir(src):
            if not recurse:
                raise IsADirectoryError(f"{src} is a directory; use recurse=True")
            self.mkdirs(dst)
            for f in self.ls(src):
                self.cp(f.path, dst.rstrip("/") + "/" + f.name.rstrip("/"), recurse=True)
            return True
        return self.put(dst, self._read(src), overwrite=True)

    def mv(self, src, dst, recurse=False):
        if local_path(src) is None and local_path(dst) is None:
            self._c().call("POST", "/api/2.0/dbfs/move", body={"source_path": dbfs_path(src), "destination_path": dbfs_path(dst)})
            return True
        self.cp(src, dst, recurse=recurse)
        return self.rm(src, recurse=recurse)


class SecretMetadata(namedtuple("SecretMetadata", ["key"])):
    pass


class SecretScope(namedtuple("SecretScope", ["name"])):
    pass


class Secrets:
    def __init__(self, client):
        self._client = client

    def getBytes(self, scope, key):
        value = _need_client(self._client).secret(scope, key)
        redact.register(value)
        return value

    def get(self, scope, key):
        value = self.getBytes(scope, key).decode()
        redact.register(value)
        return value

    def list(self, scope):
        return [SecretMetadata(k) for k in _need_client(self._client).secret_keys(scope)]

    def listScopes(self):
        return [SecretScope(s) for s in _need_client(self._client).secret_scopes()]


class Widgets:
    def __init__(self, values):
        self._values = dict(values or {})
        self._defaults = {}

    def get(self, name):
        if name in self._values:
            return self._values[name]
        if name in self._defaults:
            return self._defaults[name]
        raise InputWidgetNotDefined(f"No input widget named {name} is defined")

    def getArgument(self, name, defaultValue=None):
        try:
            return self.get(name)
        except InputWidgetNotDefined:
            return defaultValue

    def getAll(self):
        out = dict(self._defaults)
        out.update(self._values)
        return out

    def text(self, name, defaultValue="", label=None):
        self._defaults[name] = defaultValue

    def dropdown(self, name, defaultValue, choices, label=None):
        if defaultValue not in choices:
            raise ValueError(f"default value {defaultValue!r} is not one of the choices")
        self._defaults[name] = defaultValue

    def combobox(self, name, defaultValue, choices, label=None):
        self._defaults[name] = defaultValue

    def multiselect(self, name, defaultValue, choices, label=None):
        self._defaults[name] = defaultValue

    def remove(self, name):
        self._defaults.pop(name, None)

    def removeAll(self):
        self._defaults.clear()


class TaskValues:
    def __init__(self, upstream, in_job):
        self._upstream = upstream or {}
        self._in_job = in_job
        self.values = {}

    def set(self, key, value):
        json.dumps(value)  # must be JSON-serialisable, as in Databricks
        self.values[key] = value

    def get(self, taskKey, key, default=None, debugValue=None):
        vals = self._upstream.get(taskKey, {})
        if key in vals:
            return vals[key]
        if not self._in_job and debugValue is not None:
            return debugValue
        if default is not None:
            return default
        raise ValueError(f"No task value {key!r} from task {taskKey!r}")


class Jobs:
    def __init__(self, task_values):
        self.taskValues = task_values


class Notebook:
    def __init__(self, runner):
        self._runner = runner

    def exit(self, value):
        raise NotebookExit("" if value is None else str(value))

    def run(self, path, timeout_seconds=0, arguments=None):
        return self._runner(path, timeout_seconds, arguments or {})


class DBUtils:
    """The dbutils object of a task."""

    def __init__(self, spec, client, run_notebook=None):
        self.fs = FS(client)
        self.secrets = Secrets(client)
        self.widgets = Widgets(spec.get("widgets"))
        self.jobs = Jobs(TaskValues(spec.get("task_values"), bool(spec.get("run_id"))))
        self.notebook = Notebook(run_notebook or (lambda *a: (_ for _ in ()).throw(RuntimeError("notebook.run is not available here"))))

    def help(self):
        print("dbutils: fs, secrets, widgets, notebook, jobs.taskValues")
