"""Ingest: presigned uploads and the bridge from S3 notifications to processing jobs."""
