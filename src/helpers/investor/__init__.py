"""The investor figures: the aggregate, the month-end close, the reports and their charts."""
