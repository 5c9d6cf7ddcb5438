"""Fixtures that run a real `tandem server` (TLS on loopback) for the
official Databricks Python SDK and the databricks-cli to talk to."""
import os
import secrets
import socket
import sys
import threading
import subprocess
import time
import urllib.request
import ssl

import pytest


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortRewritingProxy:
    """An HTTPS proxy (CONNECT only) that sends every tunnel to the server's
    port. The legacy databricks-cli 0.18 drops the port from the host it is
    given (it always dials 443); through this proxy it reaches the server on
    its free port, over the same end-to-end TLS."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, conn):
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            if not head.startswith(b"CONNECT 127.0.0.1:"):
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                return
            up = socket.create_connection(("127.0.0.1", self.target_port))
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
        except OSError:
            conn.close()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


class Tandem:
    def __init__(self, data_dir):
        self.data_dir = str(data_dir)
        self.port = _free_port()
        self.host = f"https://127.0.0.1:{self.port}"
        self.token = "dapi" + secrets.token_hex(16)
        self.ca_file = os.path.join(self.data_dir, "tls", "ca.pem")
        self.log = open(os.path.join(self.data_dir, "server.log"), "w")
        env = dict(os.environ, TANDEM_BOOTSTRAP_TOKEN=self.token)
        binary = os.environ.get("TANDEM_BIN", "bin/tandem")
        self.proc = subprocess.Popen(
            [binary, "server", "--data-dir", self.data_dir, "--listen", f"127.0.0.1:{self.port}", "--region", "pytest"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait()
        self.proxy = PortRewritingProxy(self.port)

    def _wait(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("tandem server exited; see " + self.log.name)
            try:
                ctx = ssl.create_default_context(cafile=self.ca_file)
                with urllib.request.urlopen(self.host + "/healthz", context=ctx, timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("tandem server did not become healthy")

    def env(self, token=None):
        """Environment for the SDK and CLI: host, token and the CA bundle."""
        return dict(os.environ,
                    DATABRICKS_HOST=self.host,
                    DATABRICKS_TOKEN=token or self.token,
                    REQUESTS_CA_BUNDLE=self.ca_file,
                    SSL_CERT_FILE=self.ca_file,
                    DATABRICKS_CONFIG_FILE=os.path.join(self.data_dir, "no-such-config"))

    def client(self, token=None):
        from databricks.sdk import WorkspaceClient
        os.environ["REQUESTS_CA_BUNDLE"] = self.ca_file
        return WorkspaceClient(host=self.host, token=token or self.token, auth_type="pat")

    def cli(self, *args, token=None, check=True, input=None):
        """Runs the databricks-cli 0.18 as a user types it."""
        home = os.path.join(self.data_dir, "cli-home")
        os.makedirs(home, exist_ok=True)
        env = self.env(token)
        env["HOME"] = home
        env["HTTPS_PROXY"] = f"http://127.0.0.1:{self.proxy.port}"
        env.pop("NO_PROXY", None)
        env.pop("no_proxy", None)
        r = subprocess.run([os.path.join(sys.prefix, "bin", "databricks"), *args], env=env,
                           capture_output=True, text=True, input=input, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"databricks {' '.join(args)} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def stop(self):
        self.proxy.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def tandem(tmp_path_factory):
    t = Tandem(tmp_path_factory.mktemp("tandem"))
    yield t
    t.stop()
