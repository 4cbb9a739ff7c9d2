"""Repositories: creating, listing and deleting them."""
from . import checkout, db, errors, meta, names, tracking
from .declare import api


@api("init(repository text) returns void",
     "init(repository): create an empty repository (root image 000..0, branch main) and check it out into the "
     "schema of the same name")
def init(plpy, repository):
    repo = meta.writable(plpy, repository, must_exist=False)
    # a concurrent init of the same name waits here for this one, then finds it taken
    if not db.column(plpy, """insert into splitgraph_meta.repositories (repository) values ($1)
                              on conflict (repository) do nothing returning repository""", repo):
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'repository "{repo}" already exists',
                    hint="check it out with splitgraph.checkout, or delete it with splitgraph.rm")
    db.run(plpy, "insert into splitgraph_meta.images (repository, image_hash) values ($1, $2)", repo, meta.ROOT)
    db.run(plpy, "insert into splitgraph_meta.branches (repository, branch, image_hash) values ($1, 'main', $2)",
           repo, meta.ROOT)
    db.run(plpy, "insert into splitgraph_meta.checkouts (repository, image_hash, branch) values ($1, $2, 'main')",
           repo, meta.ROOT)
    checkout.create_schema(plpy, repo)


@api("repositories() returns table (repository text, head text, branch text, checked_out boolean, images "
     "integer, upstream text)",
     "repositories(): all local repositories: HEAD, the branch followed, whether checked out, number of images, "
     "upstream",
     volatility="stable")
def repositories(plpy):
    return db.run(plpy, """
        select r.repository, c.image_hash as head, c.branch, c.repository is not null as checked_out,
               (select count(*) from splitgraph_meta.images i where i.repository = r.repository)::int as images,
               u.remote_name || ':' || u.remote_repository as upstream
        from splitgraph_meta.repositories r
        left join splitgraph_meta.checkouts c on c.repository = r.repository
        left join splitgraph_meta.upstream u on u.repository = r.repository
        order by r.repository""")


@api("rm(repository text, force boolean default false) returns void",
     "rm(repository, force): delete a repository: its images, tags, branches and checkout (force: even with "
     "pending changes); objects stay until cleanup()")
def rm(plpy, repository, force=False):
    repo = meta.writable(plpy, repository)
    if meta.checkout_state(plpy, repo) is not None:
        tracking.forget_schema(plpy, names.schema_of(repo))
        plpy.execute(f"drop schema if exists {names.ident(names.schema_of(repo))} cascade")
    db.run(plpy, "delete from splitgraph_meta.repositories where repository = $1", repo)
