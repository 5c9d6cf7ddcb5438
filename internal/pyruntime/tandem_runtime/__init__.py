"""Tandem's task runtime: runs notebooks, Python files, SQL and wheel entry
points on a cluster's driver, with `spark` bound to the cluster and
`dbutils` and `display()` available as in Databricks."""

__all__ = ["DBUtils", "display"]

from .dbutils import DBUtils  # noqa: E402
from .display import display  # noqa: E402
