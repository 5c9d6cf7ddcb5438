"""A small client for the REST API a task may call: DBFS, workspace exports
and secrets. On a cluster the agent serves it on a local socket and relays
calls over its own channel to the control plane, as the task's principal;
in tests it can be a Tandem server itself. Only the standard library is
used, so the runtime needs nothing installed beside pyspark."""

import base64
import http.client
import json
import os
import socket
import ssl
import urllib.parse


class APIError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"{code}: {message}" if code else message)
        self.status = status
        self.error_code = code
        self.message = message


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Client:
    """Calls the API at base_url (https://host:port) or through a unix socket."""

    def __init__(self, base_url=None, token=None, ca_file=None, unix_socket=None, timeout=60):
        self.base = urllib.parse.urlparse(base_url) if base_url else None
        self.token = token
        self.ca_file = ca_file
        self.unix_socket = unix_socket
        self.timeout = timeout

    @classmethod
    def from_spec(cls, spec):
        api = spec.get("api") or {}
        if not api:
            return None
        return cls(api.get("base_url"), api.get("token"), api.get("ca_file"), api.get("unix_socket"))

    def _conn(self):
        if self.unix_socket:
            return _UnixHTTPConnection(self.unix_socket, timeout=self.timeout)
        if self.base.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else ssl.create_default_context()
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            return http.client.HTTPSConnection(self.base.hostname, self.base.port or 443, context=ctx, timeout=self.timeout)
        return http.client.HTTPConnection(self.base.hostname, self.base.port or 80, timeout=self.timeout)

    def call(self, method, path, query=None, body=None, raw=False):
        if query:
            path = path + "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._conn()
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                err = json.loads(payload)
                raise APIError(resp.status, err.get("error_code", ""), err.get("message", ""))
            except ValueError:
                raise APIError(resp.status, "", payload.decode(errors="replace"))
        if raw:
            return payload
        return json.loads(payload) if payload else {}

    # DBFS

    def dbfs_status(self, path):
        return self.call("GET", "/api/2.0/dbfs/get-status", {"path": path})

    def dbfs_list(self, path):
        return self.call("GET", "/api/2.0/dbfs/list", {"path": path}).get("files", [])

    def dbfs_read_all(self, path, limit=None):
        size = self.dbfs_status(path).get("file_size", 0)
        if limit is not None:
            size = min(size, limit)
        out = bytearray()
        while len(out) < size:
            n = min(1 << 20, size - len(out))
            r = self.call("GET", "/api/2.0/dbfs/read", {"path": path, "offset": len(out), "length": n})
            if not r.get("bytes_read"):
                break
            out += base64.b64decode(r["data"])
        return bytes(out)

    def dbfs_write(self, path, data, overwrite=False):
        h = self.call("POST", "/api/2.0/dbfs/create", body={"path": path, "overwrite": overwrite})["handle"]
        for i in range(0, len(data), 1 << 20):
            self.call("POST", "/api/2.0/dbfs/add-block", body={"handle": h, "data": base64.b64encode(data[i:i + (1 << 20)]).decode()})
        self.call("POST", "/api/2.0/dbfs/close", body={"handle": h})

    # Workspace

    def workspace_source(self, path):
        r = self.call("GET", "/api/2.0/workspace/export", {"path": path, "format": "SOURCE"})
        return base64.b64decode(r["content"]).decode()

    def workspace_status(self, path):
        return self.call("GET", "/api/2.0/workspace/get-status", {"path": path})

    # Secrets

    def secret(self, scope, key):
        r = self.call("GET", "/api/2.0/secrets/get", {"scope": scope, "key": key})
        return base64.b64decode(r["value"])

    def secret_keys(self, scope):
        return [s["key"] for s in self.call("GET", "/api/2.0/secrets/list", {"scope": scope}).get("secrets", [])]

    def secret_scopes(self):
        return [s["name"] for s in self.call("GET", "/api/2.0/secrets/scopes/list").get("scopes", [])]


def local_path(path):
    """Returns the local path of a file: URI, or None for a DBFS path."""
    if path.startswith("file:"):
        p = path[len("file:"):]
        return p if p.startswith("/") else "/" + p
    return None


def dbfs_path(path):
    if path.startswith("dbfs:"):
        path = path[len("dbfs:"):] or "/"
    if not path.startswith("/"):
        raise ValueError(f"{path} is not an absolute DBFS path (dbfs:/... or /...)")
    return path


def exists_local(path):
    return os.path.exists(path)
