"""Rows read and written without the ORM's query compiling, for the chat's hot path.

On a turn, Django's compiling of a query cost more CPU than PostgreSQL's running it: an ORM
``filter().first()`` 0.74 ms against 0.06 for ``SELECT 1`` (issue 16, bench/README.md). These
helpers send fixed SQL through Django's connection (its cursor wrapper, transactions and
query log) and build model instances as the ORM does (``Model.from_db``, each field's database
converters), with no signals, no ``save()`` and no queryset. Everything else uses the ORM.
"""

import datetime
import decimal
import functools
import json
import uuid

from django.db import connection, models


def records(objs: list, skip: tuple = ()) -> tuple[str, str]:
    """What an INSERT of ``objs`` (unsaved instances of one model) names and sends: the
    quoted column list of every concrete field but auto ids and ``skip``, and the rows as one
    JSON array of objects by column (auto fields filled in by ``pre_save``), for
    ``jsonb_populate_recordset``, which casts each value to its column's type.

    One JSON text, not a parameter per value: psycopg quotes each parameter in Python, which
    cost more CPU than the statement itself (six classifier-call rows: 0.85 ms of CPU, 0.58 as
    JSON; bench/README.md). Datetimes go as ISO 8601 with their microseconds and offset; a
    NUL character in a text becomes U+FFFD, on the instance too (``_storable``).
    """
    columns, fields = _written(type(objs[0]), skip)
    rows = [{f.column: _storable(o, f) for f in fields} for o in objs]
    return columns, json.dumps(rows, default=_json_value, ensure_ascii=False)


@functools.cache
def _written(model, skip: tuple = ()) -> tuple[str, list]:
    """``records``' quoted column list of ``model`` and its fields (worked out once: the
    fields' checks and the quoting were two thirds of a message's ``records``)."""
    fields = [
        f for f in model._meta.concrete_fields
        if not isinstance(f, models.AutoField) and f.name not in skip
    ]
    return ", ".join(connection.ops.quote_name(f.column) for f in fields), fields


def _storable(obj, field):
    """``field``'s value of ``obj`` as it is stored. PostgreSQL's text holds no NUL character
    (nor jsonb a \u0000): one in a visitor's or staff member's text or an LLM's raw answer is
    kept as U+FFFD, on ``obj`` too, so what is echoed is what was stored (it failed the whole
    row before)."""
    value = field.get_prep_value(field.pre_save(obj, True))
    if isinstance(value, str) and "\x00" in value:
        value = value.replace("\x00", "\ufffd")
        setattr(obj, field.attname, value)
    return value


def _json_value(value) -> str:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a column value agent.rows can send")


def insert_sql(objs: list) -> tuple[str, str]:
    """``insert_rows``'s statement for ``objs`` (not empty) and its one parameter, the rows'
    JSON (``records``), for a caller that sends it inside a larger one (a CTE). The rows go in
    in the order of ``objs``."""
    columns, rows = records(objs)
    return _insert_statement(objs[0]._meta.db_table, columns), rows


def values_sql(model, rows: list[dict]) -> tuple[str, str]:
    """``insert_sql`` for rows given as values by column instead of instances, for a hot path
    where building the instances cost more than the statement (six classifier calls a turn:
    0.15 ms of CPU, 4% of a turn's; issue 16).

    Args:
        model: a model class.
        rows: one dict per row (not empty), its keys exactly the model's concrete columns
            but auto ids, each value as the column stores it: what ``records`` would send
            (``get_prep_value``'s, defaults and ``auto_now`` times filled in by the caller).
            A NUL character in a text becomes U+FFFD.
    Raises:
        ValueError: a row's keys are not those columns.
    """
    columns, names = _columns(model)
    for row in rows:
        if row.keys() != names:
            raise ValueError(f"{model.__name__} rows have the columns {sorted(names)}")
        for name, value in row.items():
            if isinstance(value, str) and "\x00" in value:
                row[name] = value.replace("\x00", "\ufffd")
    params = json.dumps(rows, default=_json_value, ensure_ascii=False)
    return _insert_statement(model._meta.db_table, columns), params


@functools.cache
def _columns(model) -> tuple[str, set]:
    """``model``'s quoted column list as ``records`` gives it (every concrete field but auto
    ids) and the set of those columns."""
    columns, fields = _written(model)
    return columns, {f.column for f in fields}


def _insert_statement(table: str, columns: str) -> str:
    return (
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM "
        f"jsonb_populate_recordset(NULL::{table}, %s) WITH ORDINALITY ORDER BY ordinality"
    )


