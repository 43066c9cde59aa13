"""watcherd: watch drop folders and ingest finished videos into Twelve Labs."""

__version__ = "0.1.0"
