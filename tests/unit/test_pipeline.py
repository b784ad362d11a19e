"""The pipeline file: parsing, environment references, errors that name the field, filters."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.pipeline import BinlogSource, Pipeline, SqlSink, TableFilter, parse_pipeline

VALID = """
sources:
  - name: shop
    url: mysql://cdc:s3cret-src@db.example:3306
    server_id: 4001
    tables:
      include: ["shop.*"]
      exclude: ["shop.tmp_*"]
    snapshot: never
    topic_prefix: cdc.shop
sinks:
  - name: warehouse
    url: postgresql+psycopg://wh:s3cret-sink@pg.example/wh
    source: shop
    target_schema: mirror
    table_name: "{database}_{table}"
  - name: archive
    url: sqlite:///archive.db
    source: shop
"""


def test_valid_example_parses_into_typed_models() -> None:
    p = parse_pipeline(VALID)
    assert isinstance(p, Pipeline)
    (src,) = p.sources
    assert isinstance(src, BinlogSource)
    assert src.name == "shop"
    assert src.kind == "binlog"
    assert src.server_id == 4001
    assert src.url.get_secret_value() == "mysql://cdc:s3cret-src@db.example:3306"
    assert src.tables == TableFilter(include=("shop.*",), exclude=("shop.tmp_*",))
    assert src.snapshot == "never"
    assert src.topic_prefix == "cdc.shop"
    assert p.source("shop") is src
    with pytest.raises(KeyError):
        p.source("nope")

    wh, archive = p.sinks
    assert isinstance(wh, SqlSink)
    assert (wh.name, wh.kind, wh.source, wh.mode, wh.consistency) == (
        "warehouse",
        "sql",
        "shop",
        "upsert",
        "at_least_once",
    )
    assert wh.url.get_secret_value() == "postgresql+psycopg://wh:s3cret-sink@pg.example/wh"
    assert wh.target_schema == "mirror"
    assert wh.table_name == "{database}_{table}"
    # Defaults.
    assert archive.table_name == "{table}"
    assert archive.target_schema is None
    assert archive.tables == TableFilter()


def test_source_defaults() -> None:
    p = parse_pipeline("sources: [{name: s1, url: 'mysql://h', server_id: 1}]")
    (src,) = p.sources
    assert src.snapshot == "initial"
    assert src.topic_prefix == "sluice"
    assert src.tables.include == ("*.*",)
    assert src.tables.exclude == ()
    assert p.sinks == ()


def test_env_references_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_T_SRC_PW", "pw-from-env")
    monkeypatch.setenv("SLUICE_T_SERVER_ID", "77")
    monkeypatch.delenv("SLUICE_T_HOST", raising=False)
    monkeypatch.setenv("SLUICE_T_SINK_URL", "sqlite:///from-env.db")
    text = """
sources:
  - name: s1
    url: mysql://cdc:${SLUICE_T_SRC_PW}@${SLUICE_T_HOST:-db.default}:3306
    server_id: ${SLUICE_T_SERVER_ID}
