"""The ``workbook`` command: ``main`` dispatches to one module per verb group."""
