"""The status board: runs, freshness, on call, incidents, the close and lineage on one page.

``status`` collects the board at an explicit ``as_of`` (pure reading, nothing written), ``health``
judges freshness and what is at risk along the lineage, ``html`` renders the self-contained page
``runs/status/index.html`` and writes it atomically. ``workbook status`` prints it, ``workbook
serve`` serves ``runs/`` on 127.0.0.1; ``workbook tick`` and ``workbook close`` rewrite the page.
"""