sinks:
  - name: k1
    url: ${SLUICE_T_SINK_URL:-sqlite:///unused.db}
    source: s1
    tables: {include: ["${SLUICE_T_UNSET_DB:-shop}.*"]}
"""
    monkeypatch.delenv("SLUICE_T_UNSET_DB", raising=False)
    p = parse_pipeline(text)
    assert p.sources[0].url.get_secret_value() == "mysql://cdc:pw-from-env@db.default:3306"
    assert p.sources[0].server_id == 77
    # A set variable wins over its default.
    assert p.sinks[0].url.get_secret_value() == "sqlite:///from-env.db"
    # References inside lists are expanded too.
    assert p.sinks[0].tables.include == ("shop.*",)


def test_env_default_may_be_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_T_EMPTY", raising=False)
    p = parse_pipeline(
        "sources: [{name: s1, url: 'mysql://u:${SLUICE_T_EMPTY:-}@h', server_id: 1}]"
    )
    assert p.sources[0].url.get_secret_value() == "mysql://u:@h"


def test_env_variable_set_to_empty_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_T_EMPTY", "")
    p = parse_pipeline(
        "sources: [{name: s1, url: 'mysql://u:${SLUICE_T_EMPTY:-dflt}@h', server_id: 1}]"
    )
    assert p.sources[0].url.get_secret_value() == "mysql://u:@h"


def test_unset_env_without_default_is_an_error_naming_variable_and_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLUICE_T_MISSING_PW", raising=False)
    text = """
sources:
  - name: s1
    url: mysql://cdc:${SLUICE_T_MISSING_PW}@h
    server_id: 1
"""
    with pytest.raises(ConfigError) as exc:
        parse_pipeline(text, origin="pipeline.yaml")
    msg = str(exc.value)
    assert "SLUICE_T_MISSING_PW" in msg
    assert "sources[0].url" in msg
    assert "pipeline.yaml" in msg


def test_unknown_field_is_an_error_naming_it() -> None:
    text = """
sources:
  - name: s1
    url: mysql://h
    server_id: 1
    sever_id_typo: 2
"""
    with pytest.raises(ConfigError) as exc:
        parse_pipeline(text, origin="p.yaml")
    msg = str(exc.value)
    assert "sever_id_typo" in msg
    assert "sources.0" in msg
    assert msg.startswith("p.yaml")


def test_unknown_top_level_field_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="destinations"):
        parse_pipeline("sources: [{name: s1, url: 'mysql://h', server_id: 1}]\ndestinations: []")


def test_invalid_value_names_the_field() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_pipeline("sources: [{name: s1, url: 'mysql://h', server_id: 0}]")
    assert "sources.0.server_id" in str(exc.value)


def test_missing_required_field_names_it() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_pipeline("sources: [{name: s1, url: 'mysql://h'}]")
    assert "sources.0.server_id" in str(exc.value)


def test_no_sources_is_an_error() -> None:
    with pytest.raises(ConfigError, match="sources"):
        parse_pipeline("sources: []")


def test_sink_referring_to_missing_source_is_an_error() -> None:
    text = """
sources: [{name: s1, url: 'mysql://h', server_id: 1}]
sinks: [{name: k1, url: 'sqlite://', source: s2}]
"""
    with pytest.raises(ConfigError) as exc:
        parse_pipeline(text)
    msg = str(exc.value)
    assert "k1" in msg
    assert "s2" in msg


def test_duplicate_sink_names_are_an_error() -> None:
    text = """
sources: [{name: s1, url: 'mysql://h', server_id: 1}]
sinks:
  - {name: k1, url: 'sqlite://', source: s1}
  - {name: k1, url: 'sqlite://', source: s1}
"""
    with pytest.raises(ConfigError) as exc:
        parse_pipeline(text)
    msg = str(exc.value)
    assert "sinks" in msg
    assert "unique" in msg


def test_duplicate_source_names_are_an_error() -> None:
    text = """
sources:
  - {name: s1, url: 'mysql://h', server_id: 1}
  - {name: s1, url: 'mysql://h2', server_id: 2}
"""
    with pytest.raises(ConfigError, match="unique"):
        parse_pipeline(text)


def test_table_name_must_contain_table() -> None:
    text = """
sources: [{name: s1, url: 'mysql://h', server_id: 1}]
sinks: [{name: k1, url: 'sqlite://', source: s1, table_name: 'fixed'}]
"""
    with pytest.raises(ConfigError, match=r"sinks\.0\.table_name"):
        parse_pipeline(text)


@pytest.mark.parametrize(
    "text",
    [
        "sources: [{name: s1, url: 'mysql://h', server_id: 1}",  # unclosed flow sequence
        "sources:\n  - name: s1\n   url: x\n",  # bad indentation
        "key: 'unterminated",
    ],
)
def test_invalid_yaml_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_pipeline(text, origin="broken.yaml")
    assert "broken.yaml" in str(exc.value)
    assert "YAML" in str(exc.value)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string"])
def test_not_a_mapping_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        parse_pipeline(text)


@pytest.mark.parametrize(
    ("f", "database", "table", "expected"),
    [
        (TableFilter(), "shop", "orders", True),
        (TableFilter(), "any", "thing", True),
        (TableFilter(include=("shop.*",)), "shop", "orders", True),
        (TableFilter(include=("shop.*",)), "crm", "orders", False),
        (TableFilter(include=("shop.orders",)), "shop", "orders_old", False),
        (TableFilter(include=("shop.order?",)), "shop", "orders", True),
        (TableFilter(include=("shop.order?",)), "shop", "order", False),
        (TableFilter(include=("shop.*", "crm.customers")), "crm", "customers", True),
        (TableFilter(include=("shop.*", "crm.customers")), "crm", "leads", False),
        (TableFilter(exclude=("shop.tmp_*",)), "shop", "tmp_import", False),
        (TableFilter(exclude=("shop.tmp_*",)), "shop", "orders", True),
        (TableFilter(exclude=("*.audit",)), "crm", "audit", False),
        # Exclude wins over include.
        (TableFilter(include=("shop.*",), exclude=("shop.orders",)), "shop", "orders", False),
        # Case-sensitive, like table names on Linux.
        (TableFilter(include=("shop.*",)), "Shop", "orders", False),
        # Character classes.
        (TableFilter(include=("shop.t[0-9]",)), "shop", "t7", True),
        (TableFilter(include=("shop.t[0-9]",)), "shop", "tx", False),
    ],
)
def test_table_filter(f: TableFilter, database: str, table: str, expected: bool) -> None:
    assert f.matches(database, table) is expected


def test_urls_are_secret_in_repr_and_str() -> None:
    p = parse_pipeline(VALID)
    for text in (repr(p), str(p), repr(p.sources[0]), repr(p.sinks[0])):
        assert "s3cret-src" not in text
        assert "s3cret-sink" not in text
        assert "db.example" not in text
    assert "s3cret-src" not in p.model_dump_json()


def test_models_are_frozen() -> None:
    p = parse_pipeline(VALID)
    with pytest.raises(Exception, match="frozen"):
        p.sources[0].server_id = 5  # type: ignore[misc]


def _one_sink(sink: str) -> SqlSink:
    text = f"sources: [{{name: s1, url: 'mysql://h', server_id: 1}}]\nsinks: [{sink}]\n"
    (parsed,) = parse_pipeline(text).sinks
    assert isinstance(parsed, SqlSink)
    return parsed


def test_append_mode_and_exactly_once_parse_with_the_change_log_default_name() -> None:
    s = _one_sink(
        "{name: k1, url: 'sqlite://', source: s1, mode: append, consistency: exactly_once}"
    )
    assert (s.mode, s.consistency, s.table_name) == ("append", "exactly_once", "{table}_changes")
    named = _one_sink(
        "{name: k1, url: 'sqlite://', source: s1, mode: append, table_name: 'h_{table}'}"
    )
    assert named.table_name == "h_{table}"
    assert _one_sink("{name: k1, url: 'sqlite://', source: s1}").table_name == "{table}"


@pytest.mark.parametrize(
    ("field", "value", "choices"),
    [
        ("mode", "merge", "'upsert' or 'append'"),
        ("consistency", "exactly_twice", "'at_least_once' or 'exactly_once'"),
    ],
)
def test_unknown_mode_or_consistency_is_named_with_the_choices(
    field: str, value: str, choices: str
) -> None:
    with pytest.raises(ConfigError, match=rf"sinks\.0\.{field}: Input should be {choices}"):
        _one_sink(f"{{name: k1, url: 'sqlite://', source: s1, {field}: {value}}}")
