"""Templates: defaults shipped in the wheel, file-by-file overrides, strictness, escaping."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailer.render import inline_css, make_environment, render_template_pair
from tests.cli import invoke
from tests.conftest import REPO
from tests.mail import body, parsed

DIGEST = ["digest", "--date", "2026-11-27"]
FOLDER = Path("previews") / "digest-2026-11-27"


def templates(folder: Path, **files: str) -> dict[str, str]:
    """Write override templates (``digest_txt="..."`` → ``digest.txt.j2``)."""
    folder.mkdir(exist_ok=True)
    for key, text in files.items():
        name = key.replace("_html", ".html.j2").replace("_txt", ".txt.j2")
        (folder / name).write_text(text, encoding="utf-8")
    return {"MAILER_TEMPLATES_DIR": str(folder)}


def first_message(root: Path) -> EmailMessage:
    return parsed(sorted((root / FOLDER).glob("*.eml"))[0].read_bytes())


def assert_failed_cleanly(result, root: Path, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0]
    previews = root / "previews"
    assert not previews.exists() or not any(previews.iterdir())
    return errors[0]


def test_a_user_folder_overrides_one_template_and_keeps_the_others(sample: Path) -> None:
    env = templates(
        sample / "mytemplates",
        digest_txt=(
            "Custom text for {{ subscriber.name }} in {{ subscriber.city }}\n"
            "{% for article in articles %}* {{ article.title }}\n{% endfor %}"
            "Leave: {{ subscriber.unsubscribe_url }}\n"
        ),
    )
    result = invoke(*DIGEST, env=env)
    assert result.exit_code == 0, result.output
    msg = first_message(sample)
    text = body(msg, "plain")
    assert text.startswith("Custom text for Alice Martin in Northfield\n")
    assert "* Old bakery trains a new generation of bakers\n" in text
    html = body(msg, "html")
    assert 'class="item-title"' in html and "Hi Alice Martin," in html  # the default template
    assert "Custom text" not in html


def test_an_override_can_extend_the_default_base_layout(sample: Path) -> None:
    env = templates(
        sample / "mytemplates",
        digest_html=(
            '{% extends "base.html.j2" %}\n'
            '{% block content %}<tr><td class="intro"><p>Only titles, {{ subscriber.name }}'
            "</p>{% for a in articles %}<p>{{ a.title }}</p>{% endfor %}</td></tr>{% endblock %}\n"
            '{% block footer %}<a href="{{ subscriber.unsubscribe_url }}">Leave</a>'
            "{% endblock %}\n"
        ),
    )
    result = invoke(*DIGEST, env=env)
    assert result.exit_code == 0, result.output
    html = body(first_message(sample), "html")
    assert "Only titles, Alice Martin" in html
    assert 'class="brand"' in html  # from the default base layout
    assert 'class="item-title"' not in html


def test_an_undefined_variable_names_the_template_and_line(sample: Path) -> None:
    env = templates(
        sample / "mytemplates", digest_txt="Hello {{ subscriber.name }}\n\n{{ no_such_thing }}\n"
    )
    line = assert_failed_cleanly(invoke(*DIGEST, env=env), sample, "digest.txt.j2:3")
    assert "no_such_thing" in line and "undefined" in line


def test_an_undefined_article_attribute_names_the_template_and_line(sample: Path) -> None:
    env = templates(
        sample / "mytemplates",
        digest_txt="{% for article in articles %}\n{{ article.subtitle }}\n{% endfor %}\n",
    )
    line = assert_failed_cleanly(invoke(*DIGEST, env=env), sample, "digest.txt.j2:2")
    assert "subtitle" in line


def test_an_unknown_subscriber_column_is_an_error(sample: Path) -> None:
    env = templates(sample / "mytemplates", digest_txt="{{ subscriber.shoe_size }}\n")
    line = assert_failed_cleanly(invoke(*DIGEST, env=env), sample, "digest.txt.j2:1")
    assert "shoe_size" in line


def test_a_syntax_error_names_the_template_and_line(sample: Path) -> None:
    env = templates(
        sample / "mytemplates",
        digest_html="<p>one</p>\n<p>two</p>\n{% if %}\n<p>four</p>\n",
    )
    assert_failed_cleanly(invoke(*DIGEST, env=env), sample, "digest.html.j2:3")


def test_a_condition_on_a_personal_field_is_a_clear_template_error(sample: Path) -> None:
    env = templates(
        sample / "mytemplates",
        digest_txt="Hello\n{% if subscriber.name %}Dear {{ subscriber.name }}{% endif %}\n",
    )
    line = assert_failed_cleanly(invoke(*DIGEST, env=env), sample, "digest.txt.j2:2")
    assert "can only be printed" in line


@pytest.mark.parametrize(
    "expression",
    [
        "subscriber.name | upper",
        "subscriber.name | lower",
        "subscriber.city | length",
        "subscriber.name[0]",
        "subscriber.name == 'Alice'",
        "subscriber.email | replace('@', ' at ')",
        "subscriber.name | wordwrap(5)",
        "subscriber.name | truncate(3)",
        "'%-20s' | format(subscriber.name)",
        "('Dear ' ~ subscriber.name) | title",
        "subscriber.name is upper",
    ],
)
def test_a_filter_on_a_personal_field_is_an_error_not_a_silent_no_op(
    sample: Path, expression: str
) -> None:
    env = templates(sample / "mytemplates", digest_txt=f"Hi\n\n{{{{ {expression} }}}}\n")
    line = assert_failed_cleanly(invoke(*DIGEST, env=env), sample, "digest.txt.j2:3")
    assert "can only be printed" in line


def test_a_case_filter_around_a_personal_field_is_caught(sample: Path) -> None:
    env = templates(
        sample / "mytemplates",
        digest_txt="{% filter upper %}Hi {{ subscriber.name }}{% endfilter %}\n",
    )
    line = assert_failed_cleanly(invoke(*DIGEST, env=env), sample, "digest.txt.j2:1")
    assert "can only be printed" in line


def test_printing_personal_fields_in_expressions_still_works(sample: Path) -> None:
    env = templates(
        sample / "mytemplates",
        digest_txt=(
            "{{ 'Hi ' ~ subscriber.name ~ '!' }} {{ subscriber['city'] }} "
            "{{ subscriber.email | e }} {{ subscriber.name | default('friend') }}.\n"
            "{{ subscriber.unsubscribe_url }}\n"
        ),
    )
    result = invoke(*DIGEST, env=env)
    assert result.exit_code == 0, result.output
    text = body(first_message(sample), "plain")
    assert text.startswith("Hi Alice Martin! Northfield alice@example.org Alice Martin.\n")


def test_article_titles_are_autoescaped_in_html(sample: Path) -> None:
    (sample / "articles" / "2026-11-27-xss.md").write_text(
        "---\n"
        'title: "Budget <script>alert(1)</script> & more"\n'
        "date: 2026-11-27\n"
        "url: https://example.com/news/xss\n"
        "---\n\nA story.\n",
        encoding="utf-8",
    )
    result = invoke(*DIGEST)
    assert result.exit_code == 0, result.output
    msg = first_message(sample)
    html = body(msg, "html")
    assert "<script>" not in html
    assert "Budget &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "Budget <script>alert(1)</script> & more" in body(msg, "plain")  # text is not HTML
    assert "<script>" not in (sample / FOLDER / "digest.html").read_text(encoding="utf-8")


def test_article_text_cannot_forge_a_personal_field(sample: Path) -> None:
    (sample / "articles" / "2026-11-27-holes.md").write_text(
        "---\n"
        "title: Template markers %%MAILER_0%% and %%mAILER_1%% in a story\n"
        "date: 2026-11-27\n"
        "url: https://example.com/news/holes\n"
        "---\n\nA story about templates.\n",
        encoding="utf-8",
    )
    result = invoke(*DIGEST)
    assert result.exit_code == 0, result.output
    text = body(first_message(sample), "plain")
    assert "Template markers %%MAILER_0%% and %%mAILER_1%% in a story" in text


def test_render_pair_without_the_cli(tmp_path: Path) -> None:
    (tmp_path / "note.html.j2").write_text(
        "<html><head><style>p { color: red; }</style></head>"
        "<body><p>{{ greeting }}, {{ subscriber.name }}</p></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "note.txt.j2").write_text("{{ greeting }}, {{ subscriber.name }}\n")
    html, text = render_template_pair(
        make_environment(tmp_path),
        "note",
        fields=("email", "name", "unsubscribe_url"),
        context={"greeting": "Hello"},
    )
    assert text.fill({"name": "Ann"}) == "Hello, Ann\n"
    filled = html.fill({"name": "Ann"})
    assert '<p style="color:red">Hello, Ann</p>' in filled


def test_inline_css_keeps_media_queries_and_fetches_nothing() -> None:
    html = inline_css(
        '<html><head><link rel="stylesheet" href="http://127.0.0.1:9/x.css">'
        "<style>.a { color: blue; } @media (max-width: 600px) { .a { color: red !important; } }"
        '</style></head><body><p class="a">x</p></body></html>'
    )
    assert 'style="color:blue"' in html
    assert "@media (max-width: 600px)" in html


def test_the_wheel_ships_the_templates(tmp_path: Path) -> None:
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "mailer", source / "mailer", ignore=ignore)
    shutil.copytree(REPO / "templates", source / "templates", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    out = tmp_path / "dist"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--no-cache-dir", "-q", "-w", str(out), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("mailer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("digest.html.j2", "digest.txt.j2", "base.html.j2", "style.css"):
        assert f"mailer/templates/{name}" in names
    assert "mailer/py.typed" in names
