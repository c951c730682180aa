"""The codec-stage benchmark (`python -m bench`): cases, one process per measured case (worker), the
measurement, and the report."""
