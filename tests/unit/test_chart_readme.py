"""The chart README's values table: generated from values.schema.json, current in the repository."""

from __future__ import annotations

from henvis_dev import chart_readme

VALUES = """\
# -- The image.
image:
  # -- Registry and repository,
  # on two lines.
  repository: registry.example/henvis
  # -- Tag; empty means appVersion.
  tag: ""
replicas: 2
"""

SCHEMA = {
    "type": "object",
    "properties": {
        "image": {
            "type": "object",
            "properties": {"repository": {"type": "string"}, "tag": {"type": "string"}},
            "required": ["repository"],
        },
        "replicas": {"type": "integer", "minimum": 0},
    },
    "required": ["image"],
}


def test_rows_carry_type_default_and_the_comment_above_each_key():
    comments = chart_readme.value_comments(VALUES)
    assert comments["image.repository"] == "Registry and repository, on two lines."
    rows = chart_readme.rows(SCHEMA, {"image": {"repository": "r", "tag": ""}, "replicas": 2}, comments)
    assert rows == [
        '| `image.repository` | string | `"r"` | Registry and repository, on two lines. |',
        '| `image.tag` | string (optional) | `""` | Tag; empty means appVersion. |',
        "| `replicas` | integer (≥ 0) (optional) | `2` |  |",
    ]


def test_the_table_is_replaced_between_its_markers_only():
    readme = f"# Chart\n\nprose\n\n{chart_readme.START}\nstale\n{chart_readme.END}\n\nafter\n"
    rendered = chart_readme.render(readme)
    assert rendered.startswith("# Chart\n\nprose\n\n") and rendered.endswith("\n\nafter\n")
    assert "stale" not in rendered and "| `kafka.bootstrapServers` |" in rendered


def test_the_committed_readme_is_current():
    assert chart_readme.main(["--check"]) == 0
