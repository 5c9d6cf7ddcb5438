"""display(): the textual form of Databricks' table display, for task logs."""

MAX_ROWS = 1000


def display(obj, *args, **kwargs):
    if hasattr(obj, "show") and hasattr(obj, "schema"):  # a Spark DataFrame
        obj.show(n=MAX_ROWS, truncate=False)
        return
    if hasattr(obj, "to_string"):  # pandas
        print(obj.head(MAX_ROWS).to_string())
        return
    print(obj)