def insert_rows(objs: list) -> None:
    """Insert unsaved model instances of one model in one statement, in the caller's
    transaction: ``bulk_create`` without the ORM's compiling or a parameter per value. Each
    instance is then saved as ``save()`` leaves it: its auto-increment primary key set (in
    the order of ``objs``) and ``_state.adding`` False.

    Args:
        objs: instances of one model; their auto fields are filled in by ``pre_save``.
    Raises:
        django.db.Error: the statement failed (an ``IntegrityError`` for a broken constraint).
    """
    if not objs:
        return
    sql, rows = insert_sql(objs)
    meta = objs[0]._meta
    auto_pk = isinstance(meta.pk, models.AutoField)
    if auto_pk:
        sql += f" RETURNING {connection.ops.quote_name(meta.pk.column)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [rows])
        keys = [row[0] for row in cursor.fetchall()] if auto_pk else [o.pk for o in objs]
    for obj, key in zip(objs, keys, strict=True):
        obj.pk = key
        obj._state.adding, obj._state.db = False, connection.alias


@functools.cache
def _reader(model, alias: str = "t") -> tuple[str, list]:
    """``model``'s select list (every concrete column of alias ``alias``, in field order, as
    ``Model.from_db`` takes them) and its converters: ``[(index, column, [converter])]``."""
    fields = model._meta.concrete_fields
    quote = connection.ops.quote_name
    columns = ", ".join(f"{alias}.{quote(f.column)}" for f in fields)
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if found:
            converters.append((index, column, found))
    return columns, converters


def select_rows(model, rest: str, params: list, before: str = "") -> list:
    """Instances of ``model`` read by ``<before> SELECT <its columns> FROM <its table> t
    <rest>``.

    Args:
        model: a model class.
        rest: the SQL after the table, its alias ``t``: joins, ``WHERE``, ``ORDER BY``,
            ``LIMIT``, with ``%s`` placeholders, e.g. ``"WHERE t.listing_id = %s"``.
        params: the placeholders' values, ``before``'s first.
        before: SQL before the SELECT, e.g. ``WITH marked AS (UPDATE ... RETURNING ...)``.
    Returns:
        The instances, in the rows' order, as the ORM would build them (JSON decoded,
        ``_state.adding`` False).
    Raises:
        django.db.Error: the statement failed.
    """
    rest = f"FROM {model._meta.db_table} t {rest}"
    return [found for (found,) in select_models([(model, "t")], rest, params, before)]


def select_models(models_: list[tuple], rest: str, params: list, before: str = "") -> list:
    """``select_rows`` for several models a row: instances of each read by ``<before> SELECT
    <each model's columns> <rest>``.

    Args:
        models_: ``[(model, alias)]``: each model and the alias ``rest`` gives its table.
        rest: the SQL after the select list: ``FROM``, joins, ``WHERE``... with ``%s``
            placeholders.
        params, before: as ``select_rows`` takes them.
    Returns:
        One tuple a row, of an instance per model (None where its primary key is NULL: an
        outer join that found no row).
    Raises:
        django.db.Error: the statement failed.
    """
    readers = []
    for model, alias in models_:
        columns, converters = _reader(model, alias)
        fields = model._meta.concrete_fields
        readers.append((model, columns, converters, len(fields), fields.index(model._meta.pk)))
    columns = ", ".join(reader[1] for reader in readers)
    with connection.cursor() as cursor:
        cursor.execute(f"{before} SELECT {columns} {rest}", params)
        rows = cursor.fetchall()
    found = []
    for row in rows:
        instances, start = [], 0
        for model, _columns, converters, count, pk in readers:
            values, start = row[start:start + count], start + count
            if values[pk] is None:
                instances.append(None)
                continue
            if converters:
                values = list(values)
                for index, column, functions in converters:
                    for convert in functions:
                        values[index] = convert(values[index], column, connection)
            instances.append(model.from_db(connection.alias, None, values))
        found.append(tuple(instances))
    return found


def update_row(obj, names: list[str]) -> None:
    """``obj.save(update_fields=names)`` without the compiling or signals: one ``UPDATE`` of
    those fields of ``obj``'s row, in the caller's transaction. A field with ``auto_now`` among
    ``names`` gets the current time, as ``save`` gives it.

    Args:
        obj: a saved model instance.
        names: field names (not empty).
    """
    meta = obj._meta
    fields = [meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    values = [f.get_db_prep_save(f.pre_save(obj, False), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {meta.db_table} SET "
            + ", ".join(f"{quote(f.column)} = %s" for f in fields)
            + f" WHERE {quote(meta.pk.column)} = %s",
            [*values, obj.pk],
        )
