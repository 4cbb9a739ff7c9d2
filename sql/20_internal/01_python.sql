-- python_init(): put this version's Python package on the session's sys.path, once per session.
-- Every PL/Python function of the extension calls it when GD does not yet name this version, so two versions
-- can coexist on disk during an upgrade. The directory is fixed at build time: no setting a role could change
-- decides what code the SECURITY DEFINER functions import.
create function splitgraph_internal.python_init() returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    import sys
    path = "@PYTHON_LIB_ROOT@/@EXTVERSION@"
    previous = GD.get("splitgraph_path")
    if previous in sys.path:
        sys.path.remove(previous)
    for name in [m for m in sys.modules if m == "splitgraph_pl" or m.startswith("splitgraph_pl.")]:
        del sys.modules[name]
    sys.path.insert(0, path)
    GD["splitgraph_path"] = path
    GD["splitgraph"] = "@EXTVERSION@"
$$;
