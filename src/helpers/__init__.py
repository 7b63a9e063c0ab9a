"""The Pipeline Maintenance Workbook's importable logic.

Notebooks stay thin and call into this package; everything here is unit-tested.
"""

__version__ = "0.1.0"
