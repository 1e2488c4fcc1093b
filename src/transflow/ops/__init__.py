"""Operations: queue provisioning, IAM policies, the SAM template, dead letters, metrics."""
