"""A store URL's password never reaches a file or a message: search, export, report and results, end to end.

Runs on SQLite (the password as a ``?password=`` query parameter, which libpq
accepts and SQLAlchemy's own masking misses) and on PostgreSQL when
``SLIVER_TEST_POSTGRES_URL`` names a server (a password is added to a URL
without one: ``.ci/postgres`` starts a trust-authentication server that accepts it).
"""

import os
import uuid
import warnings

import pytest
import yaml
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from sliver.cli import app
from sliver.store import hide_password

PG_URL = os.environ.get("SLIVER_TEST_POSTGRES_URL")
SQLITE_SECRET = "S3cr3tPW-sqlite"
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from sliver.elastic.mobilenet import ElasticMobileNet
    from sliver.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = ElasticMobileNet.from_preset("digits")
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    save_checkpoint(path, {"model": net.state_dict(), "supernet": net.supernet_config(),
                           "data": {"name_or_path": "digits", "seed": 0}})
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """A store URL carrying a password, and the password."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}?password={SQLITE_SECRET}", SQLITE_SECRET
    if not PG_URL:
        pytest.skip("no PostgreSQL server: set SLIVER_TEST_POSTGRES_URL (bash .ci/postgres start prints one)")
    url = make_url(PG_URL)
    if not url.password:  # the trust-authentication server of .ci/postgres accepts any password
        url = url.set(password="S3cr3tPW-postgres")
    return url.render_as_string(hide_password=False), url.password


def test_hide_password_masks_query_parameters_and_unparseable_urls():
    assert hide_password("postgresql+psycopg2://alice@db/sliver?password=S3cr3t&sslmode=require") == \
        "postgresql+psycopg2://alice@db/sliver?password=***&sslmode=require"
    assert hide_password("sqlite:///x.db?sslpassword=a&token=b&mode=ro") == "sqlite:///x.db?mode=ro&sslpassword=***&token=***"
    assert hide_password("postgresql://alice:S3cr3t@host:port/db") == "postgresql://alice:***@host:port/db"


def test_the_password_is_never_written_or_printed(store_url, checkpoint, tmp_path):
    url, password = store_url
    study = f"secret-{uuid.uuid4().hex[:8]}"  # a PostgreSQL store is shared between runs
    run = tmp_path / "run"
    run.mkdir()
    search_yaml = run / "search.yaml"
    search_yaml.write_text(yaml.safe_dump({
        "problem": {"kind": "supernet", "checkpoint": str(checkpoint), "target": "cpu-torch-b1", "accuracy_subset": 0.25},
        "objectives": ["accuracy", "params"], "strategy": {"name": "random"}, "budget": 3, "seed": 0,
        "store": url, "study": study,
    }))
    outputs = []

    def sliver(*args: str, ok: bool = True) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLAlchemy warns that SQLite ignores the password parameter
            result = runner.invoke(app, list(args))
        outputs.append(result.output + str(result.exception or ""))
        assert (result.exit_code == 0) == ok, result.output

    sliver("search", str(search_yaml))
    sliver("export", str(search_yaml), "--pick", "knee", "--out", str(run / "exports" / "knee"))
    sliver("report", str(search_yaml), "--out", str(run / "report"))
    sliver("results", "list", "--db", url)
    sliver("results", "show", study, "--format", "json", "--db", url)
    # the error paths name the store too
    sliver("results", "show", "nosuch", "--db", url, ok=False)
    sliver("export", str(search_yaml), "--study", "nosuch", "--out", str(run / "x"), ok=False)
    sliver("report", str(search_yaml), "--study", "nosuch", "--out", str(run / "y"), ok=False)
    if url.startswith("sqlite"):
        sliver("results", "list", "--db", url.replace("store.db", "missing.db"), ok=False)

    # every file sliver wrote: not the user's own search.yaml, nor the SQLite store (the database itself)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p not in (search_yaml, tmp_path / "store.db")]
    assert {"card.json", "card.md", "model.pt", "report.html"} <= {p.name for p in written}
    for path in written:
        assert password.encode() not in path.read_bytes(), f"{path} holds the password"
    for text in outputs:
        assert password not in text, text
    card = yaml.safe_load((run / "exports" / "knee" / "card.json").read_text())
    assert card["store"] == hide_password(url) and "***" in card["store"]
