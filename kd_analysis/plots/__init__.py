"""Pure plotting functions: data in, plotly Figure out (testable without a browser)."""
