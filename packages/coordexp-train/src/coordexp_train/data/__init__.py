"""The CoordExp data pipeline: records → chat samples → token batches.

See docs/data-pipeline.md for the whole path.
"""
