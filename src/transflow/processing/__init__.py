"""Processing: templates, the job processor, progress publishing, status records, webhooks."""
