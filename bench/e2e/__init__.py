"""The end-to-end benchmark (`python -m bench.e2e`): its input and remotes (setup), running children and
measuring them (run, launch), the cases (cases) and the report (report)."""
