"""Data: the Example record, file loaders with column mapping, known formats, built-in demo sets."""

from kd_analysis.data.demo import DEMO_SETS
from kd_analysis.data.example import Example
from kd_analysis.data.formats import FORMATS, detect_format, gold_number
from kd_analysis.data.inspect import DataReport, inspect_data, preview_data
from kd_analysis.data.loaders import ColumnMapping, Dataset, load_file, read_rows
from kd_analysis.data.sources import load_dataset, load_demo, write_demo

__all__ = [
    "DEMO_SETS",
    "FORMATS",
    "ColumnMapping",
    "DataReport",
    "Dataset",
    "Example",
    "detect_format",
    "gold_number",
    "inspect_data",
    "load_dataset",
    "load_demo",
    "load_file",
    "preview_data",
    "read_rows",
    "write_demo",
]
