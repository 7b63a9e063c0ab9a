"""The run archive's HTML: one cached exporter per process renders exactly what a fresh one does."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from bs4 import BeautifulSoup
from nbconvert import HTMLExporter

from helpers.core import paths
from helpers.runs import render, runner


def _notebook(path: Path, title: str, value: int) -> Path:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell(f"# {title}"),
            nbformat.v4.new_code_cell(
                f"total = {value}\ntotal",
                execution_count=1,
                outputs=[
                    nbformat.v4.new_output("execute_result", {"text/plain": str(value)}, execution_count=1)
                ],
            ),
        ],
        metadata={"language_info": {"name": "python", "pygments_lexer": "ipython3"}},
    )
    nbformat.write(nb, path)
    return path


def _fresh(path: Path, hide_code: bool) -> str:
    return render.exporter(hide_code).from_filename(str(path))[0]


def _stock(path: Path, hide_code: bool) -> str:
    """nbconvert's own HTMLExporter on our template (its BeautifulSoup pass included)."""
    exporter = HTMLExporter(
        template_name="selfcontained",
        extra_template_basedirs=[str(paths.TEMPLATES_DIR)],
        embed_images=True,
        exclude_input=hide_code,
        exclude_input_prompt=hide_code,
        exclude_output_prompt=hide_code,
    )
    return exporter.from_filename(str(path))[0]


def _tags(html: str) -> list[tuple[str, dict]]:
    return [(t.name, dict(t.attrs)) for t in BeautifulSoup(html, "html.parser").find_all(True)]


def test_cached_exporter_renders_like_a_fresh_one_in_any_order_and_thread(tmp_path):
    books = [_notebook(tmp_path / f"nb{i}.ipynb", f"Notebook {i}", 1000 + i) for i in range(4)]
    cases = [(nb, hide) for nb in books for hide in (False, True)]
    expected = {(nb, hide): _fresh(nb, hide) for nb, hide in cases}
    assert len(set(expected.values())) == len(cases)  # every case renders differently

    def render(case: tuple[Path, bool]) -> str:
        nb, hide = case
        out = tmp_path / f"{nb.stem}-{hide}.html"
        runner.render_html(nb, out, hide_code=hide)
        return out.read_text(encoding="utf-8")

    assert [render(c) for c in cases] == [expected[c] for c in cases]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(render, cases * 2)) == [expected[c] for c in cases * 2]
    hidden, shown = render((books[0], True)), render((books[0], False))
    code = '<span class="n">total</span>'
    assert "Notebook 0" in hidden and "<pre>1000</pre>" in hidden and code not in hidden
    assert code in shown


def test_warming_runs_once_per_process():
    first = runner.warm_renderer()
    first.join()
    assert runner.warm_renderer() is first and not first.is_alive()


def test_the_page_has_every_tag_and_attribute_nbconverts_exporter_gives_it(tmp_path):
    """Without nbconvert's BeautifulSoup pass, the same elements with the same attributes: an
    ``alt`` on each image without one, ``tabindex`` on each cell input and output."""
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Title\n\nSome *text* <img src='x.png'> and <b>html</b>."),
            nbformat.v4.new_code_cell(
                "import pandas as pd\nplot()  # <img src=q>",
                execution_count=1,
                outputs=[
                    nbformat.v4.new_output("display_data", {"image/png": png}),
                    nbformat.v4.new_output("stream", name="stderr", text="a warning\n"),
                    nbformat.v4.new_output(
                        "execute_result",
                        {"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "1"},
                        execution_count=1,
                    ),
                ],
            ),
        ],
        metadata={"language_info": {"name": "python", "pygments_lexer": "ipython3"}},
    )
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    for hide in (False, True):
        ours, stock = _fresh(path, hide), _stock(path, hide)
        assert _tags(ours) == _tags(stock)
        assert 'tabindex="0"' in ours and render.NO_ALT in ours


def test_code_is_highlighted_as_nbconvert_highlights_it_whatever_was_rendered_before(tmp_path):
    """Highlighted code is kept by its input (source, lexer, cell language): a cell of the same
    source under another lexer or another magics language is highlighted as itself."""
    from nbconvert.filters.highlight import Highlight2HTML

    source = "for x in 1 2; do echo $x; done  # total = 1"
    cases = [("ipython3", None), ("ipython3", {"magics_language": "bash"}), ("python", None)]
    pages = []
    for i, (lexer, metadata) in enumerate(cases * 2):
        cell = nbformat.v4.new_code_cell(source, execution_count=1, metadata=metadata or {})
        nb = nbformat.v4.new_notebook(
            cells=[cell], metadata={"language_info": {"name": "python", "pygments_lexer": lexer}}
        )
        path = tmp_path / f"nb{i}.ipynb"
        nbformat.write(nb, path)
        out = tmp_path / f"nb{i}.html"
        runner.render_html(path, out)
        page = out.read_text(encoding="utf-8")
        assert Highlight2HTML(pygments_lexer=lexer)(source, None, metadata) in page
        pages.append(page)
    assert len({p.split('class="jp-InputArea')[1] for p in pages}) == len(cases)
