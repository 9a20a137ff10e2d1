"""Schemathesis hooks for tests/openapi_schemathesis.rs (SCHEMATHESIS_HOOKS=klosetd_hooks).

`GET /api/v1/tasks` documents its filters as one query parameter, `filter`,
an object serialized with `style: form, explode: true` (`?kind=backup&limit=5`):
that is how OpenAPI says that no other parameter is accepted and that
`schedule` excludes `task`. A negative case that makes one of its values
`null`, a list or an object has no faithful wire form (`null` and `[[]]` are
not sent at all, a list becomes repeated keys), so the request that goes out
is not the invalid one the case claims to be. Such cases are dropped; every
other negative case (wrong types and formats, out-of-range numbers, unknown
enum values, extra parameters, both `schedule` and `task`) is still sent.
"""

import schemathesis


def _scalar(value):
    return value is not None and not isinstance(value, (list, dict, tuple))


@schemathesis.hook("filter_query").apply_to(path="/api/v1/tasks")
def only_faithful_task_filters(ctx, query):
    if not isinstance(query, dict):
        return True
    values = query.get("filter", query)
    if not isinstance(values, dict):
        return True
    return all(_scalar(v) for v in values.values())
