"""Pure plotting functions: data in, plotly Figure out (testable without a browser)."""

# A log axis labels every tick with its full value (0.2, 0.5, 1, 2, 5): plotly's default writes only the leading
# digit between decades, so a balance chart read "1, 5, 2, 0.1, 5" with no way to tell 5 from 0.05.
LOG_AXIS = {"type": "log", "tickformat": "~g"}
