"""Runs notebooks in Databricks' SOURCE format cell by cell: Python cells are
executed, SQL cells go through spark.sql, and the magics %python, %sql,
%md, %sh and %run work as in Databricks."""

import re
import shlex
import subprocess
import sys

_COMMENT = {"PYTHON": "#", "R": "#", "SQL": "--", "SCALA": "//"}


def parse(source, language):
    """Splits SOURCE text into cells (strings, magics restored)."""
    c = _COMMENT.get(language, "#")
    header, sep, magic = c + " Databricks notebook source", c + " COMMAND ----------", c + " MAGIC "
    lines = source.replace("\r\n", "\n").split("\n")
    if lines and lines[0].strip() == header:
        lines = lines[1:]
    cells, cur = [], []
    for line in lines:
        if line.strip() == sep:
            cells.append("\n".join(cur).strip("\n"))
            cur = []
            continue
        if line.startswith(magic):
            line = line[len(magic):]
        elif line.strip() == magic.strip():
            line = ""
        cur.append(line)
    cells.append("\n".join(cur).strip("\n"))
    return [x for x in cells if x.strip()]


def split_sql(text):
    """Splits SQL text into statements at semicolons outside quotes and comments."""
    out, cur, i, quote = [], [], 0, None
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            elif ch == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
        elif ch in ("'", '"', "`"):
            quote = ch
            cur.append(ch)
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
            continue
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = len(text) if j < 0 else j + 2
            continue
        elif ch == ";":
            stmt = "".join(cur).strip()
            if stmt:
                out.append(stmt)
            cur = []
        else:
            cur.append(ch)
        i += 1
    stmt = "".join(cur).strip()
    if stmt:
        out.append(stmt)
    return out


_LEGACY_PARAM = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")


def run_sql(spark, text, params, display):
    """Runs SQL statements; parameters bind to :name markers, and legacy
    {{name}} references are substituted. The last result is displayed."""
    text = _LEGACY_PARAM.sub(lambda m: str(params.get(m.group(1), m.group(0))), text)
    result = None
    for stmt in split_sql(text):
        used = {k: v for k, v in (params or {}).items() if re.search(r":" + re.escape(k) + r"\b", stmt)}
        result = spark.sql(stmt, args=used) if used else spark.sql(stmt)
    if result is not None and len(result.columns) > 0:
        display(result)
    return result


class Runner:
    """Executes notebooks with a shared namespace and a notebook fetcher."""

    def __init__(self, namespace, spark, fetch, display):
        self.ns = namespace
        self.spark = spark
        self.fetch = fetch  # path -> (source, language)
        self.display = display

    def run_source(self, source, language, path="", ns=None):
        ns = self.ns if ns is None else ns
        for cell in parse(source, language):
            self.run_cell(cell, language, path, ns)

    def run_cell(self, cell, language, path, ns):
        stripped = cell.lstrip()
        if stripped.startswith("%"):
            first, _, body = stripped.partition("\n")
            magic = first.split()[0]
            if magic == "%md" or magic == "%md-sandbox":
                return
            if magic == "%python":
                return self._exec(body, path, ns)
            if magic == "%sql":
                return run_sql(self.spark, body, ns.get("dbutils").widgets.getAll() if ns.get("dbutils") else {}, self.display)
            if magic == "%sh":
                r = subprocess.run(["bash", "-c", body], capture_output=True, text=True)
                sys.stdout.write(r.stdout)
                sys.stderr.write(r.stderr)
                if r.returncode != 0:
                    raise RuntimeError(f"%sh cell exited with status {r.returncode}")
                return
            if magic == "%run":
                args = shlex.split(first)[1:]
                if not args:
                    raise ValueError("%run needs a notebook path")
                target = resolve(path, args[0])
                src, lang = self.fetch(target)
                return self.run_source(src, lang, target, ns)
            if magic in ("%pip", "%conda"):
                raise RuntimeError(f"{magic} is not supported in Tandem tasks; declare libraries on the task instead")
            raise ValueError(f"unknown magic command {magic}")
        if language == "SQL":
            return run_sql(self.spark, cell, ns.get("dbutils").widgets.getAll() if ns.get("dbutils") else {}, self.display)
        return self._exec(cell, path, ns)

    def _exec(self, code, path, ns):
        exec(compile(code, path or "<notebook>", "exec"), ns)


def resolve(base, target):
    """Resolves a notebook path relative to the notebook that names it."""
    if target.startswith("/"):
        return target
    parts = base.split("/")[:-1] if base else [""]
    for p in target.split("/"):
        if p == "..":
            if len(parts) > 1:
                parts.pop()
        elif p and p != ".":
            parts.append(p)
    return "/".join(parts) or "/"
