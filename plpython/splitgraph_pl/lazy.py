"""Third-party packages imported on first use. pyarrow, numpy and minio take about a second to import into a
backend, and every function imports the modules of its code with them: a session that never reads or writes Parquet
nor talks to object storage (a checkout, a commit) would pay it once all the same. A module names such a package at
its top, as an import would (`pa = lazy.Module("pyarrow")`), and the package is imported when code first reads one
of its attributes."""
import importlib


class Module:
    """A package (or one of its modules) imported when an attribute is first read from it."""
    __slots__ = ("_name", "_module")

    def __init__(self, name):
        self._name, self._module = name, None

    def __getattr__(self, attribute):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)
