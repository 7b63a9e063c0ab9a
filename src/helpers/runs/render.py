"""The archived notebook's HTML: a self-contained rendering (our nbconvert template, nothing from a CDN).

One exporter per process and flavour (code shown or hidden), warmed in a background thread while a
run's kernel computes, and used under a lock: runs render from several threads.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from helpers.core import paths

log = logging.getLogger(__name__)

# scrapbook's scraps are outputs of their own mimetype that HTML cannot show (by design: they are
# data, read back with read_scraps); nbconvert would warn once per scrap. A process-wide filter, not
# catch_warnings around the export: runs render from several threads, and catch_warnings is not
# thread-safe (it restores the filter list it saw, dropping another thread's).
warnings.filterwarnings(
    "ignore", message=r"Your element with mimetype\(s\) dict_keys\(\['application/scrapbook"
)


# What nbconvert's HTMLExporter adds with BeautifulSoup once the page is rendered (7.17): an ``alt``
# on each image without one, and ``tabindex="0"`` on each cell input and output, so a keyboard reaches them.
NO_ALT = 'alt="No description has been provided for this image"'
_IMG_WITHOUT_ALT = re.compile(r"<img(?![^>]*\balt=)(?=[\s>/])")
_FOCUSABLE = re.compile(r'<div class="(?=[^"]*\b(?:jp-Cell-inputWrapper|jp-OutputArea-output)\b)([^"]*)"')


def accessible(html: str) -> str:
    """``html`` with :data:`NO_ALT` on each image lacking an ``alt`` and ``tabindex="0"`` on the
    cells' input wrappers and outputs: what HTMLExporter does with BeautifulSoup (parsing and
    re-serialising the whole page, about half of a render), done on the text."""
    html = _IMG_WITHOUT_ALT.sub(f"<img {NO_ALT}", html)
    return _FOCUSABLE.sub(r'<div class="\1" tabindex="0"', html)


@lru_cache(maxsize=4096)
def _highlighted(lexer: str | None, source: str, language: str | None, magics: str | None) -> str:
    from nbconvert.filters.highlight import Highlight2HTML

    return Highlight2HTML(pygments_lexer=lexer)(
        source, language, {"magics_language": magics} if magics else None
    )


def _highlight(lexer: str | None, source: str, language: str | None = None, metadata: Any = None) -> str:
    """nbconvert's ``highlight_code`` filter (Pygments' HTML of a code cell), kept by its input: the
    code cells of a pipeline are the same in every run's page (a close renders each notebook 13 times)."""
    return _highlighted(lexer, source, language, (metadata or {}).get("magics_language"))


@lru_cache(maxsize=1)
def _exporter_class() -> Any:
    from nbconvert import HTMLExporter, TemplateExporter
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

    class Exporter(HTMLExporter):  # type: ignore[misc]
        """HTMLExporter less its BeautifulSoup pass (:func:`accessible` makes the same two edits)."""

        def from_notebook_node(self, nb: Any, resources: Any = None, **kw: Any) -> tuple[str, dict[str, Any]]:
            langinfo = nb.metadata.get("language_info", {})
            lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
            highlight = self.filters.get("highlight_code", functools.partial(_highlight, lexer))
            resources = self._init_resources(resources)
            data_type = WidgetsDataTypeFilter(
                notebook_metadata=self._nb_metadata, parent=self, resources=resources
            )
            self.register_filter("highlight_code", highlight)
            self.register_filter("filter_data_type", data_type)
            html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
            return accessible(html), resources

    return Exporter


def exporter(hide_code: bool) -> Any:
    """A new exporter of the archive's HTML (code shown or hidden)."""
    return _exporter_class()(
        template_name="selfcontained",
        extra_template_basedirs=[str(paths.TEMPLATES_DIR)],
        embed_images=True,
        exclude_input=hide_code,
        exclude_input_prompt=hide_code,
        exclude_output_prompt=hide_code,
        optimistic_validation=True,  # the notebook validated once, not again after each preprocessor
    )


@lru_cache(maxsize=2)
def _html_exporter(hide_code: bool) -> Any:
    """One exporter per process and flavour: nbconvert compiles the template's ten Jinja files
    per exporter (0.17 s), and its first use imports nbconvert, mistune and pygments (0.5-0.8 s).
    Used under :data:`_RENDER_LOCK` (an exporter keeps per-render state)."""
    return exporter(hide_code)


_RENDER_LOCK = threading.Lock()
_WARM_LOCK = threading.Lock()
_warm_thread: threading.Thread | None = None


def _warm_renderer() -> None:
    import nbformat  # the runner imports it first (see its note on rfc3987_syntax)

    try:  # Linux: this thread only, so that it takes the CPU the kernels leave idle
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 15)
    except (AttributeError, OSError):
        pass
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# warm"),
            nbformat.v4.new_code_cell(
                "1",
                execution_count=1,
                outputs=[nbformat.v4.new_output("execute_result", {"text/plain": "1"}, execution_count=1)],
            ),
        ],
        metadata={"language_info": {"name": "python", "pygments_lexer": "ipython3"}},
    )
    try:
        for hide_code in (False, True):
            with _RENDER_LOCK:
                _html_exporter(hide_code).from_notebook_node(nb)
    except Exception as exc:  # the real render reports its own failure
        log.debug("warming the HTML renderer failed: %s", exc)


def warm_renderer() -> threading.Thread:
    """Import nbconvert and compile the template in a background thread, once per process.

    A run starts it when its first cell starts (the kernel is up), so the first rendering of a
    process does not pay ≈ 1 s on the run's critical path: the thread runs at a low priority
    while the kernel computes and this process waits. :func:`render_html` waits for it.
    Returns the thread."""
    global _warm_thread
    with _WARM_LOCK:
        if _warm_thread is None:
            _warm_thread = threading.Thread(target=_warm_renderer, name="warm-html-renderer", daemon=True)
            _warm_thread.start()
        return _warm_thread


def render_html(nb_path: Path, html_path: Path, *, hide_code: bool = False) -> None:
    """Render to a self-contained HTML file (our template: nothing fetched from a CDN)."""
    warm_renderer().join()
    with _RENDER_LOCK:
        body, _ = _html_exporter(hide_code).from_filename(str(nb_path))
    html_path.write_text(body, encoding="utf-8")
