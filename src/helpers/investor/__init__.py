"""The investor figures: the metrics, the upstreams' inputs, the cross-checks and the aggregate, the
month-end close, the reports and their charts."""
